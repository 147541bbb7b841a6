// Multi-head Latent Attention on the CPU: storing latent rows, and the two
// equivalent attention paths (absorbed for decode, expanded for prefill).
#include <algorithm>
#include <cmath>
#include <vector>

#include "cpu_backend.h"

namespace sibyl::backend::cpu {
namespace {

// In-place softmax over n scores; returns nothing, scores become probabilities.
void softmax(float* s, int64_t n) {
  float m = *std::max_element(s, s + n);
  double sum = 0.0;
  for (int64_t t = 0; t < n; ++t) {
    s[t] = std::exp(s[t] - m);
    sum += s[t];
  }
  float inv = static_cast<float>(1.0 / sum);
  for (int64_t t = 0; t < n; ++t) s[t] *= inv;
}

// Query of token i, head h, with its rope part rotated: [nope | rope].
void rotated_query(float* out, const CpuTensor& q, int64_t i, int64_t h, const MlaShape& sh, int32_t pos,
                   const RopeParams& rope) {
  const int64_t qk = sh.qk_nope_head_dim + sh.qk_rope_head_dim;
  const float* src = q.f32() + i * q.cols() + h * qk;
  std::copy(src, src + qk, out);
  rope_rotate(out + sh.qk_nope_head_dim, sh.qk_rope_head_dim, pos, rope);
}

void attention_absorbed(ThreadPool& pool, CpuTensor& dst, const CpuTensor& q, const CpuKvCache& cache, int64_t layer,
                        const int32_t* pos, const CpuTensor& kv_b, const MlaShape& sh, const RopeParams& rope) {
  const int64_t n = q.rows(), H = sh.n_heads, R = sh.kv_lora_rank, dn = sh.qk_nope_head_dim,
                dr = sh.qk_rope_head_dim, dv = sh.v_head_dim;
  const WeightRows wkv = kv_b.weight_rows();  // per head: dn rows of W_UK, then dv rows of W_UV
  pool.parallel_for(n * H, (pos[n - 1] + 1) * (R + dr) + (dn + dv) * R, [&](int64_t begin, int64_t end) {
    std::vector<float> qrow(dn + dr), q_lat(R), o_lat(R), scratch(R), scores;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t i = item / H, h = item % H;
      rotated_query(qrow.data(), q, i, h, sh, pos[i], rope);
      // q̃ = q_nope · W_UK  [R]
      std::fill(q_lat.begin(), q_lat.end(), 0.0f);
      for (int64_t d = 0; d < dn; ++d) axpy(q_lat.data(), qrow[d], wkv.row(h * (dn + dv) + d, scratch.data()), R);
      const int64_t len = pos[i] + 1;
      scores.resize(static_cast<size_t>(len));
      for (int64_t t = 0; t < len; ++t) {
        const float* c = cache.row(layer, t);
        scores[t] = (dot(q_lat.data(), c, R) + dot(qrow.data() + dn, c + R, dr)) * sh.softmax_scale;
      }
      softmax(scores.data(), len);
      // õ = Σ p · c_kv  [R], then o = W_UV · õ  [dv]
      std::fill(o_lat.begin(), o_lat.end(), 0.0f);
      for (int64_t t = 0; t < len; ++t) axpy(o_lat.data(), scores[t], cache.row(layer, t), R);
      float* out = dst.f32() + i * dst.cols() + h * dv;
      for (int64_t j = 0; j < dv; ++j) out[j] = dot(wkv.row(h * (dn + dv) + dn + j, scratch.data()), o_lat.data(), R);
    }
  });
}

void attention_expanded(ThreadPool& pool, CpuTensor& dst, const CpuTensor& q, const CpuKvCache& cache, int64_t layer,
                        const int32_t* pos, const CpuTensor& kv_b, const MlaShape& sh, const RopeParams& rope) {
  const int64_t n = q.rows(), H = sh.n_heads, R = sh.kv_lora_rank, dn = sh.qk_nope_head_dim,
                dr = sh.qk_rope_head_dim, dv = sh.v_head_dim;
  const int64_t L = *std::max_element(pos, pos + n) + 1;
  const int64_t kv_cols = H * (dn + dv);
  // [k_nope | v] per head for every cached token: c_kv [L, R] · kv_bᵀ.
  std::vector<float> kv(static_cast<size_t>(L * kv_cols));
  gemm(pool, cache.row(layer, 0), L, cache.width(), kv_b.weight_rows(), kv.data(), kv_cols);
  pool.parallel_for(n * H, L * (dn + dr + dv), [&](int64_t begin, int64_t end) {
    std::vector<float> qrow(dn + dr), scores;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t i = item / H, h = item % H;
      rotated_query(qrow.data(), q, i, h, sh, pos[i], rope);
      const int64_t len = pos[i] + 1;
      scores.resize(static_cast<size_t>(len));
      for (int64_t t = 0; t < len; ++t) {
        const float* k_nope = kv.data() + t * kv_cols + h * (dn + dv);
        const float* k_pe = cache.row(layer, t) + R;
        scores[t] = (dot(qrow.data(), k_nope, dn) + dot(qrow.data() + dn, k_pe, dr)) * sh.softmax_scale;
      }
      softmax(scores.data(), len);
      float* out = dst.f32() + i * dst.cols() + h * dv;
      std::fill(out, out + dv, 0.0f);
      for (int64_t t = 0; t < len; ++t) axpy(out, scores[t], kv.data() + t * kv_cols + h * (dn + dv) + dn, dv);
    }
  });
}

}  // namespace

void mla_store(ThreadPool& pool, CpuKvCache& cache, int64_t layer, const CpuTensor& kv_a, const CpuTensor& kv_norm,
               float eps, const CpuTensor& positions, const RopeParams& rope) {
  const int64_t R = kv_norm.cols(), dr = kv_a.cols() - R;
  const int32_t* pos = positions.i32();
  const WeightRows w = kv_norm.weight_rows();
  pool.parallel_for(kv_a.rows(), kv_a.cols(), [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const float* src = kv_a.f32() + i * kv_a.cols();
      float* row = cache.row(layer, pos[i]);
      rmsnorm_row(row, src, w, eps, R);
      std::copy(src + R, src + R + dr, row + R);
      rope_rotate(row + R, dr, pos[i], rope);
    }
  });
}

void mla_attention(ThreadPool& pool, CpuTensor& dst, const CpuTensor& q, const CpuKvCache& cache, int64_t layer,
                   const CpuTensor& positions, const CpuTensor& kv_b, const MlaShape& shape, const RopeParams& rope,
                   MlaPath path) {
  if (q.rows() == 0) return;
  if (path == MlaPath::absorbed)
    attention_absorbed(pool, dst, q, cache, layer, positions.i32(), kv_b, shape, rope);
  else
    attention_expanded(pool, dst, q, cache, layer, positions.i32(), kv_b, shape, rope);
}

}  // namespace sibyl::backend::cpu
