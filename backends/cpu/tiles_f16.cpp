// F16 weights on the fast path: float32 activations as they are; each weight vector is
// widened to float32 in a register by F16C (vcvtph2ps, subnormals included) and
// fused-multiply-added by the shared float tiles (float_tiles.h, which also states the
// determinism argument). The exact path instead decodes every weight row to a float scratch
// row first.
#include "backends/cpu/float_tiles.h"
#include "engine/core/quant.h"

namespace sibyl::backend::cpu {
namespace {

using namespace float_tiles;

struct F16 {
  static constexpr int kBytes = 2, kVecs = 1;
  static constexpr bool kScaled = false;

#if defined(__x86_64__)
  __attribute__((target("avx512f"))) static inline void widen512(const uint8_t* p, __m512 (&v)[1]) {
    v[0] = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  __attribute__((target("avx512f,avx512bw,avx512vl"))) static inline __m512 widen512_masked(__mmask16 m,
                                                                                             const uint8_t* p) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
  }
  __attribute__((target("avx,f16c"))) static inline void widen256(const uint8_t* p, __m256& lo, __m256& hi) {
    lo = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    hi = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16)));
  }
#endif

  // The engine's f16 decoder.
  static void decode(const uint8_t* w, int64_t i0, int64_t n, float* out) {
    engine::dequantize_row(DType::f16, w + 2 * i0, out, n);
  }
};

}  // namespace

FastKernel f16_kernel() {
#if defined(__x86_64__)
  if (simd_has(SimdLevel::avx512)) return {ActFormat::f32, run_tile<Fma512<F16>::Pass, 4, 16>};
  // AVX2 (16 registers, two per accumulator): 2 × 2 passes measured faster than 4 × 1.
  if (simd_has(SimdLevel::avx2)) return {ActFormat::f32, run_tile<Fma256<F16>::Pass, 2, 4>};
#endif
  return {ActFormat::f32, tile_portable<F16>};
}

}  // namespace sibyl::backend::cpu
