// Multi-head Latent Attention on the CPU: storing latent rows, and the two
// equivalent attention paths (absorbed for decode, expanded for prefill).
#include <algorithm>
#include <cmath>
#include <vector>

#include "backends/cpu/cpu_backend.h"
#include "backends/cpu/vec_math.h"

namespace sibyl::backend::cpu {
namespace {

// In-place softmax over n scores; returns nothing, scores become probabilities. The fast
// path's exp is vectorized (vec_math.h), the exact path's is libm's.
void softmax(float* s, int64_t n, Precision precision) {
  if (precision == Precision::fast) return fast_softmax(s, n);
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

// The same, with the position's rope angles computed once for all heads (rope_angles).
void rotated_query(float* out, const CpuTensor& q, int64_t i, int64_t h, const MlaShape& sh, const float* angles,
                   bool interleaved) {
  const int64_t qk = sh.qk_nope_head_dim + sh.qk_rope_head_dim;
  const float* src = q.f32() + i * q.cols() + h * qk;
  std::copy(src, src + qk, out);
  rope_apply(out + sh.qk_nope_head_dim, sh.qk_rope_head_dim, angles, interleaved);
}

// W_UK and W_UV of one head from either layout (see MlaWeights), applied to many rows at
// once so that each weight row is converted once per step, not once per row.
struct UpRows {
  UpRows(const MlaWeights& up, const MlaShape& sh)
      : split(up.kv_b == nullptr), dn(sh.qk_nope_head_dim), dv(sh.v_head_dim), R(sh.kv_lora_rank) {
    if (split) {  // matmul_rows: the heads' views keep a packed copy (rows_from)
      k_b = cpu(*up.k_b).matmul_rows();
      v_b = cpu(*up.v_b).matmul_rows();
    } else {
      kv_b = cpu(*up.kv_b).matmul_rows();
    }
  }
  // q̃ = q_nope · W_UK of every head for n rows: head h of row i at out[i·ldo + h·R + c], c < R;
  // q_nope of head h at q[i·ldq + h·qk].
  void absorb(const Exec& ex, const float* q, int64_t ldq, int64_t qk, int64_t n, int64_t heads, float* out,
              int64_t ldo) const {
    if (split) {  // k_b rows of head h are W_UK transposed: one dot per output
      for (int64_t h = 0; h < heads; ++h) gemm(ex, q + h * qk, n, ldq, k_b.rows_from(h * R, R), out + h * R, ldo);
      return;
    }
    // kv_b: a head's dn rows of W_UK [dn, R], converted once, summed row by row; heads in parallel
    ex.pool.parallel_for(heads, n * dn * R, [&](int64_t h_begin, int64_t h_end) {
      std::vector<float> w(static_cast<size_t>(dn * R));
      for (int64_t h = h_begin; h < h_end; ++h) {
        const WeightRows rows = kv_b.rows_from(h * (dn + dv), dn);
        for (int64_t d = 0; d < dn; ++d) {
          const float* r = rows.row(d, w.data() + d * R);
          if (r != w.data() + d * R) std::copy_n(r, R, w.data() + d * R);
        }
        gemm_kmajor(q + h * qk, ldq, n, w.data(), dn, R, out + h * R, ldo);
      }
    });
  }
  // W_UV of head h: dv rows of R.
  WeightRows values(int64_t h) const {
    return split ? v_b.rows_from(h * dv, dv) : kv_b.rows_from(h * (dn + dv) + dn, dv);
  }

  bool split;
  int64_t dn, dv, R;
  WeightRows kv_b{}, k_b{}, v_b{};
};

// Rows [first, first + n) of the step; each row reads only its own sequence's cache, so
// its result does not depend on the other rows of the batch.
void attention_absorbed(const Exec& ex, CpuTensor& dst, const CpuTensor& q, const PagedRows& kv, int64_t layer,
                        int64_t first, int64_t n, int64_t from, const UpRows& up, const MlaShape& sh,
                        const RopeParams& rope) {
  const int64_t H = sh.n_heads, R = sh.kv_lora_rank, dn = sh.qk_nope_head_dim, dr = sh.qk_rope_head_dim,
                dv = sh.v_head_dim, qk = dn + dr;
  const int32_t* pos = kv.positions;
  const int64_t longest = *std::max_element(pos + first, pos + first + n) + 1;
  // q̃ [n, H, R] and õ [n, H, R]
  std::vector<float> q_lat(static_cast<size_t>(n * H * R)), o_lat(static_cast<size_t>(n * H * R));
  up.absorb(ex, q.f32() + first * q.cols(), q.cols(), qk, n, H, q_lat.data(), H * R);
  // Items are (row, group of up to 4 heads): each cached latent row is read once for the group,
  // scored with 4 × 4 tiles of dot products over [c_kv | k_pe] (the cache row's own layout).
  const int64_t W = R + dr, groups = (H + 3) / 4;
  ex.pool.parallel_for(n * groups, longest * 4 * W, [&](int64_t begin, int64_t end) {
    thread_local std::vector<float> qcat, qrow, scores, angles;
    thread_local std::vector<const float*> rows, next;
    qcat.resize(static_cast<size_t>(4 * W));
    qrow.resize(static_cast<size_t>(qk));
    angles.resize(static_cast<size_t>(dr));
    for (int64_t item = begin; item < end; ++item) {
      const int64_t r = item / groups, i = first + r, h0 = (item % groups) * 4, nh = std::min<int64_t>(4, H - h0);
      const int64_t len = pos[i] + 1 - from;  // cached positions [from, pos[i]]
      rope_angles(angles.data(), dr, pos[i], rope);
      for (int64_t g = 0; g < nh; ++g) {  // [q̃ | rotated q_pe] of head h0 + g
        rotated_query(qrow.data(), q, i, h0 + g, sh, angles.data(), rope.interleaved);
        std::copy_n(q_lat.data() + (r * H + h0 + g) * R, R, qcat.data() + g * W);
        std::copy_n(qrow.data() + dn, dr, qcat.data() + g * W + R);
      }
      rows.resize(static_cast<size_t>(len));
      kv.rows(layer, i, from, len, rows.data());
      // The next row's cache rows, asked for (to L2) a few per tile of this one: by the time
      // it is scored they are there (the hardware's own prefetch restarts at every row).
      int64_t len_next = 0;
      if (item + 1 < end && (item + 1) % groups == 0) {
        len_next = pos[i + 1] + 1 - from;
        next.resize(static_cast<size_t>(len_next));
        kv.rows(layer, i + 1, from, len_next, next.data());
      }
      scores.resize(static_cast<size_t>(4 * len));
      float tile[16];
      int64_t t = 0;
      for (; nh == 4 && t + 4 <= len; t += 4) {
        for (int64_t p = t; p < std::min(len_next, t + 4); ++p)
          for (int64_t b = 0; b < W * 4; b += 64) __builtin_prefetch(reinterpret_cast<const char*>(next[p]) + b, 0, 2);
        dot_4x4(qcat.data(), W, rows.data() + t, W, tile, 4);
        for (int64_t g = 0; g < 4; ++g)
          for (int64_t c = 0; c < 4; ++c) scores[g * len + t + c] = tile[g * 4 + c] * sh.softmax_scale;
      }
      for (; t < len; ++t)
        for (int64_t g = 0; g < nh; ++g) scores[g * len + t] = dot(qcat.data() + g * W, rows[t], W) * sh.softmax_scale;
      float* ol[4] = {};
      for (int64_t g = 0; g < nh; ++g) {
        softmax(scores.data() + g * len, len, ex.precision);
        ol[g] = o_lat.data() + (r * H + h0 + g) * R;  // õ = Σ p · c_kv
      }
      axpy_rows(ol, scores.data(), len, static_cast<int>(nh), rows.data(), len, R);
    }
  });
  // o = õ · W_UVᵀ per head  [n, dv]
  for (int64_t h = 0; h < H; ++h)
    gemm(ex, o_lat.data() + h * R, n, H * R, up.values(h), dst.f32() + first * dst.cols() + h * dv, dst.cols());
}

// k_nope and v of every cached token and head, expanded from the latent rows.
struct Expanded {
  std::vector<float> k, v;  // separate buffers (split layout) or one interleaved buffer in k
  int64_t k_stride, v_stride, k_head, v_head, v_offset;
  const float* key(int64_t t, int64_t h) const { return k.data() + t * k_stride + h * k_head; }
  const float* value(int64_t t, int64_t h) const {
    return (v.empty() ? k.data() : v.data()) + t * v_stride + h * v_head + v_offset;
  }
};

// `lat` holds the sequence's latent rows [L, width] contiguously.
Expanded expand_latent(const Exec& ex, const float* lat, int64_t width, int64_t L, const MlaWeights& w,
                       const MlaShape& sh) {
  const int64_t H = sh.n_heads, R = sh.kv_lora_rank, dn = sh.qk_nope_head_dim, dv = sh.v_head_dim;
  Expanded e;
  if (w.kv_b) {  // [k_nope | v] per head: c_kv [L, R] · kv_bᵀ
    const int64_t cols = H * (dn + dv);
    e.k.resize(static_cast<size_t>(L * cols));
    gemm(ex, lat, L, width, cpu(*w.kv_b).matmul_rows(), e.k.data(), cols);
    e.k_stride = e.v_stride = cols;
    e.k_head = e.v_head = dn + dv;
    e.v_offset = dn;
    return e;
  }
  e.v.resize(static_cast<size_t>(L * H * dv));
  gemm(ex, lat, L, width, cpu(*w.v_b).matmul_rows(), e.v.data(), H * dv);
  e.k.resize(static_cast<size_t>(L * H * dn));
  const WeightRows k_b = cpu(*w.k_b).weight_rows();
  ex.pool.parallel_for(H, L * dn * R, [&](int64_t begin, int64_t end) {
    std::vector<float> k_t(static_cast<size_t>(dn * R)), scratch(static_cast<size_t>(dn));
    for (int64_t h = begin; h < end; ++h) {
      for (int64_t c = 0; c < R; ++c) {  // W_UK of head h, [dn, R]
        const float* row = k_b.row(h * R + c, scratch.data());
        for (int64_t d = 0; d < dn; ++d) k_t[d * R + c] = row[d];
      }
      for (int64_t t = 0; t < L; ++t)
        for (int64_t d = 0; d < dn; ++d) e.k[t * H * dn + h * dn + d] = dot(lat + t * width, &k_t[d * R], R);
    }
  });
  e.k_stride = H * dn;
  e.v_stride = H * dv;
  e.k_head = dn;
  e.v_head = dv;
  e.v_offset = 0;
  return e;
}

// Rows [first, first + n) of the step, all of one sequence.
void attention_expanded(const Exec& ex, CpuTensor& dst, const CpuTensor& q, const PagedRows& paged, int64_t layer,
                        int64_t first, int64_t n, int64_t from, const MlaWeights& w, const MlaShape& sh,
                        const RopeParams& rope) {
  const int64_t H = sh.n_heads, R = sh.kv_lora_rank, dn = sh.qk_nope_head_dim, dr = sh.qk_rope_head_dim,
                dv = sh.v_head_dim, width = paged.pool.width();
  const int32_t* pos = paged.positions;
  // the sequence's latent rows of positions [from, from + L), gathered from its pages
  const int64_t L = *std::max_element(pos + first, pos + first + n) + 1 - from;
  std::vector<float> lat(static_cast<size_t>(L * width));
  for (int64_t t = 0; t < L; ++t) std::copy_n(paged.at(layer, first, from + t), width, lat.data() + t * width);
  const Expanded kv = expand_latent(ex, lat.data(), width, L, w, sh);
  ex.pool.parallel_for(n * H, L * (dn + dr + dv), [&](int64_t begin, int64_t end) {
    std::vector<float> qrow(dn + dr), scores;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t i = first + item / H, h = item % H;
      rotated_query(qrow.data(), q, i, h, sh, pos[i], rope);
      const int64_t len = pos[i] + 1 - from;
      scores.resize(static_cast<size_t>(len));
      for (int64_t t = 0; t < len; ++t) {
        const float* k_pe = lat.data() + t * width + R;
        scores[t] = (dot(qrow.data(), kv.key(t, h), dn) + dot(qrow.data() + dn, k_pe, dr)) * sh.softmax_scale;
      }
      softmax(scores.data(), len, ex.precision);
      float* out = dst.f32() + i * dst.cols() + h * dv;
      std::fill(out, out + dv, 0.0f);
      for (int64_t t = 0; t < len; ++t) axpy(out, scores[t], kv.value(t, h), dv);
    }
  });
}

}  // namespace

void mla_store(const Exec& ex, CpuKvPool& kv, int64_t layer, const CpuTensor& kv_a, const CpuTensor& kv_norm, float eps,
               const StepBatch& batch, const RopeParams& rope) {
  const int64_t R = kv_norm.cols(), dr = kv_a.cols() - R;
  const PagedRows paged(kv, batch);
  NormWeight nw;
  const float* w = nw.get(kv_norm.weight_rows());
  // per row the norm and the rope angles (libm sin/cos in double): far more than its width
  ex.pool.parallel_for(kv_a.rows(), kv_a.cols() * 256, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const float* src = kv_a.f32() + i * kv_a.cols();
      const int32_t pos = paged.positions[i];
      float* row = paged.mutable_at(kv, layer, i, pos);
      rmsnorm_row(row, src, w, eps, R);
      std::copy(src + R, src + R + dr, row + R);
      rope_rotate(row + R, dr, pos, rope);
    }
  });
}

