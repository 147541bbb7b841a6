// Which weights are packed, and the dispatch to each family's packing and tiles (packed.h).
#include "backends/cpu/packed.h"

#include <string>

#include "backends/cpu/simd.h"
#include "engine/core/failure.h"

namespace sibyl::backend::cpu {

bool packed_wanted(DType dtype, int64_t k) {
#if defined(__x86_64__)
  if (k <= 0 || k > kPackedMaxK) return false;
  switch (dtype) {
    case DType::bf16: return k % 2 == 0 && simd_has(SimdLevel::avx512_bf16);
    case DType::q8_0:
    case DType::q5_0: return k % 32 == 0 && simd_has(SimdLevel::avx512_vnni);
    case DType::q4_k:
    case DType::q6_k: return k % 256 == 0 && simd_has(SimdLevel::avx512_vnni);
    default: return false;
  }
#else
  (void)dtype, (void)k;
  return false;
#endif
}

size_t packed_group_bytes(DType dtype, int64_t k) {
  switch (dtype) {
    case DType::bf16: return static_cast<size_t>(k) * 32;
    case DType::q4_k:
    case DType::q6_k: return static_cast<size_t>(k / 256) * 5120;
    default: return static_cast<size_t>(k / 32) * 576;
  }
}

size_t packed_bytes(DType dtype, int64_t n_rows, int64_t k) {
  return static_cast<size_t>((n_rows + kPackedRows - 1) / kPackedRows) * packed_group_bytes(dtype, k);
}

void pack_rows(DType dtype, const uint8_t* rows, int64_t n_rows, int64_t k, uint8_t* dst) {
  if (dtype == DType::bf16) return pack_bf16(rows, n_rows, k, dst);
  if (dtype == DType::q4_k || dtype == DType::q6_k) return pack_kquant(dtype, rows, n_rows, k, dst);
  pack_q8(dtype, rows, n_rows, k, dst);
}

void packed_tile(DType dtype, const uint8_t* x, size_t x_stride, int nx, const uint8_t* groups, int ngroups,
                 int64_t k, float* out, int64_t ldo, int64_t n_out) {
#if defined(__x86_64__)
  if (dtype == DType::bf16) return packed_bf16_tile(x, x_stride, nx, groups, ngroups, k, out, ldo, n_out);
  if (dtype == DType::q4_k || dtype == DType::q6_k)
    return packed_kquant_tile(dtype, x, x_stride, nx, groups, ngroups, k, out, ldo, n_out);
  packed_q8_tile(x, x_stride, nx, groups, ngroups, k, out, ldo, n_out);
#else
  (void)dtype, (void)x, (void)x_stride, (void)nx, (void)groups, (void)ngroups, (void)k, (void)out, (void)ldo,
      (void)n_out;
  engine::fail(engine::Errc::internal, "packed tiles exist on x86-64 only");
#endif
}

}  // namespace sibyl::backend::cpu
