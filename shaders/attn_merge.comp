#version 450
// Merges the splits of attention.comp by their log-sum-exp: out = Σ_s e^(m_s − M) o_s / Σ_s e^(m_s − M) l_s.
// One workgroup per (head, token); out[o_off + i·o_ld + h·o_hs + c]. A row with no keys (an
// unmapped page table: an engine bug) gives zeros rather than NaN.
layout(local_size_x_id = 0) in;
layout(std430, binding = 0) readonly buffer Part { float part[]; };
layout(std430, binding = 1) writeonly buffer Out { float o[]; };
layout(push_constant) uniform P { uint H, S, Dv, o_off, o_ld, o_hs; } p;

void main() {
  const uint h = gl_WorkGroupID.x, i = gl_WorkGroupID.y;
  const uint stride = p.Dv + 2u, base = (i * p.H + h) * p.S * stride;
  float M = part[base];
  for (uint s = 1u; s < p.S; ++s) M = max(M, part[base + s * stride]);
  float den = 0.0;
  for (uint s = 0u; s < p.S; ++s) den += part[base + s * stride + 1u] * exp(part[base + s * stride] - M);
  for (uint c = gl_LocalInvocationID.x; c < p.Dv; c += gl_WorkGroupSize.x) {
    float num = 0.0;
    for (uint s = 0u; s < p.S; ++s) num += part[base + s * stride + 2u + c] * exp(part[base + s * stride] - M);
    o[p.o_off + i * p.o_ld + h * p.o_hs + c] = den > 0.0 ? num / den : 0.0;
  }
}
