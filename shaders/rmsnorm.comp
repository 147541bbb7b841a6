#version 450
// Row-wise RMSNorm over the first `cols` columns: dst[r, j] = w[j] · (src[r, j] · inv_rms).
// dst may alias src (each invocation reads its elements before the reduction's barriers and
// writes the same elements after).
layout(local_size_x_id = 0) in;
layout(std430, binding = 0) buffer Dst { float dst[]; };
layout(std430, binding = 1) readonly buffer Src { float src[]; };
layout(std430, binding = 2) readonly buffer W { uint wd[]; };
#define WORD(i) wd[i]
#include "weights.glsl"
#include "reduce.glsl"
layout(push_constant) uniform P {
  uint cols, src_ld, dst_ld;
  float eps;
  WDesc w;
} p;

void main() {
  const uint row = gl_WorkGroupID.x, tid = gl_LocalInvocationID.x;
  const uint s0 = row * p.src_ld, d0 = row * p.dst_ld;
  float ss = 0.0;
  for (uint j = tid; j < p.cols; j += gl_WorkGroupSize.x) ss += src[s0 + j] * src[s0 + j];
  ss = wg_sum(ss);
  const float inv = 1.0 / sqrt(ss / float(p.cols) + p.eps);
  for (uint j = tid; j < p.cols; j += gl_WorkGroupSize.x) {
    precise float v = w_get(p.w, 0u, j) * (src[s0 + j] * inv);
    dst[d0 + j] = v;
  }
}
