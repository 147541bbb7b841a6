// The CPU backend's thread pool: every item runs once, loops from several threads take
// turns, and an exception thrown by a worker reaches the caller with the pool still usable.
#include <gtest/gtest.h>

#include <atomic>
#include <stdexcept>
#include <thread>
#include <vector>

#include "backends/cpu/thread_pool.h"

namespace sibyl::backend::cpu {
namespace {

constexpr int64_t kBigCost = 1 << 20;  // forces the parallel path

TEST(ThreadPool, EveryItemOnce) {
  ThreadPool pool(4);
  std::vector<std::atomic<int>> hits(1000);
  pool.parallel_for(1000, kBigCost, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) hits[i]++;
  });
  for (auto& h : hits) EXPECT_EQ(h.load(), 1);
}

TEST(ThreadPool, CallersOnSeveralThreads) {
  ThreadPool pool(3);
  std::atomic<int64_t> total{0};
  std::vector<std::thread> callers;
  for (int t = 0; t < 4; ++t)
    callers.emplace_back([&] {
      for (int r = 0; r < 50; ++r)
        pool.parallel_for(100, kBigCost, [&](int64_t b, int64_t e) { total += e - b; });
    });
  for (auto& c : callers) c.join();
  EXPECT_EQ(total.load(), 4 * 50 * 100);
}

TEST(ThreadPool, ExceptionReachesTheCallerAndThePoolGoesOn) {
  ThreadPool pool(4);
  for (int round = 0; round < 20; ++round) {
    EXPECT_THROW(pool.parallel_for(64, kBigCost,
                                   [&](int64_t b, int64_t) {
                                     if (b >= 32) throw std::runtime_error("boom");
                                   }),
                 std::runtime_error);
    std::atomic<int64_t> done{0};
    pool.parallel_for(64, kBigCost, [&](int64_t b, int64_t e) { done += e - b; });
    EXPECT_EQ(done.load(), 64);
  }
}

}  // namespace
}  // namespace sibyl::backend::cpu
