#version 450
// dst[dst_off + k] = src[src_off + k], k < count (32-bit words)
layout(local_size_x_id = 0) in;
layout(std430, binding = 0) writeonly buffer Dst { uint dst[]; };
layout(std430, binding = 1) readonly buffer Src { uint src[]; };
layout(push_constant) uniform P { uint count, dst_off, src_off; } p;
#include "elementwise.glsl"

void main() {
  const uint k = flat_index();
  if (k < p.count) dst[p.dst_off + k] = src[p.src_off + k];
}
