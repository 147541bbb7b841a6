// CUDA backend internals shared by its host files: tensors, the paged KV pool, and the op helpers
// (linear algebra dispatch, MLA, MoE) that turn backend calls into recorded kernel launches.
#pragma once
#include <memory>
#include <vector>

#include "backends/backend.h"
#include "backends/cuda/context.h"
#include "engine/core/failure.h"
#include "backends/cuda/kernels.h"

namespace sibyl::backend::cuda {

using engine::Errc;
using engine::fail;

// Device memory of a tensor: weights and caches are persistent allocations, activations come from
// the step arena. Holds the context, so a tensor outliving its backend stays safe to destroy.
class CudaTensor final : public Tensor {
 public:
  CudaTensor(std::shared_ptr<Context> ctx, DType dtype, int64_t rows, int64_t cols, bool persistent,
             const std::string& what);
  ~CudaTensor() override;
  CudaTensor(const CudaTensor&) = delete;
  CudaTensor& operator=(const CudaTensor&) = delete;

  void* data() const { return data_; }
  float* f32() const { return static_cast<float*>(data_); }
  int32_t* i32() const { return static_cast<int32_t*>(data_); }
  WeightView view() const;
  void set_block_scale(const void* host_scale, int64_t block_rows, int64_t block_cols);

  // Per-weight data built on first use (the MoE expert table hangs off the first gate tensor).
  mutable std::shared_ptr<void> attachment;

 private:
  std::shared_ptr<Context> ctx_;
  void* data_ = nullptr;
  size_t bytes_ = 0;
  bool persistent_;
  float* scale_ = nullptr;
  size_t scale_bytes_ = 0;
  int32_t block_rows_ = 0, block_cols_ = 0, scale_cols_ = 0;
};

inline const CudaTensor& dev_tensor(const Tensor& t) { return static_cast<const CudaTensor&>(t); }
inline CudaTensor& dev_tensor(Tensor& t) { return static_cast<CudaTensor&>(t); }

// The paged latent cache: one float32 buffer [n_pages · page_tokens, width] per layer (kv_pool.cpp).
class CudaKvPool final : public KvPool {
 public:
  CudaKvPool(std::shared_ptr<Context> ctx, int64_t n_layers, int64_t width, int64_t page_tokens);
  ~CudaKvPool() override;
  CudaKvPool(const CudaKvPool&) = delete;
  CudaKvPool& operator=(const CudaKvPool&) = delete;
  void grow(int64_t n_pages) override;
  int64_t n_pages() const override { return n_pages_; }
  int64_t page_tokens() const override { return page_tokens_; }
  int64_t n_layers() const { return int64_t(layers_.size()); }
  int64_t width() const { return width_; }
  // Layer l's rows; Errc::internal naming `op` for a layer outside the pool.
  float* layer(int64_t l, const char* op) const;
  // Page `page` of layer l; Errc::internal naming `op` for a page or layer outside the pool.
  float* page(int64_t l, int64_t page, const char* op) const;
  size_t page_bytes() const { return size_t(page_tokens_ * width_) * sizeof(float); }

