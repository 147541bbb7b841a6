#version 450
// MoE router for one token per workgroup, following cpu_moe.cpp route_token: scores (softmax or
// sigmoid of the logits), choice scores (+ the correction bias for noaux_tc), group limiting
// (groups scored by their max, or for noaux_tc the sum of their top two; experts of dropped
// groups score 0), top-k with ties to the lower index, weights = unbiased scores, normalised
// and scaled. The selection is serial (invocation 0): it is tiny next to the matmuls.
layout(local_size_x_id = 0) in;
layout(std430, binding = 0) readonly buffer Logits { float logits[]; };
layout(std430, binding = 1) readonly buffer Bias { uint wd[]; };
layout(std430, binding = 2) writeonly buffer Ids { int ids[]; };
layout(std430, binding = 3) writeonly buffer Weights { float weights[]; };
#define WORD(i) wd[i]
#include "weights.glsl"
#include "reduce.glsl"
layout(push_constant) uniform P {
  uint E, K, n_group, topk_group;
  uint sigmoid, select, normalize, has_bias;
  float scaling;
  WDesc bias;
} p;

const uint EMAX = 1024u, GMAX = 64u;
const uint SEL_GREEDY = 0u, SEL_GROUP_LIMITED = 1u, SEL_NOAUX_TC = 2u;
shared float scores[EMAX], choice[EMAX], gscore[GMAX];
shared uint taken[EMAX / 32u];

// Index of the largest untaken value among v[first, first + count), ties to the lower index.
#define ARGMAX(v, first, count, out_idx)                               \
  {                                                                    \
    out_idx = 0xffffffffu;                                             \
    for (uint e_ = first; e_ < first + count; ++e_) {                  \
      if ((taken[e_ >> 5] & (1u << (e_ & 31u))) != 0u) continue;       \
      if (out_idx == 0xffffffffu || v[e_] > v[out_idx]) out_idx = e_;  \
    }                                                                  \
  }

void main() {
  const uint i = gl_WorkGroupID.x, tid = gl_LocalInvocationID.x, WG = gl_WorkGroupSize.x;
  const uint lb = i * p.E;
  if (p.sigmoid == 0u) {
    float mx = -3.0e38;
    for (uint e = tid; e < p.E; e += WG) mx = max(mx, logits[lb + e]);
    mx = wg_max(mx);
    float sum = 0.0;
    for (uint e = tid; e < p.E; e += WG) {
      scores[e] = exp(logits[lb + e] - mx);
      sum += scores[e];
    }
    sum = wg_sum(sum);
    for (uint e = tid; e < p.E; e += WG) scores[e] = scores[e] / sum;
  } else {
    for (uint e = tid; e < p.E; e += WG) scores[e] = 1.0 / (1.0 + exp(-logits[lb + e]));
  }
  for (uint e = tid; e < p.E; e += WG) {
    precise float c = scores[e];
    if (p.select == SEL_NOAUX_TC && p.has_bias != 0u) c = c + w_get(p.bias, 0u, e);
    choice[e] = c;
  }
  barrier();
  if (tid != 0u) return;

  for (uint w = 0u; w < EMAX / 32u; ++w) taken[w] = 0u;
  if (p.select != SEL_GREEDY && p.n_group > 1u) {
    const uint per = p.E / p.n_group;
    for (uint g = 0u; g < p.n_group; ++g) {
      uint b0, b1;
      ARGMAX(choice, g * per, per, b0);
      if (p.select == SEL_GROUP_LIMITED || per == 1u) {
        precise float s = 0.0;
        s = s + choice[b0];
        gscore[g] = p.select == SEL_GROUP_LIMITED ? choice[b0] : s;
      } else {  // noaux_tc: the sum of the group's two best
        taken[b0 >> 5] |= 1u << (b0 & 31u);
        ARGMAX(choice, g * per, per, b1);
        taken[b0 >> 5] &= ~(1u << (b0 & 31u));
        precise float s = 0.0;
        s = s + choice[b0];
        s = s + choice[b1];
        gscore[g] = s;
      }
    }
    uint keep = 0u, keep_hi = 0u;  // group bits (n_group ≤ 64)
    for (uint k = 0u; k < p.topk_group; ++k) {
      uint best = 0xffffffffu;
      for (uint g = 0u; g < p.n_group; ++g) {
        const bool used = g < 32u ? (keep & (1u << g)) != 0u : (keep_hi & (1u << (g - 32u))) != 0u;
        if (!used && (best == 0xffffffffu || gscore[g] > gscore[best])) best = g;
      }
      if (best < 32u) keep |= 1u << best;
      else keep_hi |= 1u << (best - 32u);
    }
    for (uint e = 0u; e < p.E; ++e) {
      const uint g = e / per;
      const bool kept = g < 32u ? (keep & (1u << g)) != 0u : (keep_hi & (1u << (g - 32u))) != 0u;
      if (!kept) choice[e] = 0.0;
    }
  }
  precise float sum = 0.0;
  float w[16];
  uint chosen[16];
  for (uint k = 0u; k < p.K; ++k) {
    uint b;
    ARGMAX(choice, 0u, p.E, b);
    taken[b >> 5] |= 1u << (b & 31u);
    chosen[k] = b;
    w[k] = scores[b];
    sum = sum + w[k];
  }
  for (uint k = 0u; k < p.K; ++k) {
    precise float v = w[k];
    if (p.normalize != 0u) v = v / (sum + 1e-20);
    v = v * p.scaling;
    ids[i * p.K + k] = int(chosen[k]);
    weights[i * p.K + k] = v;
  }
}
