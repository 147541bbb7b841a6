// Which SIMD instructions the CPU backend's fast kernels may use: detected once from the
// CPU, optionally capped lower (tests force every level the machine has; users can set
// SIBYL_CPU_SIMD=portable|avx2|avx512|avx512_vnni|avx512_bf16 to rule out an instruction set).
#pragma once

namespace sibyl::backend::cpu {

// Ordered: each level assumes the ones below it. avx512 = F, BW, VL, DQ.
enum class SimdLevel : int { portable = 0, avx2 = 1, avx512 = 2, avx512_vnni = 3, avx512_bf16 = 4 };

// True when the machine has `level`'s instructions and the cap allows them. avx2 means
// AVX2 + FMA + F16C; avx512_vnni and avx512_bf16 each need their own feature bit.
bool simd_has(SimdLevel level);
// The highest level simd_has() allows.
SimdLevel simd_best();
// Caps the levels kernels may use (not thread-safe against running kernels: tests and start-up).
void simd_cap(SimdLevel cap);
const char* simd_name(SimdLevel level);

}  // namespace sibyl::backend::cpu
