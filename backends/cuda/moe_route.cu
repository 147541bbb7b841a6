// MoE router on the device: scores (softmax or sigmoid), the correction bias for the choice
// (noaux_tc), group-limited selection, top-k with the CPU backend's tie rule (equal scores: lower
// expert index first), normalisation and scaling. One warp per token; the router logits come from
// a GEMV before this.
#include <climits>
#include <cmath>

#include "backends/cuda/device.cuh"

namespace sibyl::backend::cuda {
namespace {

constexpr int kWarps = 4;

__global__ void __launch_bounds__(kWarps * 32) moe_route_kernel(const RouteParams p) {
  extern __shared__ float sm[];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t i = int64_t(blockIdx.x) * kWarps + warp;
  if (i >= p.n_tokens) return;  // whole warps only; no block barriers below
  const int64_t E = p.n_experts, G = p.n_group, K = p.top_k;
  float* scores = sm + warp * (2 * E + 2 * G);
  float* choice = scores + E;
  float* gscore = choice + E;
  float* keep = gscore + G;
  const float* logits = p.logits + i * E;

  if (p.score == 0) {  // softmax: float exp, sum in double, as the CPU
    float mx = -INFINITY;
    for (int64_t e = lane; e < E; e += 32) mx = fmaxf(mx, logits[e]);
    mx = dev::warp_max(mx);
    double sum = 0.0;
    for (int64_t e = lane; e < E; e += 32) {
      const float x = expf(logits[e] - mx);
      scores[e] = x;
      sum += x;
    }
    sum = dev::warp_sum(sum);
    for (int64_t e = lane; e < E; e += 32) scores[e] = float(double(scores[e]) / sum);
  } else {
    for (int64_t e = lane; e < E; e += 32) scores[e] = 1.0f / (1.0f + expf(-logits[e]));
  }
  const bool biased = p.select == 2 && p.bias.data != nullptr;
  for (int64_t e = lane; e < E; e += 32) choice[e] = biased ? scores[e] + dev::load_any(p.bias, 0, e) : scores[e];
  __syncwarp();

  if (p.select != 0 && G > 1) {
    const int64_t per = E / G;
    for (int64_t g = lane; g < G; g += 32) {
      const float* mem = choice + g * per;
      float s;
      if (p.select == 1) {  // group_limited: the group's best score
        s = mem[0];
        for (int64_t k = 1; k < per; ++k) s = fmaxf(s, mem[k]);
      } else {  // noaux_tc: sum of the group's two best (one for single-expert groups)
        float v1 = -INFINITY, v2 = -INFINITY;
        for (int64_t k = 0; k < per; ++k) {
          const float x = mem[k];
          if (x > v1) {
            v2 = v1;
            v1 = x;
          } else if (x > v2) {
            v2 = x;
          }
        }
        s = 0.0f;
        s += v1;
        if (per >= 2) s += v2;
      }
      gscore[g] = s;
    }
    __syncwarp();
    if (lane == 0) {
      for (int64_t g = 0; g < G; ++g) keep[g] = 0.0f;
      for (int64_t k = 0; k < p.topk_group && k < G; ++k) {
        int64_t best = -1;
        for (int64_t g = 0; g < G; ++g)
          if (keep[g] == 0.0f && (best < 0 || gscore[g] > gscore[best])) best = g;
        keep[best] = 1.0f;
      }
    }
    __syncwarp();
    // Experts of dropped groups score 0 (transformers), not −inf.
    for (int64_t e = lane; e < E; e += 32) {
      const int64_t g = e / per < G ? e / per : G - 1;
      if (keep[g] == 0.0f) choice[e] = 0.0f;
    }
    __syncwarp();
  }

  int32_t* ids = p.ids + i * K;
  float* w = p.weights + i * K;
  for (int64_t k = 0; k < K; ++k) {
    float bv = -INFINITY;
    int bi = INT_MAX;
    for (int64_t e = lane; e < E; e += 32)
      if (choice[e] > bv) bv = choice[e], bi = int(e);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const float ov = __shfl_xor_sync(dev::kFull, bv, o);
      const int oi = __shfl_xor_sync(dev::kFull, bi, o);
      if (ov > bv || (ov == bv && oi < bi)) bv = ov, bi = oi;
    }
    if (lane == 0) {
      ids[k] = bi;
      w[k] = scores[bi];  // the unbiased score
      choice[bi] = -INFINITY;
    }
    __syncwarp();
  }
  if (lane == 0) {
    float sum = 0.0f;
    for (int64_t k = 0; k < K; ++k) sum += w[k];
    for (int64_t k = 0; k < K; ++k) {
      float v = w[k];
      if (p.normalize) v /= (sum + 1e-20f);
      w[k] = v * p.scaling;
    }
  }
}

}  // namespace

void launch_moe_route(const RouteParams& p, const Exec& ex) {
  if (p.n_tokens <= 0) return;
  const size_t smem = size_t(kWarps) * size_t(2 * p.n_experts + 2 * p.n_group) * sizeof(float);
  moe_route_kernel<<<unsigned((p.n_tokens + kWarps - 1) / kWarps), kWarps * 32, smem, ex.stream>>>(p);
  check_launch("moe_route");
}

}  // namespace sibyl::backend::cuda
