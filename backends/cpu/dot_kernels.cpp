// Dot products of float32 rows, the CPU backend's hot loop. Every product is summed the
// same way on every path: 16 lanes (lane l takes elements l, l + 16, …), each a chain of
// fused multiply-adds; then the lanes pairwise (l + 8, then + 4, + 2, + 1: a fixed tree that
// vector registers do in four adds), then the tail. AVX-512 (one
// register) and AVX2 (two) therefore give bitwise equal results, and a product never
// depends on the tile it was computed in or the other rows of a batch — the batched
// runtime's determinism rests on it. The path is chosen once, at load, from the CPU.
#include <immintrin.h>

#include <cmath>
#include <cstring>

#include "backends/cpu/kernels.h"

// GCC 12 warns inside its own AVX-512 headers about the intrinsics' unused merge operand.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace sibyl::backend::cpu {
namespace {

constexpr int kLanes = 16;

// The elements past the last full 16 (none for the usual widths).
inline float tail(float s, const float* x, const float* w, int64_t i, int64_t n) {
  if (i == n) return s;
  float t = 0.0f;
  for (; i < n; ++i) t = std::fma(x[i], w[i], t);
  return s + t;
}

// The lane tree from 8 lanes that already hold l + (l + 8): + 4, + 2, + 1.
__attribute__((target("avx2"))) inline float sum8(__m256 v8) {
  const __m128 v4 = _mm_add_ps(_mm256_castps256_ps128(v8), _mm256_extractf128_ps(v8, 1));
  const __m128 v2 = _mm_add_ps(v4, _mm_movehl_ps(v4, v4));
  return _mm_cvtss_f32(_mm_add_ss(v2, _mm_shuffle_ps(v2, v2, 1)));
}

inline float sum16_portable(const float* lanes) {
  float v8[8], v4[4];
  for (int l = 0; l < 8; ++l) v8[l] = lanes[l] + lanes[l + 8];
  for (int l = 0; l < 4; ++l) v4[l] = v8[l] + v8[l + 4];
  return (v4[0] + v4[2]) + (v4[1] + v4[3]);
}

// The lane tree of 16 accumulators at once (the same adds as sum8 of each, in a transposed
// order: 45 shuffles and adds instead of 16 separate trees). Lane 4j + m of the result is
// the sum of a[4m + j].
__attribute__((target("avx512f"))) inline __m512 sum16x16(const __m512* a) {
  __m512 b[8], c[4], d[2];
  for (int k = 0; k < 8; ++k)  // l + (l + 8): lanes 0-7 of a[2k], then of a[2k + 1]
    b[k] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * k], a[2 * k + 1], 0x44),
                         _mm512_shuffle_f32x4(a[2 * k], a[2 * k + 1], 0xEE));
  for (int k = 0; k < 4; ++k)  // + 4: quad q of c[k] holds a[4k + q]
    c[k] = _mm512_add_ps(_mm512_shuffle_f32x4(b[2 * k], b[2 * k + 1], 0x88),
                         _mm512_shuffle_f32x4(b[2 * k], b[2 * k + 1], 0xDD));
  for (int k = 0; k < 2; ++k)  // + 2
    d[k] = _mm512_add_ps(_mm512_shuffle_ps(c[2 * k], c[2 * k + 1], 0x44), _mm512_shuffle_ps(c[2 * k], c[2 * k + 1], 0xEE));
  return _mm512_add_ps(_mm512_shuffle_ps(d[0], d[1], 0x88), _mm512_shuffle_ps(d[0], d[1], 0xDD));  // + 1
}

