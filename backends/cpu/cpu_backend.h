// CPU backend internals shared by its op files.
#pragma once
#include <memory>
#include <mutex>
#include <vector>

#include "backends/backend.h"
#include "engine/core/failure.h"
#include "backends/cpu/kernels.h"
#include "backends/cpu/thread_pool.h"

namespace sibyl::backend::cpu {

using engine::Errc;
using engine::fail;

class CpuTensor final : public Tensor {
 public:
  CpuTensor(DType dtype, int64_t rows, int64_t cols);                     // owns zeroed storage
  CpuTensor(DType dtype, int64_t rows, int64_t cols, const void* borrowed);  // uses host memory in place
  const uint8_t* bytes() const { return data_; }
  uint8_t* mutable_bytes() { return owned_.empty() ? nullptr : reinterpret_cast<uint8_t*>(owned_.data()); }
  const float* f32() const { return reinterpret_cast<const float*>(data_); }
  float* f32() { return reinterpret_cast<float*>(mutable_bytes()); }
  const int32_t* i32() const { return reinterpret_cast<const int32_t*>(data_); }
  int32_t* i32() { return reinterpret_cast<int32_t*>(mutable_bytes()); }
  WeightRows weight_rows() const {
    return {data_, dtype(), rows(), cols(), scale_.empty() ? nullptr : scale_.data(), block_rows_, block_cols_};
  }
  void set_block_scale(const void* scale, int64_t block_rows, int64_t block_cols);
  // What a matmul reads: weight_rows() plus, for a weight that allow_packing() took, the
  // packed copy (packed.h), made on the first call so that loading stays zero-copy.
  WeightRows matmul_rows() const;
  void allow_packing();

 private:
  bool packing_ = false;
  mutable std::once_flag packed_once_;
  mutable std::unique_ptr<uint8_t[]> packed_store_;
  mutable const uint8_t* packed_ = nullptr;  // 64-byte aligned inside packed_store_
  std::vector<uint64_t> owned_;  // 8-byte aligned
  const uint8_t* data_;
  std::vector<float> scale_;     // f8_e4m3 block scales (a copy: tiny, and may be misaligned in the file)
  int64_t block_rows_ = 0, block_cols_ = 0;
};

// The paged latent cache on the host: one block per page holding its rows of every layer,
// [n_layers, page_tokens, width], so growing never moves existing pages.
class CpuKvPool final : public KvPool {
 public:
  CpuKvPool(int64_t n_layers, int64_t row_width, int64_t page_tokens)
      : n_layers_(n_layers), width_(row_width), page_tokens_(page_tokens) {}
  void grow(int64_t n_pages) override;
  int64_t n_pages() const override { return static_cast<int64_t>(pages_.size()); }
  int64_t page_tokens() const override { return page_tokens_; }
  int64_t width() const { return width_; }
  float* row(int64_t layer, int64_t page, int64_t r) {
    return pages_[static_cast<size_t>(page)].get() + (layer * page_tokens_ + r) * width_;
  }
  const float* row(int64_t layer, int64_t page, int64_t r) const {
    return pages_[static_cast<size_t>(page)].get() + (layer * page_tokens_ + r) * width_;
  }
  size_t page_floats() const { return static_cast<size_t>(n_layers_ * page_tokens_ * width_); }
  float* page(int64_t page) { return pages_[static_cast<size_t>(page)].get(); }

 private:
  int64_t n_layers_, width_, page_tokens_;
  std::vector<std::unique_ptr<float[]>> pages_;
};

// Where a step's rows find their latent rows: the StepBatch's tensors read on the host.
struct PagedRows {
  PagedRows(const CpuKvPool& pool, const StepBatch& batch);
  // The latent row of position `pos` of the sequence of step row `i`.
  const float* at(int64_t layer, int64_t i, int64_t pos) const;
  float* mutable_at(CpuKvPool& p, int64_t layer, int64_t i, int64_t pos) const;
  int64_t page_of(int64_t i, int64_t pos) const;
  // The latent rows of positions [from, from + len) of row i's sequence, into out (one page
  // lookup per page, not per position).
  void rows(int64_t layer, int64_t i, int64_t from, int64_t len, const float** out) const;

  const CpuKvPool& pool;
  const int32_t* positions;
  const int32_t* row_seq;
  const int32_t* table;
  int64_t max_pages, page_tokens;
};

inline const CpuTensor& cpu(const Tensor& t) { return static_cast<const CpuTensor&>(t); }
inline CpuTensor& cpu(Tensor& t) { return static_cast<CpuTensor&>(t); }

// What every op runs with: the backend's threads and its matmul precision.
struct Exec {
  ThreadPool& pool;
  Precision precision;
};

// out rows i < n: out[i·ldo + j] = x[i·ldx, :] · w[j, :]. Parallel over w's rows. The fast
// kernels (fast_kernels.h) where the precision and w's dtype have one, else gemm_exact:
// float32 on exactly decoded weight rows.
void gemm(const Exec& ex, const float* x, int64_t n, int64_t ldx, const WeightRows& w, float* out, int64_t ldo);
// gemm with a and then b on the same x: on the fast path, where both weights take the same
// activation format, x is converted once and both run as one parallel loop (same values).
void gemm_pair(const Exec& ex, const float* x, int64_t n, int64_t ldx, const WeightRows& a, float* out_a,
               int64_t ld_a, const WeightRows& b, float* out_b, int64_t ld_b);
void gemm_exact(ThreadPool& pool, const float* x, int64_t n, int64_t ldx, const WeightRows& w, float* out,
                int64_t ldo);

// Rotates one rope vector of `dim` values in place for position `pos`.
void rope_rotate(float* x, int64_t dim, int32_t pos, const RopeParams& rope);
// The same in two halves, so that several heads of one position share the angles:
// cs[2i], cs[2i + 1] = cos, sin (times the attention factor) of rotation i < dim / 2.
void rope_angles(float* cs, int64_t dim, int32_t pos, const RopeParams& rope);
void rope_apply(float* x, int64_t dim, const float* cs, bool interleaved);

// A norm's weight vector as float32, converted once per op (not once per row).
struct NormWeight {
  std::vector<float> scratch;
  const float* get(const WeightRows& w);
};
void rmsnorm_row(float* dst, const float* src, const float* weight, float eps, int64_t cols);

// MLA and MoE ops live in their own files.
void mla_store(const Exec& ex, CpuKvPool& kv, int64_t layer, const CpuTensor& kv_a, const CpuTensor& kv_norm,
               float eps, const StepBatch& batch, const RopeParams& rope);
void mla_attention(const Exec& ex, CpuTensor& dst, const CpuTensor& q, const CpuKvPool& kv, int64_t layer,
                   const StepBatch& batch, const MlaWeights& up, const MlaShape& shape, const RopeParams& rope);
void moe_route(const Exec& ex, CpuTensor& ids, CpuTensor& weights, CpuTensor* raw_logits, const CpuTensor& x,
               const CpuTensor& gate, const CpuTensor* score_bias, const RouterParams& params);
void moe_experts(const Exec& ex, CpuTensor& dst, const CpuTensor& x, const CpuTensor& ids, const CpuTensor& weights,
                 const ExpertWeights& experts);

}  // namespace sibyl::backend::cpu
