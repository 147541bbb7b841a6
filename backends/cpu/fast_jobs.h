// Several fast matmuls run as one parallel loop (e.g. the chosen experts' gate and up
// projections of a decode step): each job is one weight matrix against its own converted
// activation rows; the loop goes over all the jobs' weight quads (4 rows) together, so the
// threads share one loop's worth of work instead of waiting at the end of many small ones.
// Every tile is the one gemm_fast would run, so a pair's value is unchanged (fast_kernels.h).
#pragma once
#include <cstddef>
#include <cstdint>

#include "backends/cpu/cpu_backend.h"
#include "backends/cpu/fast_kernels.h"

namespace sibyl::backend::cpu {

struct FastJob {
  TileFn tile;
  const uint8_t* x;  // n activation rows in the kernel's ActFormat
  size_t x_stride;
  int64_t n;
  WeightRows w;
  float* out;  // out[i·ldo + j] for i < n, j < w.n_rows
  int64_t ldo;
};

inline int64_t fast_job_quads(const FastJob& j) { return (j.w.n_rows + 3) / 4; }

// Quads [q_begin, q_end) of one job, for all its activation rows.
void run_fast_job(const FastJob& job, int64_t q_begin, int64_t q_end);

// All quads of jobs[0 … count) as one parallel loop.
void run_fast_jobs(const Exec& ex, const FastJob* jobs, int64_t count);

// The calling thread's aligned scratch for converted activations, slot 0 or 1 (two live
// buffers at once); grows, never shrinks.
uint8_t* act_scratch(int slot, size_t bytes);

}  // namespace sibyl::backend::cpu
