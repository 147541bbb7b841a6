// Mixture-of-Experts on the CPU: the router (three selection rules) and the
// routed experts, run only for the tokens that chose them.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "backends/cpu/cpu_backend.h"
#include "backends/cpu/fast_jobs.h"
#include "backends/cpu/fast_kernels.h"
#include "backends/cpu/vec_math.h"

namespace sibyl::backend::cpu {
namespace {

// Indices of the k largest values, largest first; ties keep the lower index.
std::vector<int64_t> top_k_indices(const std::vector<float>& v, int64_t k) {
  std::vector<int64_t> idx(v.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(),
                    [&](int64_t a, int64_t b) { return v[a] > v[b] || (v[a] == v[b] && a < b); });
  idx.resize(static_cast<size_t>(k));
  return idx;
}

// Route one token: logits [E] → chosen experts and their weights.
void route_token(const float* logits, const float* bias, const RouterParams& p, int32_t* ids, float* weights) {
  const int64_t E = p.n_experts;
  std::vector<float> scores(static_cast<size_t>(E));
  if (p.score == ScoreFunc::softmax) {
    float m = *std::max_element(logits, logits + E);
    double sum = 0.0;
    for (int64_t e = 0; e < E; ++e) sum += (scores[e] = std::exp(logits[e] - m));
    for (auto& s : scores) s = static_cast<float>(s / sum);
  } else {
    for (int64_t e = 0; e < E; ++e) scores[e] = 1.0f / (1.0f + std::exp(-logits[e]));
  }
  // Scores used to choose; noaux_tc adds the correction bias for the choice only.
  std::vector<float> choice = scores;
  if (p.select == ExpertSelect::noaux_tc && bias)
    for (int64_t e = 0; e < E; ++e) choice[e] += bias[e];

  if (p.select != ExpertSelect::greedy && p.n_group > 1) {
    const int64_t per_group = E / p.n_group;
    std::vector<float> group_score(static_cast<size_t>(p.n_group));
    for (int64_t g = 0; g < p.n_group; ++g) {
      std::vector<float> members(choice.begin() + g * per_group, choice.begin() + (g + 1) * per_group);
      if (p.select == ExpertSelect::group_limited) {
        group_score[g] = *std::max_element(members.begin(), members.end());
      } else {  // noaux_tc: sum of the group's two best biased scores
        auto best = top_k_indices(members, std::min<int64_t>(2, per_group));
        float s = 0.0f;
        for (int64_t b : best) s += members[b];
        group_score[g] = s;
      }
    }
    std::vector<bool> keep(static_cast<size_t>(p.n_group), false);
    for (int64_t g : top_k_indices(group_score, p.topk_group)) keep[g] = true;
    // Experts of dropped groups get score 0 (not -inf), exactly as the reference does.
    for (int64_t e = 0; e < E; ++e)
      if (!keep[e / per_group]) choice[e] = 0.0f;
  }

  auto chosen = top_k_indices(choice, p.top_k);
  float sum = 0.0f;
  for (int64_t k = 0; k < p.top_k; ++k) {
    ids[k] = static_cast<int32_t>(chosen[k]);
    weights[k] = scores[chosen[k]];  // unbiased score
    sum += weights[k];
  }
  for (int64_t k = 0; k < p.top_k; ++k) {
    if (p.normalize) weights[k] /= (sum + 1e-20f);
    weights[k] *= p.scaling;
  }
}

}  // namespace

void moe_route(const Exec& ex, CpuTensor& ids, CpuTensor& weights, CpuTensor* raw_logits, const CpuTensor& x,
               const CpuTensor& gate, const CpuTensor* score_bias, const RouterParams& params) {
  const int64_t n = x.rows(), E = params.n_experts, K = params.top_k;
  std::vector<float> logits(static_cast<size_t>(n * E));
  gemm(ex, x.f32(), n, x.cols(), gate.matmul_rows(), logits.data(), E);
  std::vector<float> bias;
  if (score_bias) {
    bias.resize(static_cast<size_t>(E));
    to_f32(bias.data(), score_bias->bytes(), score_bias->dtype(), E);
  }
  // Per token a few small sorts and allocations (~1 µs): parallel from a few tokens on.
  ex.pool.parallel_for(n, 1 << 15, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i)
      route_token(logits.data() + i * E, bias.empty() ? nullptr : bias.data(), params, ids.i32() + i * K,
                  weights.f32() + i * K);
  });
  if (raw_logits) std::copy(logits.begin(), logits.end(), raw_logits->f32());
}

