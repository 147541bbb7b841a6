#include "read_bandwidth.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

namespace sibyl::cli {
namespace {

// Eight independent sums so the loop is bound by loads, not by one add chain.
uint64_t sum_words(const uint64_t* p, size_t n) {
  uint64_t s[8] = {};
  for (size_t i = 0; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; ++l) s[l] += p[i + static_cast<size_t>(l)];
  uint64_t t = 0;
  for (uint64_t v : s) t += v;
  return t;
}

}  // namespace

double read_bandwidth(int threads, int mib) {
  threads = std::max(1, threads);
  const size_t words = static_cast<size_t>(mib) << 17;  // 8-byte words
  const auto buf = std::make_unique<uint64_t[]>(words);
  std::memset(buf.get(), 1, words * 8);  // touch every page before timing
  const size_t per = words / static_cast<size_t>(threads) / 8 * 8;
  double best = 0.0;
  volatile uint64_t sink = 0;
  for (int pass = 0; pass < 4; ++pass) {
    std::vector<uint64_t> sums(static_cast<size_t>(threads));
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<std::thread> pool;
    for (int t = 1; t < threads; ++t)
      pool.emplace_back([&, t] { sums[static_cast<size_t>(t)] = sum_words(buf.get() + per * static_cast<size_t>(t), per); });
    sums[0] = sum_words(buf.get(), per);
    for (auto& th : pool) th.join();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    for (uint64_t v : sums) sink = sink + v;
    best = std::max(best, static_cast<double>(per * static_cast<size_t>(threads) * 8) / s);
  }
  return best;
}

}  // namespace sibyl::cli