// ---- AVX-512: RX × RW accumulators of one register each.
template <int RX, int RW>
__attribute__((target("avx512f,fma"))) void tile_avx512(const float* x, int64_t ldx, const float* const* w, int64_t n,
                                                        float* out, int64_t ldo) {
  __m512 acc[RX][RW];
  for (int r = 0; r < RX; ++r)
    for (int c = 0; c < RW; ++c) acc[r][c] = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    __m512 wv[RW];
    for (int c = 0; c < RW; ++c) wv[c] = _mm512_loadu_ps(w[c] + i);
    for (int r = 0; r < RX; ++r) {
      const __m512 xv = _mm512_loadu_ps(x + r * ldx + i);
      for (int c = 0; c < RW; ++c) acc[r][c] = _mm512_fmadd_ps(xv, wv[c], acc[r][c]);
    }
  }
  if constexpr (RX == 4 && RW == 4) {
    if (i == n) {  // no tail: all 16 trees at once, row r's four sums in quad r
      __m512 a[16];
      for (int r = 0; r < 4; ++r)
        for (int c = 0; c < 4; ++c) a[4 * c + r] = acc[r][c];
      const __m512 s = sum16x16(a);
      _mm_storeu_ps(out, _mm512_castps512_ps128(s));
      _mm_storeu_ps(out + ldo, _mm512_extractf32x4_ps(s, 1));
      _mm_storeu_ps(out + 2 * ldo, _mm512_extractf32x4_ps(s, 2));
      _mm_storeu_ps(out + 3 * ldo, _mm512_extractf32x4_ps(s, 3));
      return;
    }
  }
  for (int r = 0; r < RX; ++r)
    for (int c = 0; c < RW; ++c) {
      const __m512 a = acc[r][c];
      const __m256 v8 =
          _mm256_add_ps(_mm512_castps512_ps256(a), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1)));
      out[r * ldo + c] = tail(sum8(v8), x + r * ldx, w[c], i, n);
    }
}

// ---- AVX2 + FMA: the same 16 lanes as two registers.
template <int RX, int RW>
__attribute__((target("avx2,fma"))) void tile_avx2(const float* x, int64_t ldx, const float* const* w, int64_t n,
                                                   float* out, int64_t ldo) {
  __m256 lo[RX][RW], hi[RX][RW];
  for (int r = 0; r < RX; ++r)
    for (int c = 0; c < RW; ++c) lo[r][c] = hi[r][c] = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    __m256 wl[RW], wh[RW];
    for (int c = 0; c < RW; ++c) {
      wl[c] = _mm256_loadu_ps(w[c] + i);
      wh[c] = _mm256_loadu_ps(w[c] + i + 8);
    }
    for (int r = 0; r < RX; ++r) {
      const __m256 xl = _mm256_loadu_ps(x + r * ldx + i), xh = _mm256_loadu_ps(x + r * ldx + i + 8);
      for (int c = 0; c < RW; ++c) {
        lo[r][c] = _mm256_fmadd_ps(xl, wl[c], lo[r][c]);
        hi[r][c] = _mm256_fmadd_ps(xh, wh[c], hi[r][c]);
      }
    }
  }
  for (int r = 0; r < RX; ++r)
    for (int c = 0; c < RW; ++c)
      out[r * ldo + c] = tail(sum8(_mm256_add_ps(lo[r][c], hi[r][c])), x + r * ldx, w[c], i, n);
}

// ---- Portable: the same lanes and order, with fused multiply-adds from libm.
template <int RX, int RW>
void tile_portable(const float* x, int64_t ldx, const float* const* w, int64_t n, float* out, int64_t ldo) {
  for (int r = 0; r < RX; ++r)
    for (int c = 0; c < RW; ++c) {
      float lanes[kLanes] = {};
      int64_t i = 0;
      for (; i + kLanes <= n; i += kLanes)
        for (int l = 0; l < kLanes; ++l) lanes[l] = std::fma(x[r * ldx + i + l], w[c][i + l], lanes[l]);
      out[r * ldo + c] = tail(sum16_portable(lanes), x + r * ldx, w[c], i, n);
    }
}

// bf16 → f32 is a 16-bit shift; the compiler's version of the loop is slow.
void bf16_portable(float* dst, const uint16_t* src, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t bits = static_cast<uint32_t>(src[i]) << 16;
    std::memcpy(dst + i, &bits, 4);
  }
}

__attribute__((target("avx512f"))) void bf16_avx512(float* dst, const uint16_t* src, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512i v = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i)));
    _mm512_storeu_ps(dst + i, _mm512_castsi512_ps(_mm512_slli_epi32(v, 16)));
  }
  bf16_portable(dst + i, src + i, n - i);
}