namespace {

// The chosen experts' gate and up projections as one parallel loop, then their down
// projections as another, instead of three loops per expert (decode: 2 loops per layer instead
// of 18; prefill: the threads share whole experts' work); the token rows are converted once
// for all experts. Every tile is the one gemm would run, and the outputs
// are added in the same order, so the result is the same bits. False (nothing done) where a
// weight has no fast kernel or the experts' types differ.
bool moe_experts_fused(const Exec& ex, float* out, const float* x, int64_t n, int64_t H, int64_t K, const float* wts,
                       const std::vector<int64_t>& start, const std::vector<int64_t>& slots,
                       const ExpertWeights& experts) {
  const int64_t n_experts = static_cast<int64_t>(experts.gate.size());
  if (ex.precision != Precision::fast) return false;
  // Every chosen expert's gate/up (and down) must share one kernel and shape.
  FastKernel kgu{}, kd{};
  int64_t I = -1;
  for (int64_t e = 0; e < n_experts; ++e) {
    if (start[e + 1] == start[e]) continue;
    const WeightRows wg = cpu(*experts.gate[e]).weight_rows(), wu = cpu(*experts.up[e]).weight_rows(),
                     wd = cpu(*experts.down[e]).weight_rows();
    if (I < 0) {
      I = wg.n_rows;
      kgu = fast_kernel(wg.dtype);
      kd = fast_kernel(wd.dtype);
      if (!kgu.tile || !kd.tile || kgu.act == ActFormat::f32 || kd.act == ActFormat::f32) return false;
    }
    const FastKernel ku = fast_kernel(wu.dtype), kg = fast_kernel(wg.dtype), kdd = fast_kernel(wd.dtype);
    if (wg.n_rows != I || wu.n_rows != I || wd.n_rows != H || wd.k != I || wg.k != H || wu.k != H ||
        kg.tile != kgu.tile || ku.tile != kgu.tile || kdd.tile != kd.tile || ku.act != kgu.act)
      return false;
  }
  if (I < 0) return false;  // no slots: the general path zeroes out

  const int64_t S = n * K;
  thread_local std::vector<float> g, u, d;
  thread_local std::vector<FastJob> jobs;
  g.resize(static_cast<size_t>(S * I));
  u.resize(static_cast<size_t>(S * I));
  d.resize(static_cast<size_t>(S * H));

  // The token rows converted once, then gathered in slot order (position p = start[e] + r).
  const size_t sx = act_row_bytes(kgu.act, H);
  uint8_t* xt = act_scratch(0, sx * static_cast<size_t>(n + S));
  uint8_t* xg = xt + sx * static_cast<size_t>(n);
  ex.pool.parallel_for(n, H * 4, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) convert_activation(kgu.act, x + i * H, H, xt + static_cast<size_t>(i) * sx);
  });
  for (int64_t p = 0; p < S; ++p)
    std::copy_n(xt + static_cast<size_t>(slots[p] / K) * sx, sx, xg + static_cast<size_t>(p) * sx);

  jobs.clear();
  for (int64_t e = 0; e < n_experts; ++e) {
    const int64_t m = start[e + 1] - start[e];
    if (m == 0) continue;
    const uint8_t* xe = xg + static_cast<size_t>(start[e]) * sx;
    jobs.push_back({kgu.tile, xe, sx, m, cpu(*experts.gate[e]).matmul_rows(), g.data() + start[e] * I, I});
    jobs.push_back({kgu.tile, xe, sx, m, cpu(*experts.up[e]).matmul_rows(), u.data() + start[e] * I, I});
  }
  run_fast_jobs(ex, jobs.data(), static_cast<int64_t>(jobs.size()));

  // SwiGLU and the down projections' activation rows, row by row in parallel.
  const size_t sh = act_row_bytes(kd.act, I);
  uint8_t* hq = act_scratch(1, sh * static_cast<size_t>(S));
  float* h = g.data();  // not g in the lambda: that would be the running thread's own g
  const float* up = u.data();
  ex.pool.parallel_for(S, I * 16, [&](int64_t b, int64_t e) {
    for (int64_t p = b; p < e; ++p) {
      float* hp = h + p * I;
      fast_silu_mul(hp, hp, up + p * I, I);
      convert_activation(kd.act, hp, I, hq + static_cast<size_t>(p) * sh);
    }
  });
  jobs.clear();
  for (int64_t e = 0; e < n_experts; ++e) {
    const int64_t m = start[e + 1] - start[e];
    if (m == 0) continue;
    jobs.push_back({kd.tile, hq + static_cast<size_t>(start[e]) * sh, sh, m, cpu(*experts.down[e]).matmul_rows(),
                    d.data() + start[e] * H, H});
  }
  run_fast_jobs(ex, jobs.data(), static_cast<int64_t>(jobs.size()));

  // Each token's row sums its experts' outputs in slot-position order (what one pass over
  // the positions would add), rows in parallel.
  thread_local std::vector<int64_t> pos;
  pos.resize(static_cast<size_t>(S));
  for (int64_t p = 0; p < S; ++p) pos[static_cast<size_t>(slots[p])] = p;
  const int64_t* pos_of = pos.data();  // not pos in the lambda: another thread's own vector
  const float* down = d.data();
  ex.pool.parallel_for(n, K * H * 8, [&](int64_t b, int64_t e) {
    thread_local std::vector<int64_t> order;
    for (int64_t i = b; i < e; ++i) {
      float* row = out + i * H;
      std::fill(row, row + H, 0.0f);
      order.assign(pos_of + i * K, pos_of + (i + 1) * K);
      std::sort(order.begin(), order.end());
      for (int64_t p : order) axpy(row, wts[slots[p]], down + p * H, H);
    }
  });
  return true;
}

}  // namespace

