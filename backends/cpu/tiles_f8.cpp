// FP8 (e4m3fn) weights on the fast path: float32 activations as they are; 16 weights at a time
// widened in registers, multiplied against x, and each column block's partial sum scaled by
// its block scale once (the exact path scales every weight of a scratch row instead).
//
// Widening: a sign-extended byte shifted left by 7 puts the sign at bit 15 (and a copy at bit
// 14, masked off) and exponent + mantissa at bits 13…7: an IEEE half equal to the e4m3 value
// times 2^-8, subnormals included (both formats' subnormals line up). F16C then converts it
// exactly; the 2^8 rides on the block scale (a power of two: exact). The NaN codes 0x7f/0xff
// come out as ±1.875 (×2^8), not NaN: checkpoints never store them.
//
// Determinism: every pair (x row, w row) has accumulators of its own and goes through the same
// instruction sequence in every tile. A tile runs as passes of RX × RW pairs, which only decide
// which pairs share a load. Each column block starts its own vectors at its first column (a
// block may end mid-vector), its tail is a masked or zero-padded vector step; the lanes are
// summed by a fixed tree.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>

#include "dtype.h"
#include "fast_kernels.h"

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

// Columns per scale block (no scales: the whole row is one block of scale 1).
int64_t block_cols(const Tile& t) { return t.scale_cols > 0 ? t.scale_cols : t.k; }
float block_scale(const Tile& t, int c, int64_t b) { return t.w_scale[c] ? t.w_scale[c][b] : 1.0f; }

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

// Bits of the half for each byte (see the top): (sign-extended byte << 7) & 0xbf80.
constexpr short kHalfMask = static_cast<short>(0xbf80);

// ---- AVX-512: two accumulators per pair (the block's partial sum, the scaled total), so at
// most 8 pairs per pass. 32 bytes are widened per step, 16 for the block's last full vector.
template <int RX, int RW>
struct Fma512 {
  __attribute__((target("avx512f,avx512bw,avx512vl,fma,f16c"))) static inline __m512 widen16(__m128i b) {
    const __m256i h = _mm256_and_si256(_mm256_slli_epi16(_mm256_cvtepi8_epi16(b), 7), _mm256_set1_epi16(kHalfMask));
    return _mm512_cvtph_ps(h);
  }