__attribute__((target("avx2"))) void bf16_avx2(float* dst, const uint16_t* src, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i)));
    _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(_mm256_slli_epi32(v, 16)));
  }
  bf16_portable(dst + i, src + i, n - i);
}

// ---- axpy_rows: every output element is one fused multiply-add chain over t in order, on
// every level (the portable one with libm's fma).
void axpy_rows_portable(float* const* y, const float* a, int64_t lda, int n_y, const float* const* rows,
                        int64_t n_rows, int64_t c0, int64_t n) {
  for (int g = 0; g < n_y; ++g)
    for (int64_t c = c0; c < n; ++c) {
      float acc = y[g][c];
      for (int64_t t = 0; t < n_rows; ++t) acc = std::fma(a[g * lda + t], rows[t][c], acc);
      y[g][c] = acc;
    }
}

// NY heads × NV vectors of columns from c0, held in registers while t runs.
template <int NY, int NV>
__attribute__((target("avx512f,fma"))) void axpy_block_avx512(float* const* y, const float* a, int64_t lda,
                                                              const float* const* rows, int64_t n_rows, int64_t c0) {
  __m512 acc[NY][NV];
  for (int g = 0; g < NY; ++g)
    for (int v = 0; v < NV; ++v) acc[g][v] = _mm512_loadu_ps(y[g] + c0 + v * kLanes);
  for (int64_t t = 0; t < n_rows; ++t) {
    __m512 x[NV];
    for (int v = 0; v < NV; ++v) x[v] = _mm512_loadu_ps(rows[t] + c0 + v * kLanes);
    for (int g = 0; g < NY; ++g) {
      const __m512 ag = _mm512_set1_ps(a[g * lda + t]);
      for (int v = 0; v < NV; ++v) acc[g][v] = _mm512_fmadd_ps(ag, x[v], acc[g][v]);
    }
  }
  for (int g = 0; g < NY; ++g)
    for (int v = 0; v < NV; ++v) _mm512_storeu_ps(y[g] + c0 + v * kLanes, acc[g][v]);
}

template <int NY>
__attribute__((target("avx512f,fma"))) void axpy_rows_avx512_n(float* const* y, const float* a, int64_t lda,
                                                               const float* const* rows, int64_t n_rows, int64_t n) {
  int64_t c0 = 0;
  for (; c0 + 4 * kLanes <= n; c0 += 4 * kLanes) axpy_block_avx512<NY, 4>(y, a, lda, rows, n_rows, c0);
  for (; c0 + kLanes <= n; c0 += kLanes) axpy_block_avx512<NY, 1>(y, a, lda, rows, n_rows, c0);
  axpy_rows_portable(y, a, lda, NY, rows, n_rows, c0, n);
}

__attribute__((target("avx512f,fma"))) void axpy_rows_avx512(float* const* y, const float* a, int64_t lda, int n_y,
                                                             const float* const* rows, int64_t n_rows, int64_t n) {
  switch (n_y) {
    case 1: return axpy_rows_avx512_n<1>(y, a, lda, rows, n_rows, n);
    case 2: return axpy_rows_avx512_n<2>(y, a, lda, rows, n_rows, n);
    case 3: return axpy_rows_avx512_n<3>(y, a, lda, rows, n_rows, n);
    default: return axpy_rows_avx512_n<4>(y, a, lda, rows, n_rows, n);
  }
}

