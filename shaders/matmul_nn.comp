#version 450
// y[b][i][j] = Σ_k x[b][i][k] · W[w_row0 + b·w_bs + k][j]: x·W without transposing W, for the
// MLA up-projections read down their columns (absorbing W_UK into q with the kv_b layout,
// expanding k_nope with the split k_b layout). One invocation per output.
layout(local_size_x_id = 0) in;
layout(constant_id = 1) const uint DTYPE = 0;

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

void main() {
  const uint j = gl_GlobalInvocationID.x, i = gl_WorkGroupID.y, b = gl_WorkGroupID.z;
  if (j >= p.N) return;
  WDesc d = p.w;
  d.dtype = DTYPE;
  const uint xb = p.x_off + b * p.x_bs + i * p.x_ld, r0 = p.w_row0 + b * p.w_bs;
  float acc = 0.0;
  for (uint k = 0u; k < p.K; ++k) acc += x[xb + k] * w_get(d, r0 + k, j);
  y[p.y_off + b * p.y_bs + i * p.y_ld + j] = acc;
}
