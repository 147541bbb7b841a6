#version 450
// Causal attention of one query (token i, head h) over one split of the keys [t_begin, t_end),
// with an online softmax; writes the split's (max, sum, unnormalised output) for attn_merge.
// key(t) = [k1(t, h) (D1) | k2(t) (dr)], value(t) = v(t, h) (Dv):
//   absorbed: k1 = v = the latent c_kv rows, k2 = the cache's k_pe;
//   expanded: k1 = k_nope and v expanded from the latent, k2 = the cache's k_pe.
layout(local_size_x_id = 0) in;
layout(constant_id = 1) const uint VPT = 8;  // value columns per invocation: Dv ≤ VPT · workgroup
layout(std430, binding = 0) readonly buffer QHat { float qhat[]; };
layout(std430, binding = 1) readonly buffer K1 { float k1[]; };
layout(std430, binding = 2) readonly buffer K2 { float k2[]; };
layout(std430, binding = 3) readonly buffer V { float v[]; };
layout(std430, binding = 4) readonly buffer Pos { int positions[]; };
layout(std430, binding = 5) writeonly buffer Part { float part[]; };
#include "reduce.glsl"
layout(push_constant) uniform P {
  uint H, D1, dr, Dv;
  uint k1_off, k1_ld, k1_hs;
  uint k2_off, k2_ld;
  uint v_off, v_ld, v_hs;
  uint chunk, S;
  float scale;
} p;

const uint QMAX = 1024u;
const float kNone = -3.0e38;  // below any score; exp(kNone - m) underflows to 0
shared float qs[QMAX];
shared float probs[gl_WorkGroupSize.x];

void main() {
  const uint WG = gl_WorkGroupSize.x, tid = gl_LocalInvocationID.x;
  const uint h = gl_WorkGroupID.x, i = gl_WorkGroupID.y, s = gl_WorkGroupID.z;
  const uint Dq = p.D1 + p.dr;
  const uint len = uint(positions[i]) + 1u;
  const uint t_begin = s * p.chunk, t_end = min(len, t_begin + p.chunk);
  for (uint c = tid; c < Dq; c += WG) qs[c] = qhat[(i * p.H + h) * Dq + c];
  barrier();

  float m = kNone, l = 0.0;
  float acc[VPT];
  for (uint k = 0u; k < VPT; ++k) acc[k] = 0.0;
  for (uint t0 = t_begin; t0 < t_end; t0 += WG) {
    const uint t = t0 + tid;
    float score = kNone;
    if (t < t_end) {
      const uint b1 = p.k1_off + t * p.k1_ld + h * p.k1_hs, b2 = p.k2_off + t * p.k2_ld;
      float d1 = 0.0, d2 = 0.0;
      for (uint c = 0u; c < p.D1; ++c) d1 += qs[c] * k1[b1 + c];
      for (uint c = 0u; c < p.dr; ++c) d2 += qs[p.D1 + c] * k2[b2 + c];
      score = (d1 + d2) * p.scale;
    }
    const float m_new = max(m, wg_max(score));
    const float alpha = exp(m - m_new);
    const float pr = t < t_end ? exp(score - m_new) : 0.0;
    probs[tid] = pr;
    l = l * alpha + wg_sum(pr);  // wg_sum's barriers also publish probs[]
    const uint nt = min(WG, t_end - t0);
    for (uint k = 0u; k < VPT; ++k) {
      const uint c = tid + k * WG;
      if (c >= p.Dv) break;
      float a = acc[k] * alpha;
      for (uint u = 0u; u < nt; ++u) a += probs[u] * v[p.v_off + (t0 + u) * p.v_ld + h * p.v_hs + c];
      acc[k] = a;
    }
    m = m_new;
    barrier();  // probs[] is rewritten by the next tile
  }
  const uint base = ((i * p.H + h) * p.S + s) * (p.Dv + 2u);
  if (tid == 0u) {
    part[base] = m;
    part[base + 1u] = l;
  }
  for (uint k = 0u; k < VPT; ++k) {
    const uint c = tid + k * WG;
    if (c < p.Dv) part[base + 2u + c] = acc[k];
  }
}
