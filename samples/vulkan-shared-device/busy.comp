#version 450
// The application's own compute work in the shared-device sample: every invocation steps a
// linear congruential generator `rounds` times, so the host can check the result.
layout(local_size_x = 64) in;
layout(std430, binding = 0) buffer State { uint v[]; };
layout(push_constant) uniform P { uint rounds; } p;

void main() {
  uint x = v[gl_GlobalInvocationID.x];
  for (uint i = 0u; i < p.rounds; ++i) x = x * 1664525u + 1013904223u;
  v[gl_GlobalInvocationID.x] = x;
}
