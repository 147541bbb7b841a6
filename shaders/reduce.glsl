// Workgroup sum / max through shared memory: correct for any subgroup size (no subgroup ops).
// Every invocation of the workgroup must call these (they contain barriers).
shared float red_buf[gl_WorkGroupSize.x];

float wg_sum(float v) {
  const uint tid = gl_LocalInvocationID.x;
  red_buf[tid] = v;
  barrier();
  for (uint s = gl_WorkGroupSize.x / 2u; s > 0u; s >>= 1) {
    if (tid < s) red_buf[tid] += red_buf[tid + s];
    barrier();
  }
  const float r = red_buf[0];
  barrier();
  return r;
}

float wg_max(float v) {
  const uint tid = gl_LocalInvocationID.x;
  red_buf[tid] = v;
  barrier();
  for (uint s = gl_WorkGroupSize.x / 2u; s > 0u; s >>= 1) {
    if (tid < s) red_buf[tid] = max(red_buf[tid], red_buf[tid + s]);
    barrier();
  }
  const float r = red_buf[0];
  barrier();
  return r;
}
