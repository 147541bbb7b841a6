// Scalar building blocks of the CPU backend. Hot loops are compiled for several
// SIMD levels (AVX-512, AVX2, baseline) and the best is picked at run time.
#pragma once
#include <cstdint>

#include "engine/core/dtype.h"

namespace sibyl::backend::cpu {

using engine::DType;
using engine::dtype_size;

float dot(const float* a, const float* b, int64_t n);
// Tiles of dot products, bitwise equal to dot() for each pair: 4 rows of x (stride ldx)
// against 4 weight rows, out[r·ldo + c]; and one row of x against 4 weight rows.
void dot_4x4(const float* x, int64_t ldx, const float* const* w, int64_t n, float* out, int64_t ldo);
void dot_1x4(const float* x, const float* const* w, int64_t n, float* out);
void bf16_to_f32(float* dst, const uint16_t* src, int64_t n);
void axpy(float* y, float a, const float* x, int64_t n);  // y += a·x
// y[g][c] += Σ_t a[g·lda + t]·rows[t][c] for g < n_y (1…4), c < n, over t in order: the
// attention's value sums, the columns of every head held in registers across the rows; each
// element one fused multiply-add chain over t (bitwise the same at every SIMD level).
void axpy_rows(float* const* y, const float* a, int64_t lda, int n_y, const float* const* rows, int64_t n_rows,
               int64_t n);
// out[i·ldo + c] = Σ_d x[i·ldx + d]·w[d·m + c] for i < n, c < m: rows of x times a [k, m]
// matrix stored row-major (W_UK in kv_b's layout); each element one fused multiply-add chain
// over d in order (axpy_rows, from zero).
void gemm_kmajor(const float* x, int64_t ldx, int64_t n, const float* w, int64_t k, int64_t m, float* out,
                 int64_t ldo);
void to_f32(float* dst, const void* src, DType dtype, int64_t n);  // f8_e4m3 unscaled; i32/i64 give zeros

// A weight matrix [n_rows, k] of any stored dtype, read one f32 row at a time. FP8 rows
// are multiplied by their block scales on the way; block-quantized rows (Q8_0, Q5_0, Q4_K,
// Q6_K: row j at data + j·row_bytes(dtype, k), k a whole number of blocks) are decoded by
// engine::dequantize_row, so a quantized model is never expanded in memory.
struct WeightRows {
  const uint8_t* data;
  DType dtype;
  int64_t n_rows, k;
  const float* scale = nullptr;  // f8_e4m3: [ceil(n_rows / block_rows), ceil(k / block_cols)]
  int64_t block_rows = 0, block_cols = 0;
  int64_t first_row = 0;  // rows_from views: index of row 0 in the whole matrix (for the scales)
  const uint8_t* packed = nullptr;  // the packed copy (packed.h) or nullptr (see rows_from)
  const float* row(int64_t j, float* scratch) const;  // f32 view of row j
  // Rows [first, first + count) as a matrix of their own.
  WeightRows rows_from(int64_t first, int64_t count) const;
};

}  // namespace sibyl::backend::cpu
