// BF16 weights on the fast path. With AVX-512 BF16 the activations are rounded to bf16 once
// per row and vdpbf16ps multiplies bf16 pairs straight from the stored rows: no widening, 32
// products per instruction (the exact path decodes each weight row to a float scratch row
// first). Below that level the activations stay float32 and each weight is widened in a
// register (a bf16 is the top half of a float32: one shift), then fused-multiply-added.
//
// Determinism: every pair (x row, w row) has accumulators of its own and goes through the same
// instruction sequence in every tile. A tile runs as passes of RX × RW pairs, which only decide
// which pairs share a load; the tail (k not a multiple of the vector) is one more masked or
// zero-padded vector step on the same accumulators; the lanes are summed by a fixed tree.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "fast_kernels.h"
#include "quant.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

// GCC 12 warns inside its own AVX-512 headers about the intrinsics' unused merge operand.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace sibyl::backend::cpu {
namespace {

// ---- Tiles as passes of at most RXMAX rows × P pairs (what fits the registers). Fewer rows
// per pass widen each weight vector more often, more rows reload each x vector more often:
// which wins depends on how costly the widening is (measured; see each kernel's choice).
using PassFn = void (*)(const Tile&, int r0, int c0);

template <template <int, int> class K, int P, int RX, int RW>
constexpr PassFn entry() {
  if constexpr (RX * RW <= P) return &K<RX, RW>::run;
  else return nullptr;
}

template <template <int, int> class K, int P>
constexpr PassFn kPasses[16] = {
    entry<K, P, 1, 1>(), entry<K, P, 1, 2>(), entry<K, P, 1, 3>(), entry<K, P, 1, 4>(),
    entry<K, P, 2, 1>(), entry<K, P, 2, 2>(), entry<K, P, 2, 3>(), entry<K, P, 2, 4>(),
    entry<K, P, 3, 1>(), entry<K, P, 3, 2>(), entry<K, P, 3, 3>(), entry<K, P, 3, 4>(),
    entry<K, P, 4, 1>(), entry<K, P, 4, 2>(), entry<K, P, 4, 3>(), entry<K, P, 4, 4>()};

template <template <int, int> class K, int RXMAX, int P>
void run_tile(const Tile& t) {
  const int rx = std::min(t.nx, RXMAX);
  const int rw = std::max(1, std::min(t.nw, P / rx));
  for (int r0 = 0; r0 < t.nx; r0 += rx) {
    const int nr = std::min(rx, t.nx - r0);
    for (int c0 = 0; c0 < t.nw; c0 += rw) {
      const int nc = std::min(rw, t.nw - c0);
      kPasses<K, P>[(nr - 1) * 4 + (nc - 1)](t, r0, c0);
    }
  }
}

#if defined(__x86_64__)

// The lane tree: l + (l + 8), then + 4, + 2, + 1.
__attribute__((target("avx2"))) inline float sum8(__m256 v8) {
  const __m128 v4 = _mm_add_ps(_mm256_castps256_ps128(v8), _mm256_extractf128_ps(v8, 1));
  const __m128 v2 = _mm_add_ps(v4, _mm_movehl_ps(v4, v4));
  return _mm_cvtss_f32(_mm_add_ss(v2, _mm_shuffle_ps(v2, v2, 1)));
}

__attribute__((target("avx512f"))) inline float sum16(__m512 a) {
  return sum8(
      _mm256_add_ps(_mm512_castps512_ps256(a), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1))));
}

// ---- AVX-512 BF16: bf16 activations, 32 products per instruction (lane l of the float
// accumulator takes elements 2l and 2l + 1 of every 32). The tail is a masked load.
template <int RX, int RW>
struct DotBf16 {
  __attribute__((target("avx512f,avx512bw,avx512bf16"))) static void run(const Tile& t, int r0, int c0) {
    const uint8_t* x[RX];
    const uint8_t* w[RW];
    for (int r = 0; r < RX; ++r) x[r] = t.x + static_cast<size_t>(r0 + r) * t.x_stride;
    for (int c = 0; c < RW; ++c) w[c] = t.w[c0 + c];
    __m512 acc[RX][RW];
    for (int r = 0; r < RX; ++r)
      for (int c = 0; c < RW; ++c) acc[r][c] = _mm512_setzero_ps();
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
    for (int r = 0; r < RX; ++r)
      for (int c = 0; c < RW; ++c) t.out[(r0 + r) * t.ldo + c0 + c] = sum16(acc[r][c]);
  }
};

// ---- AVX-512: float activations; 16 weights widened per register (zero-extend, shift by 16).
template <int RX, int RW>
struct Fma512 {
  __attribute__((target("avx512f,avx512bw,avx512vl,fma"))) static void run(const Tile& t, int r0, int c0) {
    const float* x[RX];
    const uint8_t* w[RW];
    for (int r = 0; r < RX; ++r) x[r] = reinterpret_cast<const float*>(t.x + static_cast<size_t>(r0 + r) * t.x_stride);
    for (int c = 0; c < RW; ++c) w[c] = t.w[c0 + c];
    __m512 acc[RX][RW];
    for (int r = 0; r < RX; ++r)
      for (int c = 0; c < RW; ++c) acc[r][c] = _mm512_setzero_ps();
    const int64_t k = t.k;
    int64_t i = 0;
    for (; i + 16 <= k; i += 16) {
      __m512 wv[RW];
      for (int c = 0; c < RW; ++c)
        wv[c] = _mm512_castsi512_ps(_mm512_slli_epi32(
            _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[c] + 2 * i))), 16));
      for (int r = 0; r < RX; ++r) {
        const __m512 xv = _mm512_loadu_ps(x[r] + i);
        for (int c = 0; c < RW; ++c) acc[r][c] = _mm512_fmadd_ps(xv, wv[c], acc[r][c]);
      }
    }
    if (i < k) {
      const __mmask16 m = _cvtu32_mask16((1u << (k - i)) - 1u);
      __m512 wv[RW];
      for (int c = 0; c < RW; ++c)
        wv[c] = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, w[c] + 2 * i)), 16));
      for (int r = 0; r < RX; ++r) {
        const __m512 xv = _mm512_maskz_loadu_ps(m, x[r] + i);
        for (int c = 0; c < RW; ++c) acc[r][c] = _mm512_fmadd_ps(xv, wv[c], acc[r][c]);
      }
    }
    for (int r = 0; r < RX; ++r)
      for (int c = 0; c < RW; ++c) t.out[(r0 + r) * t.ldo + c0 + c] = sum16(acc[r][c]);
  }
};