  __attribute__((target("avx512f,avx512bw,avx512vl,fma,f16c"))) static void run(const Tile& t, int r0, int c0) {
    const float* x[RX];
    const uint8_t* w[RW];
    for (int r = 0; r < RX; ++r) x[r] = reinterpret_cast<const float*>(t.x + static_cast<size_t>(r0 + r) * t.x_stride);
    for (int c = 0; c < RW; ++c) w[c] = t.w[c0 + c];
    __m512 tot[RX][RW], part[RX][RW];
    for (int r = 0; r < RX; ++r)
      for (int c = 0; c < RW; ++c) tot[r][c] = _mm512_setzero_ps();
    const __m512i mask = _mm512_set1_epi16(kHalfMask);
    const int64_t k = t.k, cols = block_cols(t);
    for (int64_t b0 = 0, b = 0; b0 < k; b0 += cols, ++b) {
      const int64_t b1 = std::min(k, b0 + cols);
      for (int r = 0; r < RX; ++r)
        for (int c = 0; c < RW; ++c) part[r][c] = _mm512_setzero_ps();
      int64_t i = b0;
      for (; i + 32 <= b1; i += 32) {
        __m512 wl[RW], wh[RW];
        for (int c = 0; c < RW; ++c) {
          const __m512i h = _mm512_and_si512(
              _mm512_slli_epi16(_mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[c] + i))), 7),
              mask);
          wl[c] = _mm512_cvtph_ps(_mm512_castsi512_si256(h));
          wh[c] = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(h, 1));
        }
        for (int r = 0; r < RX; ++r) {
          const __m512 xl = _mm512_loadu_ps(x[r] + i), xh = _mm512_loadu_ps(x[r] + i + 16);
          for (int c = 0; c < RW; ++c) part[r][c] = _mm512_fmadd_ps(xh, wh[c], _mm512_fmadd_ps(xl, wl[c], part[r][c]));
        }
      }
      if (i + 16 <= b1) {
        __m512 wv[RW];
        for (int c = 0; c < RW; ++c) wv[c] = widen16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w[c] + i)));
        for (int r = 0; r < RX; ++r) {
          const __m512 xv = _mm512_loadu_ps(x[r] + i);
          for (int c = 0; c < RW; ++c) part[r][c] = _mm512_fmadd_ps(xv, wv[c], part[r][c]);
        }
        i += 16;
      }
      if (i < b1) {  // masked-off elements load as zero (and are never read: no fault past the row)
        const __mmask16 m = _cvtu32_mask16((1u << (b1 - i)) - 1u);
        __m512 wv[RW];
        for (int c = 0; c < RW; ++c) wv[c] = widen16(_mm_maskz_loadu_epi8(m, w[c] + i));
        for (int r = 0; r < RX; ++r) {
          const __m512 xv = _mm512_maskz_loadu_ps(m, x[r] + i);
          for (int c = 0; c < RW; ++c) part[r][c] = _mm512_fmadd_ps(xv, wv[c], part[r][c]);
        }
      }
      for (int c = 0; c < RW; ++c) {
        const __m512 s = _mm512_set1_ps(block_scale(t, c0 + c, b) * 256.0f);
        for (int r = 0; r < RX; ++r) tot[r][c] = _mm512_fmadd_ps(part[r][c], s, tot[r][c]);
      }
    }
    for (int r = 0; r < RX; ++r)
      for (int c = 0; c < RW; ++c) t.out[(r0 + r) * t.ldo + c0 + c] = sum16(tot[r][c]);
  }
};

// ---- AVX2 + F16C: 16 lanes of partial sum as two registers, an 8-lane scaled total (three
// registers per pair: at most 4 pairs per pass). No byte masked load: a block's tail runs the
// same step on zero-padded copies.
template <int RX, int RW>
struct Fma256 {
  __attribute__((target("avx2,fma,f16c"))) static inline void step(__m256 (&lo)[RX][RW], __m256 (&hi)[RX][RW],
                                                                   const float* const* x, const uint8_t* const* w) {
    for (int c = 0; c < RW; ++c) {
      const __m256i h = _mm256_and_si256(
          _mm256_slli_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w[c]))), 7),
          _mm256_set1_epi16(kHalfMask));
      const __m256 fl = _mm256_cvtph_ps(_mm256_castsi256_si128(h));
      const __m256 fh = _mm256_cvtph_ps(_mm256_extracti128_si256(h, 1));
      for (int r = 0; r < RX; ++r) {
        lo[r][c] = _mm256_fmadd_ps(_mm256_loadu_ps(x[r]), fl, lo[r][c]);
        hi[r][c] = _mm256_fmadd_ps(_mm256_loadu_ps(x[r] + 8), fh, hi[r][c]);
      }
    }
  }

  __attribute__((target("avx2,fma,f16c"))) static void run(const Tile& t, int r0, int c0) {
    const float* xrow[RX];
    const float* x[RX];
    const uint8_t* w[RW];
    for (int r = 0; r < RX; ++r)
      xrow[r] = reinterpret_cast<const float*>(t.x + static_cast<size_t>(r0 + r) * t.x_stride);
    __m256 tot[RX][RW], lo[RX][RW], hi[RX][RW];
    for (int r = 0; r < RX; ++r)
      for (int c = 0; c < RW; ++c) tot[r][c] = _mm256_setzero_ps();
    const int64_t k = t.k, cols = block_cols(t);
    for (int64_t b0 = 0, b = 0; b0 < k; b0 += cols, ++b) {
      const int64_t b1 = std::min(k, b0 + cols);
      for (int r = 0; r < RX; ++r)
        for (int c = 0; c < RW; ++c) lo[r][c] = hi[r][c] = _mm256_setzero_ps();
      int64_t i = b0;
      for (; i + 16 <= b1; i += 16) {
        for (int r = 0; r < RX; ++r) x[r] = xrow[r] + i;
        for (int c = 0; c < RW; ++c) w[c] = t.w[c0 + c] + i;
        step(lo, hi, x, w);
      }
      if (i < b1) {
        const auto n = static_cast<size_t>(b1 - i);
        alignas(32) float xt[RX][16] = {};
        alignas(16) uint8_t wt[RW][16] = {};
        for (int r = 0; r < RX; ++r) {
          std::memcpy(xt[r], xrow[r] + i, n * 4);
          x[r] = xt[r];
        }
        for (int c = 0; c < RW; ++c) {
          std::memcpy(wt[c], t.w[c0 + c] + i, n);
          w[c] = wt[c];
        }
        step(lo, hi, x, w);
      }
      for (int c = 0; c < RW; ++c) {
        const __m256 s = _mm256_set1_ps(block_scale(t, c0 + c, b) * 256.0f);
        for (int r = 0; r < RX; ++r) tot[r][c] = _mm256_fmadd_ps(_mm256_add_ps(lo[r][c], hi[r][c]), s, tot[r][c]);
      }
    }
    for (int r = 0; r < RX; ++r)
      for (int c = 0; c < RW; ++c) t.out[(r0 + r) * t.ldo + c0 + c] = sum8(tot[r][c]);
  }
};

