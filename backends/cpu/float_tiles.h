// The skeleton the float-weight tiles share (BF16, F16, FP8 against float32 activations). Each
// dtype file supplies a widening policy W; everything else is here:
//   - a tile runs as passes of RX × RW pairs (at most RXMAX rows, P pairs: the register budget);
//   - per SIMD level, a pass keeps 16 float lanes per pair, widens W's weights a vector at a time
//     and fused-multiply-adds them against x; the lanes are summed by one fixed tree.
//
// A policy W provides:
//   kBytes                       bytes per stored weight
//   kVecs                        16-weight vectors one AVX-512 step widens (1, or 2 for cheap
//                                32-byte loads)
//   kScaled                      false: the row is one sum. true: the row is column blocks of
//                                block_cols(t), each block's partial sum scaled by
//                                scale(t, c, b) · kSimdScale into a total (kSimdScale: the power
//                                of two the SIMD widening leaves out; the portable decode is exact)
//   widen512(p, v[kVecs]), widen512_16(p) (when kVecs == 2), widen512_masked(m16, p) -> __m512
//   widen256(p, lo, hi)          16 weights as two __m256
//   decode(w, i0, n, out)        portable: n weights from element i0 to floats
//
// Determinism (fast_kernels.h): every pair (x row, w row) has accumulators of its own and goes
// through the same instruction sequence in every pass shape: RX × RW only decide which pairs
// share a load. A block (the whole row when unscaled) starts its vectors at its first column;
// its tail is a masked or zero-padded vector step on the same accumulators.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstring>

#include "backends/cpu/fast_kernels.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

// GCC 12 warns inside its own AVX-512 headers about the intrinsics' unused merge operand (here
// and in the including file's widening, hence not popped).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace sibyl::backend::cpu::float_tiles {

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

template <class T, int RX>
inline void x_rows(const Tile& t, int r0, const T* (&x)[RX]) {
  for (int r = 0; r < RX; ++r) x[r] = reinterpret_cast<const T*>(t.x + static_cast<size_t>(r0 + r) * t.x_stride);
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

template <int RX, int RW>
__attribute__((target("avx512f"))) inline void zero(__m512 (&a)[RX][RW]) {
  for (int r = 0; r < RX; ++r)
    for (int c = 0; c < RW; ++c) a[r][c] = _mm512_setzero_ps();
}

// sum16 of four registers at once, by the same tree (each node adds the same two values, so
// every sum is bitwise sum16's): with short rows the lane sums cost as much as the products.
__attribute__((target("avx512f"))) inline __m128 sum16x4(__m512 a0, __m512 a1, __m512 a2, __m512 a3) {
  // + 8: [a0 lanes l + (l + 8) | a1 …] and [a2 … | a3 …]
  const __m512 s01 = _mm512_add_ps(_mm512_shuffle_f32x4(a0, a1, _MM_SHUFFLE(1, 0, 1, 0)),
                                   _mm512_shuffle_f32x4(a0, a1, _MM_SHUFFLE(3, 2, 3, 2)));
  const __m512 s23 = _mm512_add_ps(_mm512_shuffle_f32x4(a2, a3, _MM_SHUFFLE(1, 0, 1, 0)),
                                   _mm512_shuffle_f32x4(a2, a3, _MM_SHUFFLE(3, 2, 3, 2)));
  // + 4: one 128-bit group per register
  const __m512 t = _mm512_add_ps(_mm512_shuffle_f32x4(s01, s23, _MM_SHUFFLE(2, 0, 2, 0)),
                                 _mm512_shuffle_f32x4(s01, s23, _MM_SHUFFLE(3, 1, 3, 1)));
  const __m512 t2 = _mm512_add_ps(t, _mm512_permute_ps(t, _MM_SHUFFLE(1, 0, 3, 2)));     // + 2
  const __m512 t1 = _mm512_add_ps(t2, _mm512_permute_ps(t2, _MM_SHUFFLE(2, 3, 0, 1)));  // + 1
  return _mm512_castps512_ps128(_mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), t1));
}

template <int RX, int RW>
__attribute__((target("avx512f"))) inline void store(const Tile& t, int r0, int c0, const __m512 (&a)[RX][RW]) {
  for (int r = 0; r < RX; ++r) {
    float* out = t.out + (r0 + r) * t.ldo + c0;
    if constexpr (RW == 4) {
      _mm_storeu_ps(out, sum16x4(a[r][0], a[r][1], a[r][2], a[r][3]));
    } else {
      for (int c = 0; c < RW; ++c) out[c] = sum16(a[r][c]);
    }
  }
}

// ---- AVX-512 (F, BW, VL; F16C and FMA come with it): 16 lanes per register. Scaled: two
// accumulators per pair (the block's partial sum, the scaled total), so budget half the pairs.
template <class W>
struct Fma512 {
  static constexpr int N = W::kVecs;