void moe_experts(const Exec& ex, CpuTensor& dst, const CpuTensor& x, const CpuTensor& ids, const CpuTensor& weights,
                 const ExpertWeights& experts) {
  const int64_t n = x.rows(), H = x.cols(), K = ids.cols();
  const int64_t n_experts = static_cast<int64_t>(experts.gate.size());
  // The (token·K + k) slots of each expert, grouped by a counting sort into reused buffers
  // (no allocation per call once warm).
  thread_local std::vector<int64_t> start, slots;
  thread_local std::vector<float> xs, g, u, d;
  start.assign(static_cast<size_t>(n_experts + 1), 0);
  for (int64_t s = 0; s < n * K; ++s) ++start[static_cast<size_t>(ids.i32()[s]) + 1];
  for (int64_t e = 0; e < n_experts; ++e) start[e + 1] += start[e];
  slots.resize(static_cast<size_t>(n * K));
  {
    thread_local std::vector<int64_t> fill;
    fill.assign(start.begin(), start.end() - 1);
    for (int64_t s = 0; s < n * K; ++s) slots[static_cast<size_t>(fill[ids.i32()[s]]++)] = s;
  }

  float* out = dst.f32();
  if (moe_experts_fused(ex, out, x.f32(), n, H, K, weights.f32(), start, slots, experts)) return;
  std::fill(out, out + n * H, 0.0f);
  for (int64_t e = 0; e < n_experts; ++e) {
    const int64_t* list = slots.data() + start[e];
    const int64_t m = start[e + 1] - start[e];
    if (m == 0) continue;
    const WeightRows wg = cpu(*experts.gate[e]).matmul_rows(), wu = cpu(*experts.up[e]).matmul_rows(),
                     wd = cpu(*experts.down[e]).matmul_rows();
    const int64_t I = wg.n_rows;
    xs.resize(static_cast<size_t>(m * H));
    for (int64_t r = 0; r < m; ++r) std::copy_n(x.f32() + (list[r] / K) * H, H, xs.data() + r * H);
    g.resize(static_cast<size_t>(m * I));
    u.resize(static_cast<size_t>(m * I));
    d.resize(static_cast<size_t>(m * H));
    gemm(ex, xs.data(), m, H, wg, g.data(), I);
    gemm(ex, xs.data(), m, H, wu, u.data(), I);
    if (ex.precision == Precision::fast)
      fast_silu_mul(g.data(), g.data(), u.data(), m * I);
    else
      for (int64_t j = 0; j < m * I; ++j) g[j] = g[j] / (1.0f + std::exp(-g[j])) * u[j];
    gemm(ex, g.data(), m, I, wd, d.data(), H);
    for (int64_t r = 0; r < m; ++r) axpy(out + (list[r] / K) * H, weights.f32()[list[r]], d.data() + r * H, H);
  }
}

}  // namespace sibyl::backend::cpu
