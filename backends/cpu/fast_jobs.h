// Several fast matmuls run as one parallel loop (e.g. the chosen experts' gate and up
// projections of a decode step): each job is one weight matrix against its own converted
// activation rows; the loop goes over all the jobs' weight rows (in units) together, so the
// threads share one loop's worth of work instead of waiting at the end of many small ones.
// Every tile is the one gemm_fast would run, so a pair's value is unchanged (fast_kernels.h).
#pragma once
#include <cstddef>
#include <cstdint>

#include "backends/cpu/cpu_backend.h"
#include "backends/cpu/fast_kernels.h"
#include "backends/cpu/packed.h"

namespace sibyl::backend::cpu {

struct FastJob {
  TileFn tile;
  const uint8_t* x;  // n activation rows in the kernel's ActFormat
  size_t x_stride;
  int64_t n;
  WeightRows w;
  float* out;  // out[i·ldo + j] for i < n, j < w.n_rows
  int64_t ldo;
  int64_t unit_groups = 1;  // packed: groups of 16 rows per unit (run_fast_jobs sets it)
};

// A job's units of work: weight rows in unit_groups groups of 16 when packed (packed.h; the
// packed tiles then run instead of job.tile, on the same activation rows), else in quads of 4.
inline int64_t fast_job_unit_rows(const FastJob& j) { return j.w.packed ? kPackedRows * j.unit_groups : 4; }
inline int64_t fast_job_units(const FastJob& j) {
  return (j.w.n_rows + fast_job_unit_rows(j) - 1) / fast_job_unit_rows(j);
}

// Units [u_begin, u_end) of one job, for all its activation rows.
void run_fast_job(const FastJob& job, int64_t u_begin, int64_t u_end);

// All units of jobs[0 … count) as one parallel loop. Packed jobs get units of as many groups
// as their widest tile takes while the threads still get one unit each: a tile over more
// groups reuses each activation load, and values never depend on the tile (fast_kernels.h).
void run_fast_jobs(const Exec& ex, FastJob* jobs, int64_t count);

// The calling thread's aligned scratch for converted activations, slot 0 or 1 (two live
// buffers at once); grows, never shrinks.
uint8_t* act_scratch(int slot, size_t bytes);

}  // namespace sibyl::backend::cpu
