#version 450
// Causal attention of one query (step row row0 + i, head h) over one split of its keys, with
// an online softmax; writes the split's (max, sum, unnormalised output) for attn_merge.
// key(t) = [k1(t, h) (D1) | k2(t) (dr)], value(t) = v(t, h) (Dv):
//   absorbed: k1 = v = the latent c_kv rows, k2 = the latent k_pe, read through the page table
//             (paged = 1) from the pool's layer array;
//   expanded: k1 = k_nope and v expanded from the sequence's gathered latent, k2 = its k_pe
//             (paged = 0: key t is row t).
// The row's length comes from positions[] on the device, and the splits adapt to it: the grid
// is sized for the longest possible context, and splits past a row's keys write nothing-sums.
layout(local_size_x_id = 0) in;
layout(constant_id = 1) const uint VPT = 8;  // value columns per invocation: Dv ≤ VPT · workgroup
layout(std430, binding = 0) readonly buffer QHat { float qhat[]; };
layout(std430, binding = 1) readonly buffer K1 { float k1[]; };
layout(std430, binding = 2) readonly buffer K2 { float k2[]; };
layout(std430, binding = 3) readonly buffer V { float v[]; };
layout(std430, binding = 4) readonly buffer Pos { int positions[]; };
layout(std430, binding = 5) readonly buffer RowSeq { int row_seq[]; };
layout(std430, binding = 6) readonly buffer Pages { int page_table[]; };
layout(std430, binding = 7) writeonly buffer Part { float part[]; };
#include "reduce.glsl"
#include "paged.glsl"
layout(push_constant) uniform P {
  uint H, D1, dr, Dv;
  uint k1_off, k1_ld, k1_hs;
  uint k2_off, k2_ld;
  uint v_off, v_ld, v_hs;
  uint S, min_chunk;
  float scale;
  uint row0, paged, P, max_pages, n_pages;
  uint L;  // keys a row may have at most (paged: max_pages · P; expanded: the gathered rows)
  uint first;  // keys before this position are not attended (an MTP layer's cache starts at 1)
} p;

const uint QMAX = 1024u;
const float kNone = -3.0e38;  // below any score; exp(kNone - m) underflows to 0
shared float qs[QMAX];
shared float probs[gl_WorkGroupSize.x];
shared uint krow[gl_WorkGroupSize.x];

void main() {
  const uint WG = gl_WorkGroupSize.x, tid = gl_LocalInvocationID.x;
  const uint h = gl_WorkGroupID.x, i = gl_WorkGroupID.y, s = gl_WorkGroupID.z, gi = p.row0 + i;
  const uint Dq = p.D1 + p.dr;
  const int pos = positions[gi];
  const uint len = pos < 0 ? 0u : min(uint(pos) + 1u, p.L);
  const int seq = p.paged != 0u ? row_seq[gi] : 0;
  // Splits of at least min_chunk keys, as many as the row needs (≤ S).
  const uint used = max(1u, min(p.S, (len + p.min_chunk - 1u) / p.min_chunk));
  const uint chunk = (len + used - 1u) / used;
  const uint t_begin = s * chunk, t_end = s < used ? min(len, t_begin + chunk) : t_begin;
  for (uint c = tid; c < Dq; c += WG) qs[c] = qhat[(i * p.H + h) * Dq + c];
  barrier();

  float m = kNone, l = 0.0;
  float acc[VPT];
  for (uint k = 0u; k < VPT; ++k) acc[k] = 0.0;
  for (uint t0 = t_begin; t0 < t_end; t0 += WG) {
    const uint t = t0 + tid;
    int row = -1;
    if (t < t_end && t >= p.first) row = p.paged != 0u ? (seq < 0 ? -1 : kv_row(uint(seq), t, p.P, p.max_pages, p.n_pages)) : int(t);
    krow[tid] = row < 0 ? 0u : uint(row);
    float score = kNone;
    if (row >= 0) {
      const uint b1 = p.k1_off + uint(row) * p.k1_ld + h * p.k1_hs, b2 = p.k2_off + uint(row) * p.k2_ld;
      float d1 = 0.0, d2 = 0.0;
      for (uint c = 0u; c < p.D1; ++c) d1 += qs[c] * k1[b1 + c];
      for (uint c = 0u; c < p.dr; ++c) d2 += qs[p.D1 + c] * k2[b2 + c];
      score = (d1 + d2) * p.scale;
    }
    const float m_new = max(m, wg_max(score));
    const float alpha = exp(m - m_new);
    const float pr = row >= 0 ? exp(score - m_new) : 0.0;
    probs[tid] = pr;
    l = l * alpha + wg_sum(pr);  // wg_sum's barriers also publish probs[] and krow[]
    const uint nt = min(WG, t_end - t0);
    for (uint k = 0u; k < VPT; ++k) {
      const uint c = tid + k * WG;
      if (c >= p.Dv) break;
      float a = acc[k] * alpha;
      for (uint u = 0u; u < nt; ++u) a += probs[u] * v[p.v_off + krow[u] * p.v_ld + h * p.v_hs + c];
      acc[k] = a;
    }
    m = m_new;
    barrier();  // probs[] and krow[] are rewritten by the next tile
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
