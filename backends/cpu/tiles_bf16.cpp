// BF16 weights on the fast path. With AVX-512 BF16 the activations are rounded to bf16 once
// per row and vdpbf16ps multiplies bf16 pairs straight from the stored rows: no widening, 32
// products per instruction (the exact path decodes each weight row to a float scratch row
// first). Below that level the activations stay float32 and each weight is widened in a
// register (a bf16 is the top half of a float32: one shift), then fused-multiply-added by the
// shared float tiles (float_tiles.h, which also states the determinism argument).
#include "backends/cpu/float_tiles.h"
#include "engine/core/quant.h"

namespace sibyl::backend::cpu {
namespace {

using namespace float_tiles;

// A bf16 is the top half of a float32: zero-extend, shift left by 16.
struct Bf16 {
  static constexpr int kBytes = 2, kVecs = 1;
  static constexpr bool kScaled = false;

#if defined(__x86_64__)
  __attribute__((target("avx512f"))) static inline __m512 widen(__m256i h) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
  __attribute__((target("avx512f"))) static inline void widen512(const uint8_t* p, __m512 (&v)[1]) {
    v[0] = widen(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  __attribute__((target("avx512f,avx512bw,avx512vl"))) static inline __m512 widen512_masked(__mmask16 m,
                                                                                             const uint8_t* p) {
    return widen(_mm256_maskz_loadu_epi16(m, p));
  }
  __attribute__((target("avx2"))) static inline void widen256(const uint8_t* p, __m256& lo, __m256& hi) {
    const __m256i wl = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    const __m256i wh = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16)));
    lo = _mm256_castsi256_ps(_mm256_slli_epi32(wl, 16));
    hi = _mm256_castsi256_ps(_mm256_slli_epi32(wh, 16));
  }
#endif

  static void decode(const uint8_t* w, int64_t i0, int64_t n, float* out) {
    for (int64_t i = 0; i < n; ++i) {
      uint16_t h;
      std::memcpy(&h, w + 2 * (i0 + i), 2);
      out[i] = engine::bf16_to_f32(h);
    }
  }
};

#if defined(__x86_64__)

// ---- AVX-512 BF16: bf16 activations, 32 products per instruction (lane l of the float
// accumulator takes elements 2l and 2l + 1 of every 32). The tail is a masked load.
template <int RX, int RW>
struct DotBf16 {
  __attribute__((target("avx512f,avx512bw,avx512bf16"))) static void run(const Tile& t, int r0, int c0) {
    const uint8_t* x[RX];
    x_rows(t, r0, x);
    const uint8_t* const* w = t.w + c0;
    __m512 acc[RX][RW];
    zero(acc);
    const int64_t k = t.k;
    int64_t i = 0;
    for (; i + 32 <= k; i += 32) {
      __m512i wv[RW];
      for (int c = 0; c < RW; ++c) wv[c] = _mm512_loadu_si512(w[c] + 2 * i);
      for (int r = 0; r < RX; ++r) {
        const __m512i xv = _mm512_loadu_si512(x[r] + 2 * i);
        for (int c = 0; c < RW; ++c) acc[r][c] = _mm512_dpbf16_ps(acc[r][c], (__m512bh)xv, (__m512bh)wv[c]);
      }
    }
    if (i < k) {  // masked-off elements load as zero (and are never read: no fault past the row)
      const __mmask32 m = _cvtu32_mask32((1u << (k - i)) - 1u);
      __m512i wv[RW];
      for (int c = 0; c < RW; ++c) wv[c] = _mm512_maskz_loadu_epi16(m, w[c] + 2 * i);
      for (int r = 0; r < RX; ++r) {
        const __m512i xv = _mm512_maskz_loadu_epi16(m, x[r] + 2 * i);
        for (int c = 0; c < RW; ++c) acc[r][c] = _mm512_dpbf16_ps(acc[r][c], (__m512bh)xv, (__m512bh)wv[c]);
      }
    }
    store(t, r0, c0, acc);
  }
};

#endif  // __x86_64__

}  // namespace

FastKernel bf16_kernel() {
#if defined(__x86_64__)
  if (simd_has(SimdLevel::avx512_bf16)) return {ActFormat::bf16, run_tile<DotBf16, 4, 16>};
  if (simd_has(SimdLevel::avx512)) return {ActFormat::f32, run_tile<Fma512<Bf16>::Pass, 4, 16>};
  // AVX2 (16 registers, two per accumulator): 2 × 2 passes measured faster than 4 × 1.
  if (simd_has(SimdLevel::avx2)) return {ActFormat::f32, run_tile<Fma256<Bf16>::Pass, 2, 4>};
#endif
  return {ActFormat::f32, tile_portable<Bf16>};
}

}  // namespace sibyl::backend::cpu
