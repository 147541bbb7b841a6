// One CUDA backend instance: its device, stream, cuBLAS handle, memory (weights and caches with
// cudaMalloc, activations from the step arena, all under the memory budget), and the op queue.
//
// Ops are *recorded* (a launcher + its parameter bytes) and submitted at end_step, or earlier when
// the host needs a result (read(), a synchronous write, the MoE prefill path). A step begun with a
// replay key (Backend::begin_step) that ran start to end on one thread without such a flush is
// "clean": its ops are captured into a CUDA graph stored under that key together with all the
// recorded bytes (launchers, pointers, sizes), and a later step with the same key and identical
// bytes replays the graph instead of launching kernel by kernel. The key only says where to look;
// equal bytes are what make a replay exact (the same launches on the same addresses), so a broken
// promise, a grown pool or a moved arena chunk costs a new capture, never a wrong result. Step
// inputs written inside a step are copied from pinned staging that the graph reads at replay; the
// staging alternates between two halves, so a key holds up to two graphs. Graphs are used only with
// SIBYL_CUDA_GRAPHS=1 until they are measured on a GPU (docs/CUDA.md); otherwise every step
// launches op by op, keyed or not.
//
// Bad step inputs (page ids, positions) are caught on the device: kernels skip the work and set
// bits of a fault word (kernels.h FaultBits), which every read()/synchronize() checks, failing
// with Errc::internal and naming them.
//
// Thread safety: every entry point takes the context's mutex; correctness never depends on steps
// being well nested (several sessions on several threads interleave op by op, on one stream).
#pragma once
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "backends/cuda/arena.h"
#include "backends/backend.h"
#include "backends/cuda/cuda_common.h"

namespace sibyl::backend::cuda {

enum class Precision { f32, tf32 };

struct Stats {
  size_t persistent_bytes = 0;  // weights, scales, KV caches, expert tables, cuBLAS workspace
  size_t arena_reserved = 0;    // activation chunks held
  size_t arena_live = 0;        // activation bytes in use
  size_t graphs_cached = 0;
  uint64_t graph_launches = 0, graph_captures = 0, graph_invalidations = 0, flushes = 0;
};

class Context : public std::enable_shared_from_this<Context> {
 public:
  static std::shared_ptr<Context> create(const BackendOptions& options);
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  // ---- memory
  void* alloc_persistent(size_t bytes, const std::string& what);  // Errc::out_of_memory past budget
  void free_persistent(void* p, size_t bytes);
  void* alloc_temp(size_t bytes, const std::string& what);  // from the step arena
  void free_temp(void* p);
  void upload(void* dst, const void* src, size_t bytes);  // host → fresh device memory, now

  // ---- ops
  template <class P>
  void enqueue(void (*launcher)(const P&, const Exec&), const P& params, const char* name) {
    static_assert(std::is_trivially_copyable_v<P> && sizeof(P) % 8 == 0, "op parameters are plain padded-free data");
    enqueue_raw(&invoke<P>, reinterpret_cast<Generic>(launcher), &params, sizeof(P), name);
  }
  void begin_step(uint64_t replay_key = 0);
  void end_step();
  void write(void* dst, const void* src, size_t bytes);       // host → device, in stream order
  void write_sync(void* dst, const void* src, size_t bytes);  // host → device after the recorded work; waits
  void read(const void* src, void* dst, size_t bytes);        // device → host; waits for the recorded work
  void synchronize();                                          // submit everything and wait
  // Drops every recorded graph (the pool's memory moved); the next keyed steps capture anew.
  void invalidate_graphs();
  int32_t* fault_word() const { return fault_; }  // kernels.h FaultBits, set by kernels

  const Exec& exec() const { return exec_; }
  int sm_count() const { return exec_.sm_count; }
  int max_smem() const { return max_smem_; }
  Precision precision() const { return precision_; }
  bool poison() const { return poison_; }
  const std::string& description() const { return description_; }
  Stats stats();

 private:
  using Generic = void (*)();
  using Invoke = void (*)(Generic launcher, const uint8_t* params, const Exec& ex);
  template <class P>
  static void invoke(Generic launcher, const uint8_t* params, const Exec& ex) {
    P p;
    std::memcpy(&p, params, sizeof(P));
    reinterpret_cast<void (*)(const P&, const Exec&)>(launcher)(p, ex);
  }
  struct Op {
    Invoke invoke;
    Generic launcher;
    size_t offset;  // of the parameters in key_
    const char* name;
  };
  struct Graph {
    uint64_t replay_key;
    uint64_t hash;
    std::vector<uint8_t> key;
    cudaGraphExec_t exec;
    uint64_t last_use;
  };
  class Lock;

  Context() = default;
  void init(const BackendOptions& options);
  void enqueue_raw(Invoke inv, Generic launcher, const void* params, size_t size, const char* name);
  void flush_locked(bool graph_ok);
  bool run_graph_locked();
  void run_ops_locked();
  void reserve_budget_locked(size_t bytes, const std::string& what);
  void trim_locked();
  void* device_malloc_locked(size_t bytes, const std::string& what);
  void destroy_graphs_locked();
  void wait_locked(const char* what);  // stream synchronize, then the fault word

  int device_ = 0;
  std::string description_;
  Exec exec_;
  int max_smem_ = 48 << 10;
  Precision precision_ = Precision::f32;
  bool graphs_ = false, poison_ = false;
  uint64_t budget_ = 0;
  size_t persistent_bytes_ = 0;
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
  std::unique_ptr<Arena> arena_;

  std::recursive_mutex mutex_;
  std::vector<Op> ops_;
  std::vector<uint8_t> key_;
  bool in_step_ = false, clean_ = false;
  uint64_t replay_key_ = 0;
  std::thread::id owner_;

  // Pinned staging for writes inside a step, two halves used by alternate steps.
  static constexpr size_t kStagingHalf = size_t(1) << 20;
  uint8_t* staging_ = nullptr;
  int half_ = 0;
  size_t staging_off_ = 0;
  cudaEvent_t half_done_[2] = {nullptr, nullptr};
  bool half_recorded_[2] = {false, false};

  int32_t* fault_ = nullptr;       // device word
  int32_t* fault_host_ = nullptr;  // pinned copy

  std::vector<Graph> graphs_cache_;
  static constexpr int kCaptureTries = 3;
  std::vector<std::pair<uint64_t, int>> capture_failures_;  // per key; past kCaptureTries it runs op by op
  uint64_t use_clock_ = 0;
  Stats counters_;
};

}  // namespace sibyl::backend::cuda
