// Matmul dispatch: the fast kernels (on the stored blocks, activations converted once per
// row) or the exact path (weight rows decoded to float32, then float32 tiles).
#include <algorithm>
#include <memory>

#include "backends/cpu/cpu_backend.h"
#include "backends/cpu/fast_jobs.h"
#include "backends/cpu/fast_kernels.h"

namespace sibyl::backend::cpu {
namespace {

// float32 weights: the exact path's own tiles (already the fastest float32 sums).
void f32_tile(const Tile& t) {
  const auto* x = reinterpret_cast<const float*>(t.x);
  const auto ldx = static_cast<int64_t>(t.x_stride / 4);
  const float* w[4];
  for (int c = 0; c < t.nw; ++c) w[c] = reinterpret_cast<const float*>(t.w[c]);
  int r = 0;
  if (t.nw == 4) {
    for (; r + 4 <= t.nx; r += 4) dot_4x4(x + r * ldx, ldx, w, t.k, t.out + r * t.ldo, t.ldo);
    for (; r < t.nx; ++r) dot_1x4(x + r * ldx, w, t.k, t.out + r * t.ldo);
    return;
  }
  for (; r < t.nx; ++r)
    for (int c = 0; c < t.nw; ++c) t.out[r * t.ldo + c] = dot(x + r * ldx, w[c], t.k);
}

}  // namespace

FastKernel f32_kernel() { return {ActFormat::f32, f32_tile}; }

FastKernel fast_kernel(DType dtype) {
  switch (dtype) {
    case DType::f32: return f32_kernel();
    case DType::f16: return f16_kernel();
    case DType::bf16: return bf16_kernel();
    case DType::f8_e4m3: return f8_kernel();
    case DType::q8_0: return q8_0_kernel();
    case DType::q5_0: return q5_0_kernel();
    case DType::q4_k: return q4_k_kernel();
    case DType::q6_k: return q6_k_kernel();
    default: return {ActFormat::f32, nullptr};
  }
}

uint8_t* act_scratch(int slot, size_t bytes) {
  thread_local std::unique_ptr<uint8_t[]> buf[2];
  thread_local size_t cap[2] = {0, 0};
  if (bytes + 64 > cap[slot]) {
    cap[slot] = std::max(bytes + 64, cap[slot] * 2);
    buf[slot] = std::make_unique<uint8_t[]>(cap[slot]);
  }
  auto p = reinterpret_cast<uintptr_t>(buf[slot].get());
  return buf[slot].get() + ((64 - p % 64) % 64);
}

namespace {

// Units [u_begin, u_end) of a packed weight, as many groups at a time as a tile of min(n, 4)
// activation rows takes.
void run_packed_job(const FastJob& job, int64_t u_begin, int64_t u_end) {
  const int64_t groups = (job.w.n_rows + kPackedRows - 1) / kPackedRows;
  const int64_t g_begin = u_begin * job.unit_groups, g_end = std::min(groups, u_end * job.unit_groups);
  const int64_t k = job.w.k;
  const auto group_bytes = static_cast<int64_t>(packed_group_bytes(job.w.dtype, k));
  const int64_t step = packed_max_groups(job.w.dtype, static_cast<int>(std::min<int64_t>(job.n, 4)));
  for (int64_t g0 = g_begin; g0 < g_end; g0 += step) {
    const int ng = static_cast<int>(std::min(step, g_end - g0));
    const int64_t j0 = g0 * kPackedRows, n_out = std::min<int64_t>(ng * kPackedRows, job.w.n_rows - j0);
    for (int64_t i = 0; i < job.n; i += 4) {
      const int nx = static_cast<int>(std::min<int64_t>(4, job.n - i));
      packed_tile(job.w.dtype, job.x + static_cast<size_t>(i) * job.x_stride, job.x_stride, nx,
                  job.w.packed + static_cast<size_t>(g0 * group_bytes), ng, k, job.out + i * job.ldo + j0, job.ldo,
                  n_out);
    }
  }
}

}  // namespace

void run_fast_job(const FastJob& job, int64_t u_begin, int64_t u_end) {
  if (job.w.packed) return run_packed_job(job, u_begin, u_end);
  const WeightRows& w = job.w;
  const size_t wbytes = engine::row_bytes(w.dtype, w.k);
  const int64_t col_blocks = w.scale ? (w.k + w.block_cols - 1) / w.block_cols : 0;
  Tile t{};
  t.x_stride = job.x_stride;
  t.k = w.k;
  t.ldo = job.ldo;
  t.scale_cols = w.block_cols;
  for (int64_t q = u_begin; q < u_end; ++q) {
    const int64_t j0 = q * 4;
    t.nw = static_cast<int>(std::min<int64_t>(4, w.n_rows - j0));
    for (int c = 0; c < t.nw; ++c) {
      t.w[c] = w.data + static_cast<size_t>(j0 + c) * wbytes;
      t.w_scale[c] = w.scale ? w.scale + ((w.first_row + j0 + c) / w.block_rows) * col_blocks : nullptr;
    }
    for (int64_t i = 0; i < job.n; i += 4) {
      t.x = job.x + static_cast<size_t>(i) * job.x_stride;
      t.nx = static_cast<int>(std::min<int64_t>(4, job.n - i));
      t.out = job.out + i * job.ldo + j0;
      job.tile(t);
    }
  }
}

void run_fast_jobs(const Exec& ex, FastJob* jobs, int64_t count) {
  int64_t all_groups = 0;
  for (int64_t j = 0; j < count; ++j)
    if (jobs[j].w.packed) all_groups += (jobs[j].w.n_rows + kPackedRows - 1) / kPackedRows;
  for (int64_t j = 0; j < count; ++j)
    if (jobs[j].w.packed) {
      const int64_t widest = packed_max_groups(jobs[j].w.dtype, static_cast<int>(std::min<int64_t>(jobs[j].n, 4)));
      jobs[j].unit_groups = std::clamp<int64_t>(all_groups / ex.pool.size(), 1, widest);
    }
  int64_t total = 0, work = 0;
  for (int64_t j = 0; j < count; ++j) {
    total += fast_job_units(jobs[j]);
    work += fast_job_units(jobs[j]) * fast_job_unit_rows(jobs[j]) * jobs[j].n * jobs[j].w.k;
  }
  if (total == 0) return;
  ex.pool.parallel_for(total, work / total, [&](int64_t begin, int64_t end) {
    int64_t j = 0, first = 0;  // first global unit of job j
    while (begin >= first + fast_job_units(jobs[j])) first += fast_job_units(jobs[j++]);
    while (begin < end) {
      const int64_t nu = fast_job_units(jobs[j]);
      const int64_t stop = std::min(end, first + nu);
      run_fast_job(jobs[j], begin - first, stop - first);
      begin = stop;
      first += nu;
      ++j;
    }
  });
}

namespace {

// Jobs [0, count) that share one input x and one activation format: x converted once.
void run_on_input(const Exec& ex, ActFormat act, const float* x, int64_t n, int64_t ldx, FastJob* jobs, int64_t count) {
  const int64_t k = jobs[0].w.k;
  const uint8_t* rows = reinterpret_cast<const uint8_t*>(x);
  size_t stride = static_cast<size_t>(ldx) * 4;
  if (act != ActFormat::f32) {
    stride = act_row_bytes(act, k);
    uint8_t* buf = act_scratch(0, stride * static_cast<size_t>(n));
    ex.pool.parallel_for(n, k * 4, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) convert_activation(act, x + i * ldx, k, buf + i * stride);
    });
    rows = buf;
  }
  for (int64_t j = 0; j < count; ++j) {
    jobs[j].x = rows;
    jobs[j].x_stride = stride;
  }
  run_fast_jobs(ex, jobs, count);
}

}  // namespace

