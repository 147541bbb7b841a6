// Matmul dispatch: the fast kernels (on the stored blocks, activations converted once per
// row) or the exact path (weight rows decoded to float32, then float32 tiles).
#include <algorithm>
#include <memory>

#include "cpu_backend.h"
#include "fast_kernels.h"

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

// The calling thread's buffer for converted activations; grows, never shrinks (no
// allocation per matmul once warm).
uint8_t* act_buffer(size_t bytes) {
  thread_local std::unique_ptr<uint8_t[]> buf;
  thread_local size_t cap = 0;
  if (bytes + 64 > cap) {
    cap = std::max(bytes + 64, cap * 2);
    buf = std::make_unique<uint8_t[]>(cap);
  }
  auto p = reinterpret_cast<uintptr_t>(buf.get());
  return buf.get() + ((64 - p % 64) % 64);
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

void gemm_fast(const Exec& ex, const FastKernel& kernel, const float* x, int64_t n, int64_t ldx, const WeightRows& w,
               float* out, int64_t ldo) {
  const uint8_t* xa;
  size_t stride;
  if (kernel.act == ActFormat::f32) {
    xa = reinterpret_cast<const uint8_t*>(x);
    stride = static_cast<size_t>(ldx) * 4;
  } else {
    stride = act_row_bytes(kernel.act, w.k);
    uint8_t* buf = act_buffer(stride * static_cast<size_t>(n));
    ex.pool.parallel_for(n, w.k * 4, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) convert_activation(kernel.act, x + i * ldx, w.k, buf + i * stride);
    });
    xa = buf;
  }
  const size_t wbytes = engine::row_bytes(w.dtype, w.k);
  const int64_t col_blocks = w.scale ? (w.k + w.block_cols - 1) / w.block_cols : 0;
  const int64_t quads = (w.n_rows + 3) / 4;
  ex.pool.parallel_for(quads, 4 * n * w.k, [&](int64_t begin, int64_t end) {
    Tile t{};
    t.x_stride = stride;
    t.k = w.k;
    t.ldo = ldo;
    t.scale_cols = w.block_cols;
    for (int64_t q = begin; q < end; ++q) {
      const int64_t j0 = q * 4;
      t.nw = static_cast<int>(std::min<int64_t>(4, w.n_rows - j0));
      for (int c = 0; c < t.nw; ++c) {
        t.w[c] = w.data + static_cast<size_t>(j0 + c) * wbytes;
        t.w_scale[c] = w.scale ? w.scale + ((w.first_row + j0 + c) / w.block_rows) * col_blocks : nullptr;
      }
      for (int64_t i = 0; i < n; i += 4) {
        t.x = xa + static_cast<size_t>(i) * stride;
        t.nx = static_cast<int>(std::min<int64_t>(4, n - i));
        t.out = out + i * ldo + j0;
        kernel.tile(t);
      }
    }
  });
}

void gemm(const Exec& ex, const float* x, int64_t n, int64_t ldx, const WeightRows& w, float* out, int64_t ldo) {
  if (ex.precision == Precision::fast) {
    const FastKernel kernel = fast_kernel(w.dtype);
    if (kernel.tile) return gemm_fast(ex, kernel, x, n, ldx, w, out, ldo);
  }
  gemm_exact(ex.pool, x, n, ldx, w, out, ldo);
}

}  // namespace sibyl::backend::cpu
