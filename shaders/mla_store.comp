#version 450
// MLA part 1: for each token, RMS-norm c_kv = kv_a[:R], rotate k_pe = kv_a[R:R+dr], and write
// both to the pool row of its (sequence, position), found through the page table on the
// device. One workgroup per token.
layout(local_size_x_id = 0) in;
layout(std430, binding = 0) readonly buffer KvA { float kv_a[]; };
layout(std430, binding = 1) readonly buffer Norm { uint wd[]; };
layout(std430, binding = 2) readonly buffer Pos { int positions[]; };
layout(std430, binding = 3) readonly buffer RowSeq { int row_seq[]; };
layout(std430, binding = 4) readonly buffer Pages { int page_table[]; };
layout(std430, binding = 5) readonly buffer Freq { float inv_freq[]; };
layout(std430, binding = 6) writeonly buffer Cache { float cache[]; };
#define WORD(i) wd[i]
#include "weights.glsl"
#include "reduce.glsl"
#include "rope.glsl"
#include "paged.glsl"
layout(push_constant) uniform P {
  uint R, dr, kv_ld, width;
  float eps, factor;
  uint interleaved;
  uint P, max_pages, n_pages;
  WDesc w;
} p;

void main() {
  const uint i = gl_WorkGroupID.x, tid = gl_LocalInvocationID.x;
  const uint s0 = i * p.kv_ld;
  const int pos = positions[i], seq = row_seq[i];
  // Uniform over the workgroup (every invocation reads the same values): no row, no store.
  if (pos < 0 || seq < 0) return;
  const int row = kv_row(uint(seq), uint(pos), p.P, p.max_pages, p.n_pages);
  if (row < 0) return;
  const uint c0 = uint(row) * p.width;
  float ss = 0.0;
  for (uint j = tid; j < p.R; j += gl_WorkGroupSize.x) ss += kv_a[s0 + j] * kv_a[s0 + j];
  ss = wg_sum(ss);
  const float inv = 1.0 / sqrt(ss / float(p.R) + p.eps);
  for (uint j = tid; j < p.R; j += gl_WorkGroupSize.x) {
    precise float v = w_get(p.w, 0u, j) * (kv_a[s0 + j] * inv);
    cache[c0 + j] = v;
  }
  const bool inter = p.interleaved != 0u;
  for (uint e = tid; e < p.dr; e += gl_WorkGroupSize.x) {
    const uint pair = rope_pair(e, p.dr, inter);
    const uint a = inter ? 2u * pair : pair, b = inter ? 2u * pair + 1u : pair + p.dr / 2u;
    cache[c0 + p.R + e] =
        rope_value(kv_a[s0 + p.R + a], kv_a[s0 + p.R + b], e == a, inv_freq[pair], pos, p.factor);
  }
}
