// CPU backend internals shared by its op files.
#pragma once
#include <memory>
#include <vector>

#include "backend.h"
#include "failure.h"
#include "kernels.h"
#include "thread_pool.h"

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

 private:
  std::vector<uint64_t> owned_;  // 8-byte aligned
  const uint8_t* data_;
  std::vector<float> scale_;     // f8_e4m3 block scales (a copy: tiny, and may be misaligned in the file)
  int64_t block_rows_ = 0, block_cols_ = 0;
};

class CpuKvCache final : public KvCache {
 public:
  CpuKvCache(int64_t n_layers, int64_t row_width) : layers_(n_layers), width_(row_width) {}
  void reserve(int64_t tokens) override;
  int64_t capacity() const override { return capacity_; }
  int64_t width() const { return width_; }
  float* row(int64_t layer, int64_t pos) { return layers_[layer].data() + pos * width_; }
  const float* row(int64_t layer, int64_t pos) const { return layers_[layer].data() + pos * width_; }

 private:
  std::vector<std::vector<float>> layers_;
  int64_t width_;
  int64_t capacity_ = 0;
};

inline const CpuTensor& cpu(const Tensor& t) { return static_cast<const CpuTensor&>(t); }
inline CpuTensor& cpu(Tensor& t) { return static_cast<CpuTensor&>(t); }

// out rows i < n: out[i·ldo + j] = x[i·ldx, :] · w[j, :]. Parallel over w's rows.
void gemm(ThreadPool& pool, const float* x, int64_t n, int64_t ldx, const WeightRows& w, float* out, int64_t ldo);

// Rotates one rope vector of `dim` values in place for position `pos`.
void rope_rotate(float* x, int64_t dim, int32_t pos, const RopeParams& rope);

void rmsnorm_row(float* dst, const float* src, const WeightRows& w, float eps, int64_t cols);

// MLA and MoE ops live in their own files.
void mla_store(ThreadPool& pool, CpuKvCache& cache, int64_t layer, const CpuTensor& kv_a, const CpuTensor& kv_norm,
               float eps, const CpuTensor& positions, const RopeParams& rope);
void mla_attention(ThreadPool& pool, CpuTensor& dst, const CpuTensor& q, const CpuKvCache& cache, int64_t layer,
                   const CpuTensor& positions, const MlaWeights& up, const MlaShape& shape, const RopeParams& rope,
                   MlaPath path);
void moe_route(ThreadPool& pool, CpuTensor& ids, CpuTensor& weights, CpuTensor* raw_logits, const CpuTensor& x,
               const CpuTensor& gate, const CpuTensor* score_bias, const RouterParams& params);
void moe_experts(ThreadPool& pool, CpuTensor& dst, const CpuTensor& x, const CpuTensor& ids, const CpuTensor& weights,
                 const ExpertWeights& experts);

}  // namespace sibyl::backend::cpu