#endif  // __x86_64__

// ---- Portable: per pair, 16 lanes per block (lane l takes the block's elements l, l + 16,
// …), each block's lanes scaled into 16 total lanes, then the lane tree.
float sum16_portable(const float* lanes) {
  float v8[8], v4[4];
  for (int l = 0; l < 8; ++l) v8[l] = lanes[l] + lanes[l + 8];
  for (int l = 0; l < 4; ++l) v4[l] = v8[l] + v8[l + 4];
  return (v4[0] + v4[2]) + (v4[1] + v4[3]);
}

void tile_portable(const Tile& t) {
  static const std::array<float, 256> table = [] {
    std::array<float, 256> v{};
    for (int b = 0; b < 256; ++b) v[b] = engine::f8_e4m3_to_f32(static_cast<uint8_t>(b));
    return v;
  }();
  const int64_t cols = block_cols(t);
  for (int r = 0; r < t.nx; ++r) {
    const auto* x = reinterpret_cast<const float*>(t.x + static_cast<size_t>(r) * t.x_stride);
    for (int c = 0; c < t.nw; ++c) {
      float tot[16] = {};
      for (int64_t b0 = 0, b = 0; b0 < t.k; b0 += cols, ++b) {
        const int64_t b1 = std::min(t.k, b0 + cols);
        float part[16] = {};
        for (int64_t i = b0; i < b1; ++i) part[(i - b0) % 16] = std::fma(x[i], table[t.w[c][i]], part[(i - b0) % 16]);
        const float s = block_scale(t, c, b);
        for (int l = 0; l < 16; ++l) tot[l] = std::fma(part[l], s, tot[l]);
      }
      t.out[r * t.ldo + c] = sum16_portable(tot);
    }
  }
}

}  // namespace

FastKernel f8_kernel() {
#if defined(__x86_64__)
  // Widening is the costly part here: passes take all the x rows so each weight vector is
  // widened once per tile (4 × 2 and 4 × 1 measured faster than 2 × 4 and 2 × 2).
  if (simd_has(SimdLevel::avx512)) return {ActFormat::f32, run_tile<Fma512, 4, 8>};
  if (simd_has(SimdLevel::avx2)) return {ActFormat::f32, run_tile<Fma256, 4, 4>};
#endif
  return {ActFormat::f32, tile_portable};
}

}  // namespace sibyl::backend::cpu
