#version 450
// One sequence's latent rows, positions [0, L), gathered through its page table into a
// contiguous [L, width] array (the expanded path's input). The sequence is that of step row
// `first_row` (row_seq on the device). Unmapped positions read as zeros.
layout(local_size_x_id = 0) in;
layout(std430, binding = 0) writeonly buffer Dst { float dst[]; };
layout(std430, binding = 1) readonly buffer Cache { float cache[]; };
layout(std430, binding = 2) readonly buffer RowSeq { int row_seq[]; };
layout(std430, binding = 3) readonly buffer Pages { int page_table[]; };
#include "paged.glsl"
layout(push_constant) uniform P { uint width, P, max_pages, n_pages, first_row; } p;

void main() {
  const uint c = gl_GlobalInvocationID.x, t = gl_WorkGroupID.y;
  if (c >= p.width) return;
  const int seq = row_seq[p.first_row];
  const int row = seq < 0 ? -1 : kv_row(uint(seq), t, p.P, p.max_pages, p.n_pages);
  dst[t * p.width + c] = row < 0 ? 0.0 : cache[uint(row) * p.width + c];
}
