#version 450
// Routed-expert matmul over slots (token i, choice k) = slot i·top_k + k:
//   y[slot, j] = Σ_c x[row(slot), c] · W_e[j, c],  e = ids[slot],
// for the experts e0 … e0+count-1 of this dispatch; other slots' workgroups return at once.
// EXPERT_ARRAY: the experts are an array of bindings indexed by e − e0 (needs
// shaderStorageBufferArrayDynamicIndexing); otherwise one expert per dispatch.
layout(local_size_x_id = 0) in;
layout(constant_id = 1) const uint LANES = 1;
layout(constant_id = 2) const uint DTYPE = 0;
layout(constant_id = 3) const uint NE = 1;

layout(std430, binding = 0) readonly buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer Ids { int ids[]; };
layout(std430, binding = 2) writeonly buffer Y { float y[]; };
#ifdef EXPERT_ARRAY
layout(std430, binding = 3) readonly buffer W { uint d[]; } w[NE];
uint g_expert;  // workgroup-uniform
#define WORD(i) w[g_expert].d[i]
#else
layout(std430, binding = 3) readonly buffer W { uint wd[]; };
#define WORD(i) wd[i]
#endif
#include "weights.glsl"

layout(push_constant) uniform P {
  uint slots, top_k, N, K;
  uint x_ld, x_per_slot, y_ld, e0, e_count;
  WDesc w;
} p;

shared float partial[gl_WorkGroupSize.x];

void main() {
  const uint tid = gl_LocalInvocationID.x, r = tid / LANES, lane = tid % LANES;
  const uint j = gl_WorkGroupID.x * (gl_WorkGroupSize.x / LANES) + r, slot = gl_WorkGroupID.y;
  const uint e = uint(ids[slot]);
  if (e < p.e0 || e >= p.e0 + p.e_count) return;  // the whole workgroup: not one of these experts
#ifdef EXPERT_ARRAY
  g_expert = e - p.e0;
#endif
  WDesc d = p.w;
  d.dtype = DTYPE;
  const uint row = min(j, p.N - 1u);
  const uint xb = (p.x_per_slot != 0u ? slot : slot / p.top_k) * p.x_ld;
  float acc = 0.0;
  const uint K4 = p.K & ~3u;
  for (uint c = lane * 4u; c < K4; c += LANES * 4u)
    acc += dot(w_get4(d, row, c), vec4(x[xb + c], x[xb + c + 1u], x[xb + c + 2u], x[xb + c + 3u]));
  for (uint c = K4 + lane; c < p.K; c += LANES) acc += w_get(d, row, c) * x[xb + c];
  if (LANES > 1u) {
    partial[tid] = acc;
    barrier();
    for (uint s = LANES / 2u; s > 0u; s >>= 1) {
      if (lane < s) partial[tid] += partial[tid + s];
      barrier();
    }
    acc = partial[tid];
  }
  if (lane == 0u && j < p.N) y[slot * p.y_ld + j] = acc;
}