// ---- AVX2: the same 16 lanes as two registers. AVX2 has no 16-bit masked load, so the
// tail runs the same step on zero-padded copies of the last elements.
template <int RX, int RW>
struct Fma256 {
  __attribute__((target("avx2,fma"))) static inline void step(__m256 (&lo)[RX][RW], __m256 (&hi)[RX][RW],
                                                              const float* const* x, const uint8_t* const* w) {
    for (int c = 0; c < RW; ++c) {
      const __m256i wl = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w[c])));
      const __m256i wh = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w[c] + 16)));
      const __m256 fl = _mm256_castsi256_ps(_mm256_slli_epi32(wl, 16));
      const __m256 fh = _mm256_castsi256_ps(_mm256_slli_epi32(wh, 16));
      for (int r = 0; r < RX; ++r) {
        lo[r][c] = _mm256_fmadd_ps(_mm256_loadu_ps(x[r]), fl, lo[r][c]);
        hi[r][c] = _mm256_fmadd_ps(_mm256_loadu_ps(x[r] + 8), fh, hi[r][c]);
      }
    }
  }

  __attribute__((target("avx2,fma"))) static void run(const Tile& t, int r0, int c0) {
    const float* x[RX];
    const uint8_t* w[RW];
    __m256 lo[RX][RW], hi[RX][RW];
    for (int r = 0; r < RX; ++r)
      for (int c = 0; c < RW; ++c) lo[r][c] = hi[r][c] = _mm256_setzero_ps();
    const int64_t k = t.k;
    int64_t i = 0;
    for (; i + 16 <= k; i += 16) {
      for (int r = 0; r < RX; ++r)
        x[r] = reinterpret_cast<const float*>(t.x + static_cast<size_t>(r0 + r) * t.x_stride) + i;
      for (int c = 0; c < RW; ++c) w[c] = t.w[c0 + c] + 2 * i;
      step(lo, hi, x, w);
    }
    if (i < k) {
      const auto n = static_cast<size_t>(k - i);
      alignas(32) float xt[RX][16] = {};
      alignas(32) uint8_t wt[RW][32] = {};
      for (int r = 0; r < RX; ++r) {
        std::memcpy(xt[r], reinterpret_cast<const float*>(t.x + static_cast<size_t>(r0 + r) * t.x_stride) + i, n * 4);
        x[r] = xt[r];
      }
      for (int c = 0; c < RW; ++c) {
        std::memcpy(wt[c], t.w[c0 + c] + 2 * i, n * 2);
        w[c] = wt[c];
      }
      step(lo, hi, x, w);
    }
    for (int r = 0; r < RX; ++r)
      for (int c = 0; c < RW; ++c) t.out[(r0 + r) * t.ldo + c0 + c] = sum8(_mm256_add_ps(lo[r][c], hi[r][c]));
  }
};

#endif  // __x86_64__

// ---- Portable: the same 16 lanes (lane l takes elements l, l + 16, …) and tree, per pair.
float sum16_portable(const float* lanes) {
  float v8[8], v4[4];
  for (int l = 0; l < 8; ++l) v8[l] = lanes[l] + lanes[l + 8];
  for (int l = 0; l < 4; ++l) v4[l] = v8[l] + v8[l + 4];
  return (v4[0] + v4[2]) + (v4[1] + v4[3]);
}

void tile_portable(const Tile& t) {
  for (int r = 0; r < t.nx; ++r) {
    const auto* x = reinterpret_cast<const float*>(t.x + static_cast<size_t>(r) * t.x_stride);
    for (int c = 0; c < t.nw; ++c) {
      float lanes[16] = {};
      for (int64_t i = 0; i < t.k; ++i) {
        uint16_t h;
        std::memcpy(&h, t.w[c] + 2 * i, 2);
        lanes[i % 16] = std::fma(x[i], engine::bf16_to_f32(h), lanes[i % 16]);
      }
      t.out[r * t.ldo + c] = sum16_portable(lanes);
    }
  }
}

}  // namespace

FastKernel bf16_kernel() {
#if defined(__x86_64__)
  if (simd_has(SimdLevel::avx512_bf16)) return {ActFormat::bf16, run_tile<DotBf16, 4, 16>};
  if (simd_has(SimdLevel::avx512)) return {ActFormat::f32, run_tile<Fma512, 4, 16>};
  // AVX2 (16 registers, two per accumulator): 2 × 2 passes measured faster than 4 × 1.
  if (simd_has(SimdLevel::avx2)) return {ActFormat::f32, run_tile<Fma256, 2, 4>};
#endif
  return {ActFormat::f32, tile_portable};
}

}  // namespace sibyl::backend::cpu
