// A fixed pool of worker threads running one parallel loop at a time. Callers from
// several threads (sessions on different threads) take turns; the calling thread
// works too. Loops must not nest, except inside run_lanes, where a lane's loops run inline
// on its thread. Between the loops of one step, and between steps, the
// workers spin instead of sleeping (a step's ops follow each other within microseconds; a
// futex wake-up costs more than most of them; a spinning thread yields to other runnable
// threads), and sleep once no loop came for kSpin.
#pragma once
#include <atomic>
#include <condition_variable>
#include <exception>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace sibyl::backend::cpu {

class ThreadPool {
 public:
  // n_threads: total threads including the caller; 0 = hardware. nice: the workers' Linux
  // nice value (0: as the creating thread).
  explicit ThreadPool(int n_threads, int nice = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Calls fn(begin, end) over chunks covering [0, n). `cost` is the work per item
  // (e.g. multiply-adds); small loops run inline on the caller.
  void parallel_for(int64_t n, int64_t cost, const std::function<void(int64_t, int64_t)>& fn);

  // Calls fn(0) … fn(n - 1), each on one thread of the pool (the caller too), and inside
  // them every parallel_for runs inline on that thread: n independent jobs side by side,
  // without a synchronisation per op. Nested in a lane, the lanes run one after another.
  void run_lanes(int n, const std::function<void(int)>& fn);

 private:
  void worker_loop();
  void run_chunks();
  void stop_workers();

  static constexpr int kMaxThreads = 512;

  std::vector<std::thread> workers_;
  std::mutex run_mutex_;  // one loop at a time
  std::mutex mutex_;      // guards sleeping and the wake-ups
  std::condition_variable wake_, done_;
  std::atomic<uint64_t> generation_{0};  // bumped (under mutex_) when a loop starts
  std::atomic<int> active_{0};           // workers still in the current loop
  std::atomic<bool> stop_{false};
  int sleeping_ = 0;                     // workers waiting on wake_ (under mutex_)
  bool caller_sleeping_ = false;         // the caller waits on done_ (under mutex_)

  const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
  int64_t n_ = 0, chunk_ = 1;
  std::atomic<int64_t> next_{0};
  std::exception_ptr error_;  // first exception thrown by fn in the current loop
};

}  // namespace sibyl::backend::cpu
