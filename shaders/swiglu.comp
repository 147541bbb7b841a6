#version 450
// dst = silu(gate) · up   (dst may be gate or up)
layout(local_size_x_id = 0) in;
layout(std430, binding = 0) buffer Dst { float dst[]; };
layout(std430, binding = 1) readonly buffer G { float g[]; };
layout(std430, binding = 2) readonly buffer U { float u[]; };
layout(push_constant) uniform P { uint count; } p;
#include "elementwise.glsl"

void main() {
  const uint i = flat_index();
  if (i >= p.count) return;
  const float a = g[i];
  precise float v = a / (1.0 + exp(-a)) * u[i];
  dst[i] = v;
}