void gemm_fast(const Exec& ex, const FastKernel& kernel, const float* x, int64_t n, int64_t ldx, const WeightRows& w,
               float* out, int64_t ldo) {
  FastJob job{kernel.tile, nullptr, 0, n, w, out, ldo};
  run_on_input(ex, kernel.act, x, n, ldx, &job, 1);
}

void gemm_pair(const Exec& ex, const float* x, int64_t n, int64_t ldx, const WeightRows& a, float* out_a,
               int64_t ld_a, const WeightRows& b, float* out_b, int64_t ld_b) {
  if (ex.precision == Precision::fast && a.k == b.k) {
    const FastKernel ka = fast_kernel(a.dtype), kb = fast_kernel(b.dtype);
    if (ka.tile && kb.tile && ka.act == kb.act) {
      FastJob jobs[2] = {{ka.tile, nullptr, 0, n, a, out_a, ld_a}, {kb.tile, nullptr, 0, n, b, out_b, ld_b}};
      return run_on_input(ex, ka.act, x, n, ldx, jobs, 2);
    }
  }
  gemm(ex, x, n, ldx, a, out_a, ld_a);
  gemm(ex, x, n, ldx, b, out_b, ld_b);
}

void gemm(const Exec& ex, const float* x, int64_t n, int64_t ldx, const WeightRows& w, float* out, int64_t ldo) {
  if (ex.precision == Precision::fast) {
    const FastKernel kernel = fast_kernel(w.dtype);
    if (kernel.tile) return gemm_fast(ex, kernel, x, n, ldx, w, out, ldo);
  }
  gemm_exact(ex.pool, x, n, ldx, w, out, ldo);
}

}  // namespace sibyl::backend::cpu