template <int NY>
__attribute__((target("avx2,fma"))) void axpy_rows_avx2_n(float* const* y, const float* a, int64_t lda,
                                                          const float* const* rows, int64_t n_rows, int64_t n) {
  constexpr int NV = 2, W = 8;  // NY·NV accumulators of the 16 registers
  int64_t c0 = 0;
  for (; c0 + NV * W <= n; c0 += NV * W) {
    __m256 acc[NY][NV];
    for (int g = 0; g < NY; ++g)
      for (int v = 0; v < NV; ++v) acc[g][v] = _mm256_loadu_ps(y[g] + c0 + v * W);
    for (int64_t t = 0; t < n_rows; ++t) {
      __m256 x[NV];
      for (int v = 0; v < NV; ++v) x[v] = _mm256_loadu_ps(rows[t] + c0 + v * W);
      for (int g = 0; g < NY; ++g) {
        const __m256 ag = _mm256_set1_ps(a[g * lda + t]);
        for (int v = 0; v < NV; ++v) acc[g][v] = _mm256_fmadd_ps(ag, x[v], acc[g][v]);
      }
    }
    for (int g = 0; g < NY; ++g)
      for (int v = 0; v < NV; ++v) _mm256_storeu_ps(y[g] + c0 + v * W, acc[g][v]);
  }
  axpy_rows_portable(y, a, lda, NY, rows, n_rows, c0, n);
}

__attribute__((target("avx2,fma"))) void axpy_rows_avx2(float* const* y, const float* a, int64_t lda, int n_y,
                                                        const float* const* rows, int64_t n_rows, int64_t n) {
  switch (n_y) {
    case 1: return axpy_rows_avx2_n<1>(y, a, lda, rows, n_rows, n);
    case 2: return axpy_rows_avx2_n<2>(y, a, lda, rows, n_rows, n);
    case 3: return axpy_rows_avx2_n<3>(y, a, lda, rows, n_rows, n);
    default: return axpy_rows_avx2_n<4>(y, a, lda, rows, n_rows, n);
  }
}

void axpy_rows_all_portable(float* const* y, const float* a, int64_t lda, int n_y, const float* const* rows,
                            int64_t n_rows, int64_t n) {
  axpy_rows_portable(y, a, lda, n_y, rows, n_rows, 0, n);
}

using Tile = void (*)(const float*, int64_t, const float* const*, int64_t, float*, int64_t);
using Bf16 = void (*)(float*, const uint16_t*, int64_t);
using AxpyRows = void (*)(float* const*, const float*, int64_t, int, const float* const*, int64_t, int64_t);

struct Kernels {
  Tile t1x1, t1x4, t4x4;
  Bf16 bf16;
  AxpyRows axpy_rows;
};

// AVX2 has 16 registers: its 4 × 4 tile runs as four 2 × 2 tiles (same sums).
__attribute__((target("avx2,fma"))) void avx2_4x4(const float* x, int64_t ldx, const float* const* w, int64_t n,
                                                  float* out, int64_t ldo) {
  for (int r = 0; r < 4; r += 2)
    for (int c = 0; c < 4; c += 2) tile_avx2<2, 2>(x + r * ldx, ldx, w + c, n, out + r * ldo + c, ldo);
}

Kernels pick() {
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma"))
    return {tile_avx512<1, 1>, tile_avx512<1, 4>, tile_avx512<4, 4>, bf16_avx512, axpy_rows_avx512};
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    return {tile_avx2<1, 1>, tile_avx2<1, 4>, avx2_4x4, bf16_avx2, axpy_rows_avx2};
#endif
  return {tile_portable<1, 1>, tile_portable<1, 4>, tile_portable<4, 4>, bf16_portable, axpy_rows_all_portable};
}

const Kernels& kernels() {
  static const Kernels k = pick();
  return k;
}

}  // namespace

float dot(const float* a, const float* b, int64_t n) {
  float out;
  kernels().t1x1(a, 0, &b, n, &out, 0);
  return out;
}

void dot_4x4(const float* x, int64_t ldx, const float* const* w, int64_t n, float* out, int64_t ldo) {
  kernels().t4x4(x, ldx, w, n, out, ldo);
}

void dot_1x4(const float* x, const float* const* w, int64_t n, float* out) { kernels().t1x4(x, 0, w, n, out, 0); }

void bf16_to_f32(float* dst, const uint16_t* src, int64_t n) { kernels().bf16(dst, src, n); }

void axpy_rows(float* const* y, const float* a, int64_t lda, int n_y, const float* const* rows, int64_t n_rows,
               int64_t n) {
  kernels().axpy_rows(y, a, lda, n_y, rows, n_rows, n);
}

}  // namespace sibyl::backend::cpu
