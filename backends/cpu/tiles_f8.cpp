// FP8 (e4m3fn) weights on the fast path: float32 activations as they are; 16 weights at a time
// widened in registers, multiplied against x by the shared float tiles (float_tiles.h, which
// also states the determinism argument), and each column block's partial sum scaled by its
// block scale once (the exact path scales every weight of a scratch row instead).
//
// Widening: a sign-extended byte shifted left by 7 puts the sign at bit 15 (and a copy at bit
// 14, masked off) and exponent + mantissa at bits 13…7: an IEEE half equal to the e4m3 value
// times 2^-8, subnormals included (both formats' subnormals line up). F16C then converts it
// exactly; the 2^8 rides on the block scale (a power of two: exact). The NaN codes 0x7f/0xff
// come out as ±1.875 (×2^8), not NaN: checkpoints never store them.
#include <array>

#include "engine/core/dtype.h"
#include "backends/cpu/float_tiles.h"

namespace sibyl::backend::cpu {
namespace {

using namespace float_tiles;

struct F8 {
  // AVX-512 widens 32 bytes per step (one load), 16 for a block's last full vector.
  static constexpr int kBytes = 1, kVecs = 2;
  static constexpr bool kScaled = true;
  static constexpr float kSimdScale = 256.0f;

  // Columns per scale block (no scales: the whole row is one block of scale 1).
  static int64_t block_cols(const Tile& t) { return t.scale_cols > 0 ? t.scale_cols : t.k; }
  static float scale(const Tile& t, int c, int64_t b) { return t.w_scale[c] ? t.w_scale[c][b] : 1.0f; }

#if defined(__x86_64__)
  // Bits of the half for each byte (see the top): (sign-extended byte << 7) & 0xbf80.
  static constexpr short kHalfMask = static_cast<short>(0xbf80);

  __attribute__((target("avx512f,avx512bw"))) static inline void widen512(const uint8_t* p, __m512 (&v)[2]) {
    const __m512i h = _mm512_and_si512(
        _mm512_slli_epi16(_mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))), 7),
        _mm512_set1_epi16(kHalfMask));
    v[0] = _mm512_cvtph_ps(_mm512_castsi512_si256(h));
    v[1] = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(h, 1));
  }
  __attribute__((target("avx512f,avx2"))) static inline __m512 widen16(__m128i b) {
    return _mm512_cvtph_ps(_mm256_and_si256(_mm256_slli_epi16(_mm256_cvtepi8_epi16(b), 7), _mm256_set1_epi16(kHalfMask)));
  }
  __attribute__((target("avx512f,avx2"))) static inline __m512 widen512_16(const uint8_t* p) {
    return widen16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  __attribute__((target("avx512f,avx512bw,avx512vl,avx2"))) static inline __m512 widen512_masked(__mmask16 m,
                                                                                                  const uint8_t* p) {
    return widen16(_mm_maskz_loadu_epi8(m, p));
  }
  __attribute__((target("avx2,f16c"))) static inline void widen256(const uint8_t* p, __m256& lo, __m256& hi) {
    const __m256i h = _mm256_and_si256(
        _mm256_slli_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), 7),
        _mm256_set1_epi16(kHalfMask));
    lo = _mm256_cvtph_ps(_mm256_castsi256_si128(h));
    hi = _mm256_cvtph_ps(_mm256_extracti128_si256(h, 1));
  }
#endif

  // Portable: a table of the exact values (the block scale then applies as is).
  static void decode(const uint8_t* w, int64_t i0, int64_t n, float* out) {
    static const std::array<float, 256> table = [] {
      std::array<float, 256> v{};
      for (int b = 0; b < 256; ++b) v[b] = engine::f8_e4m3_to_f32(static_cast<uint8_t>(b));
      return v;
    }();
    for (int64_t i = 0; i < n; ++i) out[i] = table[w[i0 + i]];
  }
};

}  // namespace

FastKernel f8_kernel() {
#if defined(__x86_64__)
  // Widening is the costly part here: passes take all the x rows so each weight vector is
  // widened once per tile (4 × 2 and 4 × 1 measured faster than 2 × 4 and 2 × 2). Two
  // accumulators per pair (block partial, scaled total): 8 pairs per AVX-512 pass, 4 per AVX2.
  if (simd_has(SimdLevel::avx512)) return {ActFormat::f32, run_tile<Fma512<F8>::Pass, 4, 8>};
  if (simd_has(SimdLevel::avx2)) return {ActFormat::f32, run_tile<Fma256<F8>::Pass, 4, 4>};
#endif
  return {ActFormat::f32, tile_portable<F8>};
}

}  // namespace sibyl::backend::cpu
