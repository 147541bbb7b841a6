#include "backends/cpu/thread_pool.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <utility>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace sibyl::backend::cpu {
namespace {

// How long a worker (or the caller) spins for the next loop (for the workers to finish)
// before sleeping. Long enough to bridge the gap between two decode steps (the scheduler
// samples and streams in between): with 50 µs the workers slept there and the next step's
// first loops ran without them (one session decoded ~15 % slower on 2 cores). A spinning
// thread yields every few µs, so an application thread that wants the core (a game's frame)
// is not kept waiting: without the yield npc-village's frame p99 rose from 16.8 to 18–20 ms.
constexpr auto kSpin = std::chrono::microseconds(300);

inline void cpu_relax() {
#if defined(__x86_64__)
  _mm_pause();
#endif
}

// Spins until ready() or kSpin passed; true when ready.
template <class F>
bool spin_until(F ready) {
  const auto deadline = std::chrono::steady_clock::now() + kSpin;
  for (int i = 0;; ++i) {
    if (ready()) return true;
    cpu_relax();
    if (i % 64 == 63) {
      if (std::chrono::steady_clock::now() > deadline) return ready();
      std::this_thread::yield();  // a runnable thread of the application (its frame) goes first
    }
  }
}

// Set while this thread runs a lane: its loops run inline.
thread_local bool tl_in_lane = false;

}  // namespace

ThreadPool::ThreadPool(int n_threads, int nice) {
  if (n_threads <= 0) n_threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  n_threads = std::min(n_threads, kMaxThreads);
  try {
    for (int i = 1; i < n_threads; ++i)
      workers_.emplace_back([this, nice] {
#ifdef __linux__
        if (nice != 0) setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), nice);
#endif
        worker_loop();
      });
  } catch (...) {  // could not start a thread: stop the ones that did, then report
    stop_workers();
    throw;
  }
}

ThreadPool::~ThreadPool() { stop_workers(); }

void ThreadPool::stop_workers() {
  {
    std::lock_guard lock(mutex_);
    stop_.store(true);
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
  workers_.clear();
}

void ThreadPool::run_chunks() {
  for (;;) {
    int64_t begin = next_.fetch_add(chunk_);
    if (begin >= n_) return;
    try {
      (*fn_)(begin, std::min(n_, begin + chunk_));
    } catch (...) {  // keep the first failure for the caller; skip the remaining chunks
      std::lock_guard lock(mutex_);
      if (!error_) error_ = std::current_exception();
      next_.store(n_);
      return;
    }
  }
}

void ThreadPool::worker_loop() {
  uint64_t seen = 0;
  for (;;) {
    auto started = [&] {
      return stop_.load(std::memory_order_acquire) || generation_.load(std::memory_order_acquire) != seen;
    };
    if (!spin_until(started)) {
      std::unique_lock lock(mutex_);
      ++sleeping_;
      wake_.wait(lock, started);
      --sleeping_;
    }
    if (stop_.load(std::memory_order_acquire)) return;
    seen = generation_.load(std::memory_order_acquire);
    run_chunks();
    if (active_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard lock(mutex_);
      if (caller_sleeping_) done_.notify_one();
    }
  }
}

void ThreadPool::parallel_for(int64_t n, int64_t cost, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  constexpr int64_t kInlineWork = 1 << 18;  // below this, waking workers costs more than it saves
  if (tl_in_lane || workers_.empty() || n == 1 || n * std::max<int64_t>(cost, 1) < kInlineWork) {
    fn(0, n);
    return;
  }
  std::lock_guard run_lock(run_mutex_);
  {
    std::lock_guard lock(mutex_);
    fn_ = &fn;
    n_ = n;
    chunk_ = std::max<int64_t>(1, n / (static_cast<int64_t>(size()) * 4));
    next_.store(0);
    active_.store(static_cast<int>(workers_.size()), std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_release);
    if (sleeping_ > 0) wake_.notify_all();
  }
  run_chunks();
  // Workers are done with fn before it goes away.
  auto finished = [&] { return active_.load(std::memory_order_acquire) == 0; };
  if (!spin_until(finished)) {
    std::unique_lock lock(mutex_);
    caller_sleeping_ = true;
    done_.wait(lock, finished);
    caller_sleeping_ = false;
  }
  std::lock_guard lock(mutex_);
  fn_ = nullptr;
  if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
}

void ThreadPool::run_lanes(int n, const std::function<void(int)>& fn) {
  const auto run_some = [&](int64_t begin, int64_t end) {
    struct InLane {  // restored however the lane ends
      bool was = std::exchange(tl_in_lane, true);
      ~InLane() { tl_in_lane = was; }
    } in_lane;
    for (int64_t i = begin; i < end; ++i) fn(static_cast<int>(i));
  };
  // A lane is far more work than a wake-up: never inline for its size (one lane per chunk).
  parallel_for(n, int64_t{1} << 40, run_some);
}

}  // namespace sibyl::backend::cpu
