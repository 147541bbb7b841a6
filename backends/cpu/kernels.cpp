#include "backends/cpu/kernels.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <vector>

#include "backends/cpu/packed.h"
#include "engine/core/quant.h"

// GCC/Clang function multi-versioning: one clone per SIMD level, chosen at load time.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define SIBYL_SIMD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define SIBYL_SIMD_CLONES
#endif

namespace sibyl::backend::cpu {

SIBYL_SIMD_CLONES void axpy(float* y, float a, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

void gemm_kmajor(const float* x, int64_t ldx, int64_t n, const float* w, int64_t k, int64_t m, float* out,
                 int64_t ldo) {
  // Four rows at a time through axpy_rows: the k rows of w are the rows, x's rows the weights.
  std::vector<const float*> rows(static_cast<size_t>(k));
  for (int64_t d = 0; d < k; ++d) rows[static_cast<size_t>(d)] = w + d * m;
  for (int64_t i = 0; i < n; i += 4) {
    const int ny = static_cast<int>(std::min<int64_t>(4, n - i));
    float* y[4];
    for (int g = 0; g < ny; ++g) {
      y[g] = out + (i + g) * ldo;
      std::fill(y[g], y[g] + m, 0.0f);
    }
    axpy_rows(y, x + i * ldx, ldx, ny, rows.data(), k, m);
  }
}

void to_f32(float* dst, const void* src, DType dtype, int64_t n) {
  switch (dtype) {
    case DType::f32:
      std::memcpy(dst, src, static_cast<size_t>(n) * 4);
      return;
    case DType::bf16:
      bf16_to_f32(dst, static_cast<const uint16_t*>(src), n);
      return;
    case DType::f16:
    case DType::q8_0:
    case DType::q5_0:
    case DType::q4_k:
    case DType::q6_k:
      engine::dequantize_row(dtype, src, dst, n);
      return;
    case DType::f8_e4m3: {  // unscaled values; WeightRows::row applies the block scales
      static const std::array<float, 256> table = [] {
        std::array<float, 256> t{};
        for (int b = 0; b < 256; ++b) t[b] = engine::f8_e4m3_to_f32(static_cast<uint8_t>(b));
        return t;
      }();
      auto* s = static_cast<const uint8_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = table[s[i]];
      return;
    }
    default:
      std::memset(dst, 0, static_cast<size_t>(n) * 4);
  }
}

WeightRows WeightRows::rows_from(int64_t first, int64_t count) const {
  WeightRows v = *this;
  v.data = data + static_cast<size_t>(first) * engine::row_bytes(dtype, k);
  v.n_rows = count;
  v.first_row = first_row + first;
  // A view starting at a group of 16 keeps the packed copy (a partial last group's extra lanes
  // are computed and not stored); one starting mid-group reads the stored rows.
  v.packed = packed && first % kPackedRows == 0
                 ? packed + static_cast<size_t>(first / kPackedRows) * packed_group_bytes(dtype, k)
                 : nullptr;
  return v;
}

const float* WeightRows::row(int64_t j, float* scratch) const {
  const uint8_t* p = data + static_cast<size_t>(j) * engine::row_bytes(dtype, k);
  if (dtype == DType::f32) return reinterpret_cast<const float*>(p);
  to_f32(scratch, p, dtype, k);
  if (scale) {
    const int64_t col_blocks = (k + block_cols - 1) / block_cols;
    const float* s = scale + ((first_row + j) / block_rows) * col_blocks;
    for (int64_t c = 0; c < k; ++c) scratch[c] *= s[c / block_cols];
  }
  return scratch;
}

}  // namespace sibyl::backend::cpu
