#version 450
// dst[i, :] = table[tokens[i], :] in float32, for any stored dtype of the table.
layout(local_size_x_id = 0) in;
layout(std430, binding = 0) writeonly buffer Dst { float dst[]; };
layout(std430, binding = 1) readonly buffer Table { uint wd[]; };
layout(std430, binding = 2) readonly buffer Tokens { int tokens[]; };
#define WORD(i) wd[i]
#include "weights.glsl"
layout(push_constant) uniform P {
  uint cols, dst_ld;
  WDesc w;
} p;

void main() {
  const uint c = gl_GlobalInvocationID.x, i = gl_WorkGroupID.y;
  if (c >= p.cols) return;
  dst[i * p.dst_ld + c] = w_get(p.w, uint(tokens[i]), c);
}