  template <int RX, int RW>
  struct Pass {
    // Adds x·w over [b0, b1) to acc: N vectors per step, then (N = 2) one more full vector,
    // then a masked one (masked-off elements load as zero and are never read: no fault).
    __attribute__((target("avx512f,avx512bw,avx512vl,fma,f16c"))) static inline void span(
        __m512 (&acc)[RX][RW], const float* const* x, const uint8_t* const* w, int64_t b0, int64_t b1) {
      int64_t i = b0;
      for (; i + 16 * N <= b1; i += 16 * N) {
        __m512 wv[RW][N];
        for (int c = 0; c < RW; ++c) W::widen512(w[c] + W::kBytes * i, wv[c]);
        for (int r = 0; r < RX; ++r) {
          __m512 xv[N];
          for (int v = 0; v < N; ++v) xv[v] = _mm512_loadu_ps(x[r] + i + 16 * v);
          for (int c = 0; c < RW; ++c)
            for (int v = 0; v < N; ++v) acc[r][c] = _mm512_fmadd_ps(xv[v], wv[c][v], acc[r][c]);
        }
      }
      if constexpr (N == 2) {
        if (i + 16 <= b1) {
          __m512 wv[RW];
          for (int c = 0; c < RW; ++c) wv[c] = W::widen512_16(w[c] + W::kBytes * i);
          for (int r = 0; r < RX; ++r) {
            const __m512 xv = _mm512_loadu_ps(x[r] + i);
            for (int c = 0; c < RW; ++c) acc[r][c] = _mm512_fmadd_ps(xv, wv[c], acc[r][c]);
          }
          i += 16;
        }
      }
      if (i < b1) {
        const __mmask16 m = _cvtu32_mask16((1u << (b1 - i)) - 1u);
        __m512 wv[RW];
        for (int c = 0; c < RW; ++c) wv[c] = W::widen512_masked(m, w[c] + W::kBytes * i);
        for (int r = 0; r < RX; ++r) {
          const __m512 xv = _mm512_maskz_loadu_ps(m, x[r] + i);
          for (int c = 0; c < RW; ++c) acc[r][c] = _mm512_fmadd_ps(xv, wv[c], acc[r][c]);
        }
      }
    }

    __attribute__((target("avx512f,avx512bw,avx512vl,fma,f16c"))) static void run(const Tile& t, int r0, int c0) {
      const float* x[RX];
      const uint8_t* w[RW];
      x_rows(t, r0, x);
      for (int c = 0; c < RW; ++c) w[c] = t.w[c0 + c];
      __m512 tot[RX][RW];
      zero(tot);
      if constexpr (!W::kScaled) {
        span(tot, x, w, 0, t.k);
      } else {
        __m512 part[RX][RW];
        const int64_t k = t.k, cols = W::block_cols(t);
        for (int64_t b0 = 0, b = 0; b0 < k; b0 += cols, ++b) {
          zero(part);
          span(part, x, w, b0, std::min(k, b0 + cols));
          for (int c = 0; c < RW; ++c) {
            const __m512 s = _mm512_set1_ps(W::scale(t, c0 + c, b) * W::kSimdScale);
            for (int r = 0; r < RX; ++r) tot[r][c] = _mm512_fmadd_ps(part[r][c], s, tot[r][c]);
          }
        }
      }
      store(t, r0, c0, tot);
    }
  };
};

// ---- AVX2 + FMA + F16C: the same 16 lanes as two registers (lo, hi). AVX2 has no 8/16-bit
// masked load, so a tail runs the same step on zero-padded copies of its last elements.
// Scaled: the total is 8 lanes (lo + hi per block), three registers per pair.
template <class W>
struct Fma256 {
  template <int RX, int RW>
  struct Pass {
    __attribute__((target("avx2,fma,f16c"))) static inline void step(__m256 (&lo)[RX][RW], __m256 (&hi)[RX][RW],
                                                                     const float* const* x, const uint8_t* const* w) {
      for (int c = 0; c < RW; ++c) {
        __m256 fl, fh;
        W::widen256(w[c], fl, fh);
        for (int r = 0; r < RX; ++r) {
          lo[r][c] = _mm256_fmadd_ps(_mm256_loadu_ps(x[r]), fl, lo[r][c]);
          hi[r][c] = _mm256_fmadd_ps(_mm256_loadu_ps(x[r] + 8), fh, hi[r][c]);
        }
      }
    }

