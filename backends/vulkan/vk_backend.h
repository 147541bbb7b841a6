// The Vulkan backend: tensors in device memory, one command buffer per step, ops recorded as
// compute dispatches (vk_ops.cpp, vk_mla.cpp, vk_moe.cpp); steps with a replay key recorded
// once and resubmitted (vk_replay.cpp).
//
// Threads: sessions on several threads may share the backend. A step belongs to the thread
// that began it until end_step(); other threads' steps wait for it, and so do their
// out-of-step transfers (uploads, writes, reads, pool growth), which therefore never run
// while a command buffer is half recorded. Memory freed during a step is reused at once: the
// recorder puts a barrier between the last use of a range and its next write.
#pragma once
#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include "backends/backend.h"
#include "engine/core/failure.h"
#include "backends/vulkan/vk_kernels.h"
#include "backends/vulkan/vk_memory.h"
#include "backends/vulkan/vk_recorder.h"

namespace sibyl::backend::vulkan {

class VulkanBackend;

// What shaders need to read a weight of any stored dtype (see shaders/weights.glsl).
struct WeightDesc {
  uint32_t dtype, row_bytes, scale_word, block_rows, block_cols, col_blocks;
};

class VkTensor final : public Tensor {
 public:
  VkTensor(VulkanBackend& be, DType dtype, int64_t rows, int64_t cols, const Alloc& a)
      : Tensor(dtype, rows, cols), be_(be), alloc_(a) {}
  ~VkTensor() override;
  const Range& range() const { return alloc_.range; }
  WeightDesc desc() const;
  // f8_e4m3: float32 block scales stored after the data, at this word.
  uint32_t scale_word = 0;
  int64_t block_rows = 0, block_cols = 0;

 private:
  VulkanBackend& be_;
  Alloc alloc_;
};

// The paged latent cache: one buffer per layer, [n_pages · page_tokens, width] float32.
class VkKvPool final : public KvPool {
 public:
  VkKvPool(VulkanBackend& be, int64_t n_layers, int64_t width, int64_t page_tokens)
      : be_(be), layers_(static_cast<size_t>(n_layers)), width_(width), page_tokens_(page_tokens) {}
  ~VkKvPool() override;
  void grow(int64_t n_pages) override;
  int64_t n_pages() const override { return n_pages_; }
  int64_t page_tokens() const override { return page_tokens_; }
  int64_t n_layers() const { return static_cast<int64_t>(layers_.size()); }
  int64_t width() const { return width_; }
  VkDeviceSize page_bytes() const { return static_cast<VkDeviceSize>(page_tokens_ * width_) * 4; }
  const Range& layer(int64_t l) const { return layers_[static_cast<size_t>(l)].range; }

 private:
  friend class VulkanBackend;
  VulkanBackend& be_;
  std::vector<Alloc> layers_;  // empty ranges until the first grow()
  int64_t width_, page_tokens_;
  int64_t n_pages_ = 0;
};

inline const VkTensor& vk(const Tensor& t) { return static_cast<const VkTensor&>(t); }
inline const VkKvPool& vk(const KvPool& c) { return static_cast<const VkKvPool&>(c); }

class VulkanBackend final : public Backend {
 public:
  explicit VulkanBackend(const BackendOptions& options);
  ~VulkanBackend() override;
  const char* name() const override { return "vulkan"; }

  std::unique_ptr<Tensor> upload(const HostWeight& w) override;
  std::unique_ptr<Tensor> alloc(DType dtype, int64_t rows, int64_t cols) override;
  void write(Tensor& dst, const void* src, size_t bytes) override;
  void read(const Tensor& src, void* dst, size_t bytes) override;
  std::unique_ptr<KvPool> create_kv_pool(int64_t n_layers, int64_t row_width, int64_t page_tokens) override;
  void read_kv_rows(const KvPool& pool, int64_t layer, int64_t page, int64_t n_rows, float* dst) override;
  void write_kv_rows(KvPool& pool, int64_t layer, int64_t page, int64_t n_rows, const float* src) override;
  void begin_step(uint64_t replay_key) override;
  void end_step() override;

  void embed(Tensor& dst, const Tensor& table, const Tensor& tokens) override;
  void rmsnorm(Tensor& dst, const Tensor& src, const Tensor& weight, float eps, int64_t cols) override;
  void matmul(Tensor& dst, const Tensor& src, const Tensor& weight) override;
  void add(Tensor& acc, const Tensor& x) override;
  void swiglu(Tensor& dst, const Tensor& gate, const Tensor& up) override;
  void gather_rows(Tensor& dst, const Tensor& src, const Tensor& rows) override;
  void copy_kv_page(KvPool& pool, int64_t dst, int64_t src) override;
  void mla_store(KvPool& pool, int64_t layer, const Tensor& kv_a, const Tensor& kv_norm, float eps,
                 const StepBatch& batch, const RopeParams& rope) override;
  void mla_attention(Tensor& dst, const Tensor& q, const KvPool& pool, int64_t layer, const StepBatch& batch,
                     const MlaWeights& up, const MlaShape& shape, const RopeParams& rope) override;
  void moe_route(Tensor& ids, Tensor& weights, Tensor* raw_logits, const Tensor& x, const Tensor& gate,
                 const Tensor* score_bias, const RouterParams& params) override;
  void moe_experts(Tensor& dst, const Tensor& x, const Tensor& ids, const Tensor& weights,
                   const ExpertWeights& experts) override;

  // For VkTensor and VkKvPool.
  void release(const Alloc& a);
  void grow_pool(VkKvPool& pool, int64_t n_pages);

