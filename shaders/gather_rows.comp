#version 450
// dst[i, :] = src[rows[i], :] in 32-bit words; a row index outside src gives zeros.
layout(local_size_x_id = 0) in;
layout(std430, binding = 0) writeonly buffer Dst { uint dst[]; };
layout(std430, binding = 1) readonly buffer Src { uint src[]; };
layout(std430, binding = 2) readonly buffer Rows { int rows[]; };
layout(push_constant) uniform P { uint words, src_rows; } p;

void main() {
  const uint c = gl_GlobalInvocationID.x, i = gl_WorkGroupID.y;
  if (c >= p.words) return;
  const int r = rows[i];
  dst[i * p.words + c] = r < 0 || uint(r) >= p.src_rows ? 0u : src[uint(r) * p.words + c];
}
