#version 450
// acc += x
layout(local_size_x_id = 0) in;
layout(std430, binding = 0) buffer Acc { float acc[]; };
layout(std430, binding = 1) readonly buffer X { float x[]; };
layout(push_constant) uniform P { uint count; } p;
#include "elementwise.glsl"

void main() {
  const uint i = flat_index();
  if (i < p.count) acc[i] += x[i];
}