    // Zeroes lo, hi and adds x·w over [b0, b1) to them.
    __attribute__((target("avx2,fma,f16c"))) static inline void span(__m256 (&lo)[RX][RW], __m256 (&hi)[RX][RW],
                                                                     const Tile& t, int r0, int c0, int64_t b0,
                                                                     int64_t b1) {
      const float* x[RX];
      const float* xrow[RX];
      const uint8_t* w[RW];
      const uint8_t* const* wrow = t.w + c0;
      if constexpr (W::kScaled) x_rows(t, r0, xrow);
      for (int r = 0; r < RX; ++r)
        for (int c = 0; c < RW; ++c) lo[r][c] = hi[r][c] = _mm256_setzero_ps();
      int64_t i = b0;
      for (; i + 16 <= b1; i += 16) {
        // Unscaled rows re-derive x from the tile each step (and xrow only in the tail): GCC then
        // keeps reused x vectors in registers (BF16 2 × 2 passes measured ~25 % faster); FP8
        // measured best with the row pointers hoisted.
        if constexpr (W::kScaled) {
          for (int r = 0; r < RX; ++r) x[r] = xrow[r] + i;
        } else {
          x_rows(t, r0, x);
          for (int r = 0; r < RX; ++r) x[r] += i;
        }
        for (int c = 0; c < RW; ++c) w[c] = wrow[c] + W::kBytes * i;
        step(lo, hi, x, w);
      }
      if (i < b1) {
        if constexpr (!W::kScaled) x_rows(t, r0, xrow);
        const auto n = static_cast<size_t>(b1 - i);
        alignas(32) float xt[RX][16] = {};
        alignas(16 * W::kBytes) uint8_t wt[RW][16 * W::kBytes] = {};
        for (int r = 0; r < RX; ++r) {
          std::memcpy(xt[r], xrow[r] + i, n * 4);
          x[r] = xt[r];
        }
        for (int c = 0; c < RW; ++c) {
          std::memcpy(wt[c], wrow[c] + W::kBytes * i, n * W::kBytes);
          w[c] = wt[c];
        }
        step(lo, hi, x, w);
      }
    }

    __attribute__((target("avx2,fma,f16c"))) static void run(const Tile& t, int r0, int c0) {
      __m256 lo[RX][RW], hi[RX][RW];
      if constexpr (!W::kScaled) {
        span(lo, hi, t, r0, c0, 0, t.k);
        for (int r = 0; r < RX; ++r)
          for (int c = 0; c < RW; ++c) t.out[(r0 + r) * t.ldo + c0 + c] = sum8(_mm256_add_ps(lo[r][c], hi[r][c]));
      } else {
        __m256 tot[RX][RW];
        for (int r = 0; r < RX; ++r)
          for (int c = 0; c < RW; ++c) tot[r][c] = _mm256_setzero_ps();
        const int64_t k = t.k, cols = W::block_cols(t);
        for (int64_t b0 = 0, b = 0; b0 < k; b0 += cols, ++b) {
          span(lo, hi, t, r0, c0, b0, std::min(k, b0 + cols));
          for (int c = 0; c < RW; ++c) {
            const __m256 s = _mm256_set1_ps(W::scale(t, c0 + c, b) * W::kSimdScale);
            for (int r = 0; r < RX; ++r) tot[r][c] = _mm256_fmadd_ps(_mm256_add_ps(lo[r][c], hi[r][c]), s, tot[r][c]);
          }
        }
        for (int r = 0; r < RX; ++r)
          for (int c = 0; c < RW; ++c) t.out[(r0 + r) * t.ldo + c0 + c] = sum8(tot[r][c]);
      }
    }
  };
};

#endif  // __x86_64__

// ---- Portable: the same 16 lanes per pair (lane l takes a block's elements l, l + 16, …) and
// the same tree; each weight row is decoded a chunk at a time, once for all the x rows.
inline float sum16_portable(const float* lanes) {
  float v8[8], v4[4];
  for (int l = 0; l < 8; ++l) v8[l] = lanes[l] + lanes[l + 8];
  for (int l = 0; l < 4; ++l) v4[l] = v8[l] + v8[l + 4];
  return (v4[0] + v4[2]) + (v4[1] + v4[3]);
}

template <class W>
void tile_portable(const Tile& t) {
  constexpr int64_t kChunk = 256;  // a multiple of 16: lane = (i − block start) % 16 = i % 16 in a chunk
  float wf[kChunk];
  int64_t cols = t.k;
  if constexpr (W::kScaled) cols = W::block_cols(t);
  for (int c = 0; c < t.nw; ++c) {
    float part[4][16] = {}, tot[4][16] = {};
    for (int64_t b0 = 0, b = 0; b0 < t.k; b0 += cols, ++b) {
      const int64_t b1 = std::min(t.k, b0 + cols);
      std::memset(part, 0, sizeof part);
      for (int64_t i0 = b0; i0 < b1; i0 += kChunk) {
        const int64_t n = std::min(kChunk, b1 - i0);
        W::decode(t.w[c], i0, n, wf);
        for (int r = 0; r < t.nx; ++r) {
          const auto* x = reinterpret_cast<const float*>(t.x + static_cast<size_t>(r) * t.x_stride) + i0;
          for (int64_t i = 0; i < n; ++i) part[r][i % 16] = std::fma(x[i], wf[i], part[r][i % 16]);
        }
      }
      if constexpr (W::kScaled) {
        const float s = W::scale(t, c, b);
        for (int r = 0; r < t.nx; ++r)
          for (int l = 0; l < 16; ++l) tot[r][l] = std::fma(part[r][l], s, tot[r][l]);
      }
    }
    // Unscaled: one block, its lanes are the sum.
    for (int r = 0; r < t.nx; ++r) t.out[r * t.ldo + c] = sum16_portable(W::kScaled ? tot[r] : part[r]);
  }
}

}  // namespace sibyl::backend::cpu::float_tiles
