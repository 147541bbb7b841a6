#version 450
// dst[i, c] = Σ_k weights[i, k] · d[i·top_k + k, c], summed in increasing expert id — the order
// in which the CPU backend accumulates — so the rounding matches.
layout(local_size_x_id = 0) in;
layout(std430, binding = 0) writeonly buffer Dst { float dst[]; };
layout(std430, binding = 1) readonly buffer D { float d[]; };
layout(std430, binding = 2) readonly buffer Ids { int ids[]; };
layout(std430, binding = 3) readonly buffer Wt { float weights[]; };
layout(push_constant) uniform P { uint H, top_k; } p;

void main() {
  const uint c = gl_GlobalInvocationID.x, i = gl_WorkGroupID.y;
  if (c >= p.H) return;
  precise float acc = 0.0;
  int prev = -1;
  for (uint r = 0u; r < p.top_k; ++r) {
    uint best = 0xffffffffu;  // the slot of the next larger expert id
    for (uint k = 0u; k < p.top_k; ++k) {
      const int e = ids[i * p.top_k + k];
      if (e > prev && (best == 0xffffffffu || e < ids[i * p.top_k + best])) best = k;
    }
    if (best == 0xffffffffu) break;
    const uint s = i * p.top_k + best;
    acc = acc + weights[s] * d[s * p.H + c];
    prev = ids[s];
  }
  dst[i * p.H + c] = acc;
}
