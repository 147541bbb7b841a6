// Index of this invocation in a 2-D grid of 1-D workgroups (x is limited to 65535 groups).
uint flat_index() {
  return gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * gl_NumWorkGroups.x * gl_WorkGroupSize.x;
}