 private:
  std::shared_ptr<Context> ctx_;
  struct Layer {
    float* rows = nullptr;
    int64_t pages = 0;  // allocated: at least n_pages_ (more after a grow that failed midway)
  };
  std::vector<Layer> layers_;
  int64_t width_, page_tokens_, n_pages_ = 0;
};

// A pool of this backend (another backend's is Errc::internal, not undefined behaviour).
inline const CudaKvPool& dev_pool(const KvPool& p) {
  const auto* c = dynamic_cast<const CudaKvPool*>(&p);
  if (!c) fail(Errc::internal, "CUDA backend: a KV pool from another backend");
  return *c;
}
inline CudaKvPool& dev_pool(KvPool& p) { return const_cast<CudaKvPool&>(dev_pool(static_cast<const KvPool&>(p))); }

// A step batch checked against its tensors and the pool (kv_pool.cpp): Errc::internal naming `op`
// and what is wrong otherwise. `n` is the activation rows the op got (it must be batch.rows()).
struct CheckedBatch {
  const StepBatch* batch;
  const CudaTensor* positions;
  const CudaTensor* row_seq;
  const CudaTensor* page_table;
  int64_t n, n_seqs, max_pages;
  PagedKv layer_view(const CudaKvPool& pool, int64_t layer, const char* op) const;
  BatchRows rows(int64_t first_row, int64_t seq_lo, int64_t seq_hi) const;
};
CheckedBatch check_batch(const StepBatch& batch, const CudaKvPool& pool, int64_t n, const char* op);

// A temporary device buffer from the step arena, returned when it goes out of scope (the recorded
// ops that use it still run first: the stream orders every reuse after them).
class Scratch {
 public:
  Scratch(Context& ctx, size_t bytes, const char* what) : ctx_(ctx), p_(ctx.alloc_temp(bytes, what)) {}
  ~Scratch() { ctx_.free_temp(p_); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  float* f32() const { return static_cast<float*>(p_); }
  int32_t* i32() const { return static_cast<int32_t*>(p_); }

 private:
  Context& ctx_;
  void* p_;
};

// ---- linear algebra (linear.cpp): GEMV kernels for a few tokens, cuBLAS beyond.
// y_g[i, r] = Σ_k x_g[i, k] · W[g·w_group_stride + w_offset + r, k], r < rows, g < groups, i < n;
// x_g = x + g·x_group_stride (rows ldx apart), y_g = y + g·y_group_stride (rows ldy apart).
struct Linear {
  const CudaTensor* w;
  int64_t rows, groups = 1, w_group_stride = 0, w_offset = 0;
  const float* x;
  int64_t ldx, x_group_stride = 0;
  float* y;
  int64_t ldy, y_group_stride = 0;
  int64_t n;
};
void linear(Context& ctx, const Linear& a);

// y_g[i, c] = Σ_d x_g[i, d] · W[g·w_group_stride + w_offset + d, c], d < depth, c < W.cols.
struct LinearT {
  const CudaTensor* w;
  int64_t depth, groups = 1, w_group_stride = 0, w_offset = 0;
  const float* x;
  int64_t ldx, x_group_stride = 0;
  float* y;
  int64_t ldy, y_group_stride = 0;
  int64_t n;
};
void linear_t(Context& ctx, const LinearT& a);

// Token counts up to which the GEMV kernels beat dequantize-then-cuBLAS (tuning knobs).
constexpr int64_t kGemvMaxTokens = 32;
constexpr int64_t kGemvTMaxTokens = 4;

// ---- MLA (mla.cpp) and MoE (moe.cpp)
void mla_store(Context& ctx, CudaKvPool& pool, int64_t layer, const CudaTensor& kv_a, const CudaTensor& kv_norm,
               float eps, const StepBatch& batch, const RopeParams& rope);
void mla_attention(Context& ctx, CudaTensor& dst, const CudaTensor& q, const CudaKvPool& pool, int64_t layer,
                   const StepBatch& batch, const MlaWeights& up, const MlaShape& shape, const RopeParams& rope);
void moe_route(Context& ctx, CudaTensor& ids, CudaTensor& weights, CudaTensor* raw_logits, const CudaTensor& x,
               const CudaTensor& gate, const CudaTensor* score_bias, const RouterParams& params);
void moe_experts(Context& ctx, CudaTensor& dst, const CudaTensor& x, const CudaTensor& ids, const CudaTensor& weights,
                 const ExpertWeights& experts);

// Token counts up to which MoE runs from the device expert table (no host round trip).
constexpr int64_t kMoeDeviceMaxTokens = 8;

RopeArgs rope_args(const RopeParams& rope);

// Memory and graph counters of a CUDA backend (tests, benchmarks); Errc::invalid_argument otherwise.
Stats backend_stats(const Backend& b);

}  // namespace sibyl::backend::cuda
