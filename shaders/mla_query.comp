#version 450
// The per-head attention query q̂ [n, H, D1 + dr]: its rope part rotated for the token's
// position, and (expanded path) the nope part copied; the absorbed path writes q_nope·W_UK
// into the first D1 columns with matmul instead. Query i is step row row0 + i.
layout(local_size_x_id = 0) in;
layout(std430, binding = 0) readonly buffer Q { float q[]; };
layout(std430, binding = 1) readonly buffer Pos { int positions[]; };
layout(std430, binding = 2) readonly buffer Freq { float inv_freq[]; };
layout(std430, binding = 3) writeonly buffer QHat { float qhat[]; };
#include "rope.glsl"
layout(push_constant) uniform P {
  uint H, dn, dr, q_ld, qk, D1, copy_nope;
  float factor;
  uint interleaved, row0;
} p;

void main() {
  const uint e = gl_GlobalInvocationID.x, h = gl_WorkGroupID.y, i = gl_WorkGroupID.z;
  const uint Dq = p.D1 + p.dr;
  if (e >= Dq) return;
  const uint gi = p.row0 + i;
  const uint src = gi * p.q_ld + h * p.qk, dst = (i * p.H + h) * Dq + e;
  if (e < p.D1) {
    if (p.copy_nope != 0u) qhat[dst] = q[src + e];
    return;
  }
  const uint k = e - p.D1;
  const bool inter = p.interleaved != 0u;
  const uint pair = rope_pair(k, p.dr, inter);
  const uint a = inter ? 2u * pair : pair, b = inter ? 2u * pair + 1u : pair + p.dr / 2u;
  qhat[dst] = rope_value(q[src + p.dn + a], q[src + p.dn + b], k == a, inv_freq[pair], positions[gi], p.factor);
}
