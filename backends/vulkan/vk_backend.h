// The Vulkan backend: tensors in device memory, one command buffer per step, ops recorded as
// compute dispatches (vk_ops.cpp, vk_mla.cpp, vk_moe.cpp).
//
// Threads: sessions on several threads may share the backend. A step belongs to the thread
// that began it until end_step(); other threads' steps wait for it, and so do their
// out-of-step transfers (uploads, writes, reads, cache growth), which therefore never run
// while a command buffer is half recorded. Memory freed during a step is reused at once: the
// recorder puts a barrier between the last use of a range and its next write.
#pragma once
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>

#include "backend.h"
#include "failure.h"
#include "vk_kernels.h"
#include "vk_memory.h"
#include "vk_recorder.h"

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
  // i32 tensors: the largest value the host wrote (-1: unknown). Positions tell attention how
  // many cache rows the step reads without a round trip to the device.
  int64_t host_max = -1;

 private:
  VulkanBackend& be_;
  Alloc alloc_;
};

class VkKvCache final : public KvCache {
 public:
  VkKvCache(VulkanBackend& be, int64_t n_layers, int64_t width) : be_(be), layers_(n_layers), width_(width) {}
  ~VkKvCache() override;
  void reserve(int64_t tokens) override;
  int64_t capacity() const override { return capacity_; }
  int64_t width() const { return width_; }
  const Range& layer(int64_t l) const { return layers_[static_cast<size_t>(l)].range; }

 private:
  friend class VulkanBackend;
  VulkanBackend& be_;
  std::vector<Alloc> layers_;  // [capacity, width] float32 each
  int64_t width_;
  int64_t capacity_ = 0;
};

inline const VkTensor& vk(const Tensor& t) { return static_cast<const VkTensor&>(t); }
inline const VkKvCache& vk(const KvCache& c) { return static_cast<const VkKvCache&>(c); }

class VulkanBackend final : public Backend {
 public:
  explicit VulkanBackend(const BackendOptions& options);
  ~VulkanBackend() override;
  const char* name() const override { return "vulkan"; }

  std::unique_ptr<Tensor> upload(const HostWeight& w) override;
  std::unique_ptr<Tensor> alloc(DType dtype, int64_t rows, int64_t cols) override;
  void write(Tensor& dst, const void* src, size_t bytes) override;
  void read(const Tensor& src, void* dst, size_t bytes) override;
  std::unique_ptr<KvCache> create_kv_cache(int64_t n_layers, int64_t row_width) override;
  void begin_step() override;
  void end_step() override;

  void embed(Tensor& dst, const Tensor& table, const Tensor& tokens) override;
  void rmsnorm(Tensor& dst, const Tensor& src, const Tensor& weight, float eps, int64_t cols) override;
  void matmul(Tensor& dst, const Tensor& src, const Tensor& weight) override;
  void add(Tensor& acc, const Tensor& x) override;
  void swiglu(Tensor& dst, const Tensor& gate, const Tensor& up) override;
  void copy_row(Tensor& dst, const Tensor& src, int64_t row) override;
  void mla_store(KvCache& cache, int64_t layer, const Tensor& kv_a, const Tensor& kv_norm, float eps,
                 const Tensor& positions, const RopeParams& rope) override;
  void mla_attention(Tensor& dst, const Tensor& q, const KvCache& cache, int64_t layer, const Tensor& positions,
                     const MlaWeights& up, const MlaShape& shape, const RopeParams& rope, MlaPath path) override;
  void moe_route(Tensor& ids, Tensor& weights, Tensor* raw_logits, const Tensor& x, const Tensor& gate,
                 const Tensor* score_bias, const RouterParams& params) override;
  void moe_experts(Tensor& dst, const Tensor& x, const Tensor& ids, const Tensor& weights,
                   const ExpertWeights& experts) override;

  // For VkTensor and VkKvCache.
  void release(const Alloc& a);
  void grow_cache(VkKvCache& cache, int64_t tokens);

 private:
  // ---- for the op files (called with the step lock held, inside the caller's step)
  struct Matmul {  // out[b][i][j] = Σ_k x[b][i][k] · W[w_row0 + b·w_bs + j][k]  (matmul_nn: W[… + k][j])
    uint32_t n = 0, N = 0, K = 0, batch = 1;
    uint32_t x_off = 0, x_ld = 0, x_bs = 0;
    uint32_t y_off = 0, y_ld = 0, y_bs = 0;
    uint32_t w_row0 = 0, w_bs = 0;
  };
  void record_matmul(const Range& x, const VkTensor& w, const Range& y, const Matmul& m, bool transposed_w = false);
  Alloc temp(VkDeviceSize bytes, const char* what);  // a range that free_temp returns (reusable at once)
  void free_temp(const Alloc& a) { release(a); }
  const Range& dummy() const { return dummy_.range; }

  // Runs `f` with the lock held inside the calling thread's step; a failure abandons the step.
  template <class F>
  void op(const char* what, F&& f);
  std::unique_lock<std::mutex> out_of_step();  // locked, with no step open (an abandoned one is closed)
  void abandon_step_locked();
  void trim_locked();

  Device dev_;
  DeviceMemory mem_;
  Kernels kernels_;
  Recorder step_, xfer_;
  std::mutex mu_;      // the recorders, the step owner, the read-back buffer
  std::mutex mem_mu_;  // the allocator (taken inside mu_, never the other way round)
  std::condition_variable cv_;
  std::thread::id owner_;  // the thread whose step is open
  std::unique_ptr<HostBuffer> readback_;
  Alloc dummy_;
  uint32_t wg_ = 64, lanes_ = 1;
};

template <class F>
void VulkanBackend::op(const char* what, F&& f) {
  std::lock_guard lock(mu_);
  if (owner_ != std::this_thread::get_id() || !step_.open())
    engine::fail(engine::Errc::internal, std::string("vulkan: ") + what + " outside begin_step()/end_step()");
  try {
    f();
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
