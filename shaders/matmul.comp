#version 450
// y[b][i][j] = Σ_k x[b][i][k] · W[w_row0 + b·w_bs + j][k]: linear layers (x·Wᵀ), batched over
// heads for the MLA projections. W is read in its stored dtype and dequantised in registers;
// accumulation is float32. LANES invocations share one output row (reduced through shared
// memory; LANES = 1 on CPU devices, where barriers are costly); each handles TOK tokens, so
// a weight row is decoded once per TOK tokens.
layout(local_size_x_id = 0) in;
layout(constant_id = 1) const uint LANES = 1;
layout(constant_id = 2) const uint TOK = 1;
layout(constant_id = 3) const uint DTYPE = 0;

layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer W { uint wd[]; };
layout(std430, binding = 2) writeonly buffer Y { float y[]; };
#define WORD(i) wd[i]
#include "weights.glsl"

layout(push_constant) uniform P {
  uint n, N, K, batch;
  uint x_off, x_ld, x_bs;
  uint y_off, y_ld, y_bs;
  uint w_row0, w_bs;
  WDesc w;
} p;

shared float partial[gl_WorkGroupSize.x * TOK];

void main() {
  const uint tid = gl_LocalInvocationID.x, r = tid / LANES, lane = tid % LANES;
  const uint j = gl_WorkGroupID.x * (gl_WorkGroupSize.x / LANES) + r;
  const uint i0 = gl_WorkGroupID.y * TOK, b = gl_WorkGroupID.z;
  const uint row = p.w_row0 + b * p.w_bs + min(j, p.N - 1u);
  WDesc d = p.w;
  d.dtype = DTYPE;  // a constant: the compiler keeps only this dtype's decoder

  uint xb[TOK];
  float acc[TOK];
  for (uint t = 0u; t < TOK; ++t) {
    xb[t] = p.x_off + b * p.x_bs + min(i0 + t, p.n - 1u) * p.x_ld;
    acc[t] = 0.0;
  }
  const uint K4 = p.K & ~3u;
  for (uint c = lane * 4u; c < K4; c += LANES * 4u) {
    const vec4 wv = w_get4(d, row, c);
    for (uint t = 0u; t < TOK; ++t) {
      const uint o = xb[t] + c;
      acc[t] += dot(wv, vec4(x[o], x[o + 1u], x[o + 2u], x[o + 3u]));
    }
  }
  for (uint c = K4 + lane; c < p.K; c += LANES) {
    const float wv = w_get(d, row, c);
    for (uint t = 0u; t < TOK; ++t) acc[t] += wv * x[xb[t] + c];
  }

  if (LANES > 1u) {
    for (uint t = 0u; t < TOK; ++t) partial[tid * TOK + t] = acc[t];
    barrier();
    for (uint s = LANES / 2u; s > 0u; s >>= 1) {
      if (lane < s)
        for (uint t = 0u; t < TOK; ++t) partial[tid * TOK + t] += partial[(tid + s) * TOK + t];
      barrier();
    }
    for (uint t = 0u; t < TOK; ++t) acc[t] = partial[tid * TOK + t];
  }
  if (lane != 0u || j >= p.N) return;
  for (uint t = 0u; t < TOK; ++t)
    if (i0 + t < p.n) y[p.y_off + b * p.y_bs + (i0 + t) * p.y_ld + j] = acc[t];
}