void mla_attention(const Exec& ex, CpuTensor& dst, const CpuTensor& q, const CpuKvPool& kv, int64_t layer,
                   const StepBatch& batch, const MlaWeights& up, const MlaShape& shape, const RopeParams& rope) {
  if (q.rows() == 0) return;
  if (!up.kv_b && (!up.k_b || !up.v_b)) fail(Errc::internal, "mla_attention without up-projection weights");
  const PagedRows paged(kv, batch);
  const UpRows rows(up, shape);
  const int64_t from = batch.first_position;
  // Consecutive absorbed sequences run as one parallel loop (decode rows of many sessions).
  size_t s = 0;
  while (s < batch.seqs.size()) {
    const SeqRows& first = batch.seqs[s];
    if (first.path == MlaPath::expanded) {
      attention_expanded(ex, dst, q, paged, layer, first.first_row, first.n_rows, from, up, shape, rope);
      ++s;
      continue;
    }
    size_t e = s;
    while (e < batch.seqs.size() && batch.seqs[e].path == MlaPath::absorbed) ++e;
    const int64_t n = batch.seqs[e - 1].first_row + batch.seqs[e - 1].n_rows - first.first_row;
    if (n > 0) attention_absorbed(ex, dst, q, paged, layer, first.first_row, n, from, rows, shape, rope);
    s = e;
  }
}

}  // namespace sibyl::backend::cpu