 private:
  // ---- for the op files (called with the step lock held, inside the caller's step)
  struct Matmul {  // out[b][i][j] = Σ_k x[b][i][k] · W[w_row0 + b·w_bs + j][k]  (matmul_nn: W[… + k][j])
    uint32_t n = 0, N = 0, K = 0, batch = 1;
    uint32_t x_off = 0, x_ld = 0, x_bs = 0;
    uint32_t y_off = 0, y_ld = 0, y_bs = 0;
    uint32_t w_row0 = 0, w_bs = 0;
  };
  void record_matmul(const Range& x, const VkTensor& w, const Range& y, const Matmul& m, bool transposed_w = false);
  // mla_attention of query rows [row0, row0 + n): the absorbed path over the pool, or the
  // expanded path of one sequence (`expanded`) over its gathered latent rows (vk_mla.cpp).
  void mla_rows(Tensor& dst, const Tensor& q, const VkKvPool& pool, int64_t layer, const StepBatch& batch,
                const MlaWeights& up, const MlaShape& shape, const RopeParams& rope, int64_t row0, int64_t n,
                const SeqRows* expanded);
  Alloc temp(VkDeviceSize bytes, const char* what);  // device memory outside the step's own bookkeeping
  // An op's temporary, returned by free_scratch once recorded (reusable at once). A step being
  // recorded for replay keeps its temporaries for as long as the recording lives.
  Alloc scratch(VkDeviceSize bytes, const char* what);
  void free_scratch(const Alloc& a);
  const Range& dummy() const { return dummy_.range; }
  Recorder& rec() { return *rec_; }  // the open step's command buffer

  // Runs `f` with the lock held inside the calling thread's step; a failure abandons the step.
  template <class F>
  void op(const char* what, F&& f);
  std::unique_lock<std::mutex> out_of_step();  // locked, with no step open (an abandoned one is closed)
  void abandon_step_locked();
  void trim_locked();
  void wait_steps_locked();  // the last submitted step, whichever recorder holds it
  // Host ↔ device bytes at `offset` of a range; inside the caller's step, ordered with its ops.
  void write_range(const Range& dst, VkDeviceSize offset, const void* src, size_t bytes);
  void read_range(const Range& src, VkDeviceSize offset, void* dst, size_t bytes);

  // ---- replay (vk_replay.cpp): a step begun with a non-zero key is recorded once into its
  // own reusable command buffer, then resubmitted by later steps with that key, whose ops are
  // only counted against the recording. Step inputs written before the first op go through
  // xfer_, submitted ahead of the step. A recording is dropped when memory it references is
  // freed (tensors, pool growth); a step that reads or writes mid-way is never replayed.
  struct Replay {
    std::unique_ptr<Recorder> rec;     // null: this key runs unrecorded
    std::vector<Alloc> scratch;        // the recording's temporaries, all of them
    std::vector<size_t> spare;         // indices of scratch free to reuse while recording
    std::vector<Range> uses;           // every range the command buffer references
    uint64_t op_hash = 0;
    size_t n_ops = 0;
    bool recorded = false;             // complete: replayable
  };
  enum class Mode { plain, recording, replaying };
  void start_step_locked(uint64_t key);       // picks the mode and the recorder
  void submit_step_locked();                  // ends the step in its mode
  bool note_op_locked(const char* what);      // false: replaying, skip the op
  void poison_locked();                       // the step being recorded will not be replayed
  void drop_locked(uint64_t key);             // frees a recording (not in flight)
  void check_released_locked();               // drops recordings that use freed memory

  Device dev_;
  DeviceMemory mem_;
  Kernels kernels_;
  Recorder step_, xfer_;
  std::mutex mu_;      // the recorders, the step owner, the read-back buffer, the replays
  std::mutex mem_mu_;  // the allocator and released_ (taken inside mu_, never the other way round)
  std::condition_variable cv_;
  std::thread::id owner_;  // the thread whose step is open
  bool in_step_ = false;
  std::unique_ptr<HostBuffer> readback_;
  Alloc dummy_;
  uint32_t wg_ = 64, lanes_ = 1;

  Recorder* rec_ = &step_;     // the open step's recorder
  Recorder* last_ = nullptr;   // the recorder of the last submitted step
  std::map<uint64_t, Replay> replays_;
  Mode mode_ = Mode::plain;
  uint64_t key_ = 0;
  Replay* replay_ = nullptr;   // the recording being made or replayed
  bool ops_started_ = false;   // an op was enqueued in the open step
  bool poisoned_ = false;      // the step being recorded will run once, unrecorded
  uint64_t op_hash_ = 0;
  size_t n_ops_ = 0;
  std::atomic<bool> track_releases_{false};
  std::vector<Range> released_;  // tensors' and pools' memory freed since the last check
};

template <class F>
void VulkanBackend::op(const char* what, F&& f) {
  std::lock_guard lock(mu_);
  if (owner_ != std::this_thread::get_id() || !in_step_)
    engine::fail(engine::Errc::internal, std::string("vulkan: ") + what + " outside begin_step()/end_step()");
  try {
    if (note_op_locked(what)) f();
  } catch (...) {
    abandon_step_locked();
    throw;
  }
}

// Workgroups for `count` invocations of a 1-D kernel, spread over x and y (x ≤ 65535).
void grid_1d(uint64_t count, uint32_t wg, uint32_t& gx, uint32_t& gy);
inline uint32_t u32(int64_t v) { return static_cast<uint32_t>(v); }
inline uint32_t ceil_div(uint64_t a, uint64_t b) { return static_cast<uint32_t>((a + b - 1) / b); }

}  // namespace sibyl::backend::vulkan
