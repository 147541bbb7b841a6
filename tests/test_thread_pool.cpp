// The CPU backend's thread pool: every item runs once, loops from several threads take
// turns, and an exception thrown by a worker reaches the caller with the pool still usable;
// lanes run each once, with their loops inline on the lane's thread.
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <set>
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

TEST(ThreadPool, LanesRunOnceEachWithTheirLoopsInline) {
  ThreadPool pool(3);
  for (int round = 0; round < 50; ++round) {
    std::vector<std::atomic<int>> ran(5);
    std::atomic<int> foreign{0};  // loop chunks that ran on another thread than their lane
    std::mutex mu;
    std::set<std::thread::id> lane_threads;
    pool.run_lanes(5, [&](int lane) {
      ran[lane]++;
      const auto me = std::this_thread::get_id();
      {
        std::lock_guard lock(mu);
        lane_threads.insert(me);
      }
      int64_t covered = 0;
      pool.parallel_for(100, kBigCost, [&](int64_t b, int64_t e) {
        if (std::this_thread::get_id() != me) foreign++;
        covered += e - b;
      });
      EXPECT_EQ(covered, 100);
      pool.run_lanes(2, [&](int) {  // nested: one after another, on this thread
        if (std::this_thread::get_id() != me) foreign++;
      });
    });
    for (auto& r : ran) EXPECT_EQ(r.load(), 1);
    EXPECT_EQ(foreign.load(), 0);
    EXPECT_LE(lane_threads.size(), 3u);
  }
  // Outside the lanes, loops are parallel again (and still cover every item).
  std::atomic<int64_t> done{0};
  pool.parallel_for(1000, kBigCost, [&](int64_t b, int64_t e) { done += e - b; });
  EXPECT_EQ(done.load(), 1000);
}

TEST(ThreadPool, ALaneExceptionReachesTheCaller) {
  ThreadPool pool(2);
  for (int round = 0; round < 20; ++round) {
    std::atomic<int> ran{0};
    EXPECT_THROW(pool.run_lanes(2,
                                [&](int lane) {
                                  ran++;
                                  if (lane == 1) throw std::runtime_error("lane");
                                }),
                 std::runtime_error);
    EXPECT_GE(ran.load(), 1);
    std::atomic<int> after{0};
    pool.run_lanes(2, [&](int) { after++; });
    EXPECT_EQ(after.load(), 2);
  }
}

}  // namespace
}  // namespace sibyl::backend::cpu
