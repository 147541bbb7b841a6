// Which SIMD instructions the CPU backend's fast kernels may use: detected once from the
// CPU, optionally capped lower (tests force every level the machine has; users can set
// SIBYL_CPU_SIMD=portable|avx2|avx512|avx512_vnni|avx512_bf16 to rule out an instruction set).
#pragma once
#include <atomic>

namespace sibyl::backend::cpu {

// Ordered: each level assumes the ones below it. avx512 = F, BW, VL, DQ.
enum class SimdLevel : int { portable = 0, avx2 = 1, avx512 = 2, avx512_vnni = 3, avx512_bf16 = 4 };

namespace detail {
// Bit l set: level l is usable (machine ∧ cap); -1 until first computed. Kept in one word
// because kernels ask per matmul and per converted row.
extern std::atomic<int> simd_allowed;
int simd_allowed_slow();
}  // namespace detail

// True when the machine has `level`'s instructions and the cap allows them. avx2 means
// AVX2 + FMA + F16C; avx512_vnni and avx512_bf16 each need their own feature bit.
inline bool simd_has(SimdLevel level) {
  int m = detail::simd_allowed.load(std::memory_order_relaxed);
  if (m < 0) m = detail::simd_allowed_slow();
  return (m >> static_cast<int>(level)) & 1;
}
// The highest level simd_has() allows.
SimdLevel simd_best();
// Caps the levels kernels may use (not thread-safe against running kernels: tests and start-up).
void simd_cap(SimdLevel cap);
const char* simd_name(SimdLevel level);

}  // namespace sibyl::backend::cpu
