// Q4_K and Q6_K tiles on 8-bit activations (ActFormat::q8_256: one d per 256 values, sums per 16).
//
// Per 256-value block and pair everything is integer until one float step:
//   Q4_K  I = Σ_j sc_j·Σ q·xq   (8 sub-blocks of 32)   M = Σ_j m_j·(s[2j] + s[2j+1])
//         acc = fma(fma(float(I), d, −float(M)·dmin), d_x, acc)
//   Q6_K  I = Σ_i sc_i·Σ q·xq   (16 sub-blocks of 16)  M = Σ_i sc_i·s[i]
//         acc = fma(float(I − 32·M)·d, d_x, acc)
// The integer sums are exact (below 2^31: |I| < 2^28) in whatever order they are added, and
// the float step is the same IEEE operations at every level (vector lanes, or std::fma), so a
// pair's value depends on its two rows only: not on the tile, and not even on the SIMD level.
//
// Levels: AVX-512 VNNI (vpdpbusd: u8 weights × s8 activations, 64 values per instruction; the
// sums of 4 fit int16, so two vectors pack into one and a vpdpwssd applies the sub-block
// scales and accumulates); AVX2 (vpmaddubsw, vpmaddwd by the scales, vpaddd); portable scalar.
// Q4_K codes ≤ 15 and Q6_K codes ≤ 63 times |xq| ≤ 127 cannot saturate vpmaddubsw's int16
// pairs nor vpackssdw's sums of 4. AVX-512 without VNNI uses the AVX2 tiles.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "backends/cpu/fast_kernels.h"
#include "engine/core/unaligned.h"

#if defined(__x86_64__) && defined(__GNUC__)
#define SIBYL_KQUANT_X86 1
#include <immintrin.h>
#endif

// GCC 12 warns inside its own AVX-512 headers about the intrinsics' unused merge operand.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace sibyl::backend::cpu {
namespace {

constexpr int64_t kQK = 256, kQ4KBytes = 144, kQ6KBytes = 210;

// One converted activation row: qs, the per-256 scales, the per-16 sums.
struct Act {
  const int8_t* q;
  const float* d;
  const int16_t* s;
};

inline Act act_row(const Tile& t, int r) {
  const uint8_t* p = t.x + static_cast<size_t>(r) * t.x_stride;
  return {reinterpret_cast<const int8_t*>(p), reinterpret_cast<const float*>(p + t.k),
          reinterpret_cast<const int16_t*>(p + t.k + (t.k / kQK) * 4)};
}

// Weight blocks sit at any 2-byte boundary.
using engine::load_u16;
using engine::load_u32;

// Q4_K's 12 packed bytes → the 8 six-bit scales and mins, byte j = sub-block j (what
// quant.cpp's k4_scale_min gives, four bytes at a time).
inline void q4k_scales(const uint8_t* s, uint64_t& sc, uint64_t& mn) {
  const uint32_t u0 = load_u32(s), u1 = load_u32(s + 4), u2 = load_u32(s + 8);
  const uint32_t sc_hi = (u2 & 0x0f0f0f0fu) | ((u0 >> 2) & 0x30303030u);
  const uint32_t mn_hi = ((u2 >> 4) & 0x0f0f0f0fu) | ((u1 >> 2) & 0x30303030u);
  sc = (u0 & 0x3f3f3f3fu) | static_cast<uint64_t>(sc_hi) << 32;
  mn = (u1 & 0x3f3f3f3fu) | static_cast<uint64_t>(mn_hi) << 32;
}

// ---- The float step of one block; the SIMD tiles do the same operations lane by lane.
inline float q4k_step(float acc, int32_t i, int32_t m, float d, float dmin, float dx) {
  const float t = static_cast<float>(m) * dmin;
  return std::fma(std::fma(static_cast<float>(i), d, -t), dx, acc);
}
inline float q6k_step(float acc, int32_t i, float d, float dx) { return std::fma(static_cast<float>(i) * d, dx, acc); }

// ---- Portable: per block, the activation rows widened to int16 and each weight block unpacked
// to int16 code·scale (|q·sc| ≤ 63·128 fits) once, so a pair's integer part is one 256-long
// int16 dot product (what compilers turn into pmaddwd-like instructions).
inline int32_t dot256(const int16_t* a, const int16_t* b) {
  int32_t s = 0;
  for (int i = 0; i < kQK; ++i) s += a[i] * b[i];
  return s;
}

// One weight block unpacked (constructor: q = code·scale of its 256 values) and its float step
// for one activation row (dot = Σ q·xq, s = the row's 16 sums of the block, dx its scale).
struct Q4kPortable {
  static constexpr int64_t kBytes = kQ4KBytes;
  float d, dmin;
  uint64_t sc, mn;
  Q4kPortable(const uint8_t* blk, int16_t* q)
      : d(engine::f16_to_f32(load_u16(blk))), dmin(engine::f16_to_f32(load_u16(blk + 2))) {
    q4k_scales(blk + 4, sc, mn);
    for (int ch = 0; ch < 4; ++ch) {
      const int s0 = static_cast<int>((sc >> (16 * ch)) & 63), s1 = static_cast<int>((sc >> (16 * ch + 8)) & 63);
      for (int l = 0; l < 32; ++l) {
        q[64 * ch + l] = static_cast<int16_t>((blk[16 + 32 * ch + l] & 15) * s0);
        q[64 * ch + 32 + l] = static_cast<int16_t>((blk[16 + 32 * ch + l] >> 4) * s1);
      }
    }
  }
  float step(float acc, int32_t dot, const int16_t* s, float dx) const {
    int32_t msum = 0;
    for (int j = 0; j < 8; ++j) msum += static_cast<int32_t>((mn >> (8 * j)) & 63) * (s[2 * j] + s[2 * j + 1]);
    return q4k_step(acc, dot, msum, d, dmin, dx);
  }
};

struct Q6kPortable {
  static constexpr int64_t kBytes = kQ6KBytes;
  const int8_t* sc;
  float d;
  Q6kPortable(const uint8_t* blk, int16_t* q)
      : sc(reinterpret_cast<const int8_t*>(blk + 192)), d(engine::f16_to_f32(load_u16(blk + 208))) {
    uint8_t q8[kQK];
    for (int h = 0; h < 2; ++h) {
      const uint8_t* ql = blk + 64 * h;
      const uint8_t* qh = blk + 128 + 32 * h;
      uint8_t* y = q8 + 128 * h;
      for (int l = 0; l < 32; ++l) {
        y[l] = static_cast<uint8_t>((ql[l] & 15) | ((qh[l] & 3) << 4));
        y[l + 32] = static_cast<uint8_t>((ql[l + 32] & 15) | (((qh[l] >> 2) & 3) << 4));
        y[l + 64] = static_cast<uint8_t>((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4));
        y[l + 96] = static_cast<uint8_t>((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4));
      }
    }
    for (int i = 0; i < 16; ++i)
      for (int l = 0; l < 16; ++l) q[16 * i + l] = static_cast<int16_t>(q8[16 * i + l] * sc[i]);
  }
  float step(float acc, int32_t dot, const int16_t* s, float dx) const {
    int32_t msum = 0;
    for (int i = 0; i < 16; ++i) msum += sc[i] * s[i];
    return q6k_step(acc, dot - 32 * msum, d, dx);
  }
};

template <class F>
void portable(const Tile& t) {
  const int64_t nb = t.k / kQK;
  Act x[4];
  float acc[4][4] = {};
  for (int r = 0; r < t.nx; ++r) x[r] = act_row(t, r);
  int16_t xb[4][kQK], q[kQK];
  for (int64_t b = 0; b < nb; ++b) {
    for (int r = 0; r < t.nx; ++r)
      for (int i = 0; i < kQK; ++i) xb[r][i] = x[r].q[b * kQK + i];
    for (int c = 0; c < t.nw; ++c) {
      const F f(t.w[c] + b * F::kBytes, q);
      for (int r = 0; r < t.nx; ++r) acc[r][c] = f.step(acc[r][c], dot256(q, xb[r]), x[r].s + b * 16, x[r].d[b]);
    }
  }
  for (int r = 0; r < t.nx; ++r)
    for (int c = 0; c < t.nw; ++c) t.out[r * t.ldo + c] = acc[r][c];
}

#ifdef SIBYL_KQUANT_X86

#define SIBYL_AVX2 __attribute__((target("avx2,fma,f16c")))
#define SIBYL_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")))

// ---- Shared by the AVX2 and AVX-512 tiles: the per-block step for 4 weights in xmm lanes.

// The blocks' d and dmin (Q4_K, first 4 bytes) as floats; lanes ≥ NW are 0.
template <int NW>
SIBYL_AVX2 inline void q4k_d(const uint8_t* const* blk, __m128& d, __m128& dmin) {
  // Built in registers: four scalar stores read back as one vector would stall on store
  // forwarding once per block.
  __m128i u = _mm_cvtsi32_si128(static_cast<int>(load_u32(blk[0])));
  if constexpr (NW > 1) u = _mm_insert_epi32(u, static_cast<int>(load_u32(blk[1])), 1);
  if constexpr (NW > 2) u = _mm_insert_epi32(u, static_cast<int>(load_u32(blk[2])), 2);
  if constexpr (NW > 3) u = _mm_insert_epi32(u, static_cast<int>(load_u32(blk[3])), 3);
  const __m256 f = _mm256_cvtph_ps(u);
  const __m256 p = _mm256_permutevar8x32_ps(f, _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7));
  d = _mm256_castps256_ps128(p);
  dmin = _mm256_extractf128_ps(p, 1);
}

// The blocks' d (Q6_K, bytes 208–209); lanes ≥ NW are 0.
template <int NW>
SIBYL_AVX2 inline __m128 q6k_d(const uint8_t* const* blk) {
  __m128i u = _mm_cvtsi32_si128(load_u16(blk[0] + 208));
  if constexpr (NW > 1) u = _mm_insert_epi16(u, load_u16(blk[1] + 208), 1);
  if constexpr (NW > 2) u = _mm_insert_epi16(u, load_u16(blk[2] + 208), 2);
  if constexpr (NW > 3) u = _mm_insert_epi16(u, load_u16(blk[3] + 208), 3);
  return _mm_cvtph_ps(u);
}

// [Σ a0, Σ a1, Σ a2, Σ a3 | Σ b0, Σ b1, Σ b2, Σ b3] of eight vectors of 8 int32 (exact).
SIBYL_AVX2 inline __m256i sum4x2(const __m256i* a, const __m256i* b) {
  const __m256i ha = _mm256_hadd_epi32(_mm256_hadd_epi32(a[0], a[1]), _mm256_hadd_epi32(a[2], a[3]));
  const __m256i hb = _mm256_hadd_epi32(_mm256_hadd_epi32(b[0], b[1]), _mm256_hadd_epi32(b[2], b[3]));
  return _mm256_add_epi32(_mm256_permute2x128_si256(ha, hb, 0x20), _mm256_permute2x128_si256(ha, hb, 0x31));
}

// sum4x2 of one activation row's NW pairs (the missing weights count 0).
template <int NW>
SIBYL_AVX2 inline __m256i reduce(const __m256i* isum, const __m256i* msum) {
  __m256i a[4], m[4];
  for (int c = 0; c < 4; ++c) {
    a[c] = c < NW ? isum[c] : _mm256_setzero_si256();
    m[c] = c < NW ? msum[c] : _mm256_setzero_si256();
  }
  return sum4x2(a, m);
}

// q4k_step / q6k_step on 4 pairs (one activation row, 4 weights) at once.
SIBYL_AVX2 inline __m128 q4k_step4(__m128 acc, __m256i im, __m128 d, __m128 dmin, float dx) {
  const __m256 f = _mm256_cvtepi32_ps(im);
  const __m128 t = _mm_mul_ps(_mm256_extractf128_ps(f, 1), dmin);
  return _mm_fmadd_ps(_mm_fmsub_ps(_mm256_castps256_ps128(f), d, t), _mm_set1_ps(dx), acc);
}
SIBYL_AVX2 inline __m128 q6k_step4(__m128 acc, __m256i im, __m128 d, float dx) {
  const __m128i i = _mm256_castsi256_si128(im), m = _mm256_extracti128_si256(im, 1);
  const __m128 f = _mm_cvtepi32_ps(_mm_sub_epi32(i, _mm_slli_epi32(m, 5)));
  return _mm_fmadd_ps(_mm_mul_ps(f, d), _mm_set1_ps(dx), acc);
}

template <int NX, int NW>
SIBYL_AVX2 inline void store(const Tile& t, const __m128* acc) {
  for (int r = 0; r < NX; ++r) {
    alignas(16) float o[4];
    _mm_store_ps(o, acc[r]);
    for (int c = 0; c < NW; ++c) t.out[r * t.ldo + c] = o[c];
  }
}

// The 8 Q4_K mins as int16 pairs [m0, m0, m1, m1, …], for vpmaddwd against the activation's
// 16 sums: lane j = m_j·(s[2j] + s[2j+1]).
SIBYL_AVX2 inline __m256i q4k_mins(uint64_t mn) {
  const __m128i v = _mm_cvtsi64_si128(static_cast<long long>(mn));
  return _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(v, v));
}

// The grouped tile loop (kquant_tiles.h), once per level.
template <int NX>
constexpr int kGroup = 32 / NX;  // blocks per group: 8 KiB of parked vectors

namespace avx2 {
#define SIBYL_KQ_TARGET SIBYL_AVX2
#include "backends/cpu/kquant_tiles.h"
#undef SIBYL_KQ_TARGET
}  // namespace avx2

namespace vnni {
#define SIBYL_KQ_TARGET SIBYL_VNNI
#include "backends/cpu/kquant_tiles.h"
#undef SIBYL_KQ_TARGET
}  // namespace vnni

#define SIBYL_ALWAYS __attribute__((always_inline))

// The formats' part of the loop (both levels): block size and the float step of block b for
// the NX activation rows' NW pairs.
struct Q4kFormat {
  static constexpr int64_t kBytes = kQ4KBytes;
  template <int NX, int NW>
  SIBYL_AVX2 SIBYL_ALWAYS static void step(__m128* acc, const uint8_t* const* blk, const Act* x, int64_t b,
                                           const __m256i (*isum)[NW], const __m256i (*msum)[NW]) {
    __m128 d, dmin;
    q4k_d<NW>(blk, d, dmin);
    for (int r = 0; r < NX; ++r) acc[r] = q4k_step4(acc[r], reduce<NW>(isum[r], msum[r]), d, dmin, x[r].d[b]);
  }
};
struct Q6kFormat {
  static constexpr int64_t kBytes = kQ6KBytes;
  template <int NX, int NW>
  SIBYL_AVX2 SIBYL_ALWAYS static void step(__m128* acc, const uint8_t* const* blk, const Act* x, int64_t b,
                                           const __m256i (*isum)[NW], const __m256i (*msum)[NW]) {
    const __m128 d = q6k_d<NW>(blk);
    for (int r = 0; r < NX; ++r) acc[r] = q6k_step4(acc[r], reduce<NW>(isum[r], msum[r]), d, x[r].d[b]);
  }
};

// ---- AVX2. The block code (K in kquant_tiles.h) of each format.
struct Q4kAvx2 : Q4kFormat {
  __m256i nib;
  SIBYL_AVX2 SIBYL_ALWAYS Q4kAvx2() : nib(_mm256_set1_epi8(0x0f)) {}
  template <int NX>
  SIBYL_AVX2 SIBYL_ALWAYS __m256i block(const uint8_t* p, const Act* x, int64_t b, __m256i* ai) const {
    uint64_t sc, mn;
    q4k_scales(p + 4, sc, mn);
    const __m256i sc16 = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(static_cast<long long>(sc))));
    for (int r = 0; r < NX; ++r) ai[r] = _mm256_setzero_si256();
#pragma GCC unroll 4
    for (int ch = 0; ch < 4; ++ch) {
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 16 + 32 * ch));
      const __m256i lo = _mm256_and_si256(v, nib), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), nib);
      // Scale of sub-block 2ch (low nibbles) and 2ch+1 (high), in every int16 lane.
      const __m256i slo = _mm256_shuffle_epi8(sc16, _mm256_set1_epi16(static_cast<short>((4 * ch + 1) << 8 | 4 * ch)));
      const __m256i shi =
          _mm256_shuffle_epi8(sc16, _mm256_set1_epi16(static_cast<short>((4 * ch + 3) << 8 | (4 * ch + 2))));
      for (int r = 0; r < NX; ++r) {
        const int8_t* xq = x[r].q + b * kQK + 64 * ch;
        const __m256i plo = _mm256_maddubs_epi16(lo, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq)));
        const __m256i phi = _mm256_maddubs_epi16(hi, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + 32)));
        ai[r] = _mm256_add_epi32(ai[r], _mm256_add_epi32(_mm256_madd_epi16(plo, slo), _mm256_madd_epi16(phi, shi)));
      }
    }
    return q4k_mins(mn);
  }
};

struct Q6kAvx2 : Q6kFormat {
  __m256i nib, hi2;
  SIBYL_AVX2 SIBYL_ALWAYS Q6kAvx2() : nib(_mm256_set1_epi8(0x0f)), hi2(_mm256_set1_epi8(0x30)) {}
  template <int NX>
  SIBYL_AVX2 SIBYL_ALWAYS __m256i block(const uint8_t* p, const Act* x, int64_t b, __m256i* ai) const {
    const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 192)));
    // Scales 8h…8h+7 of half h in both 128-bit lanes.
    const __m256i sch[2] = {_mm256_permute2x128_si256(sc16, sc16, 0x00), _mm256_permute2x128_si256(sc16, sc16, 0x11)};
    for (int r = 0; r < NX; ++r) ai[r] = _mm256_setzero_si256();
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
      const __m256i l0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 64 * h));
      const __m256i l1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 64 * h + 32));
      const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 128 + 32 * h));
      // Values 128h + 32i …: low / high nibbles of ql, bits 2i, 2i+1 of qh as bits 4, 5.
      __m256i v[4];
      v[0] = _mm256_or_si256(_mm256_and_si256(l0, nib), _mm256_and_si256(_mm256_slli_epi16(qh, 4), hi2));
      v[1] = _mm256_or_si256(_mm256_and_si256(l1, nib), _mm256_and_si256(_mm256_slli_epi16(qh, 2), hi2));
      v[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), nib), _mm256_and_si256(qh, hi2));
      v[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), nib),
                             _mm256_and_si256(_mm256_srli_epi16(qh, 2), hi2));
#pragma GCC unroll 4
      for (int i = 0; i < 4; ++i) {
        const __m256i pick = _mm256_setr_m128i(_mm_set1_epi16(static_cast<short>((4 * i + 1) << 8 | 4 * i)),
                                               _mm_set1_epi16(static_cast<short>((4 * i + 3) << 8 | (4 * i + 2))));
        const __m256i s = _mm256_shuffle_epi8(sch[h], pick);  // sub-block 8h+2i (low lane), 8h+2i+1
        for (int r = 0; r < NX; ++r) {
          const int8_t* xq = x[r].q + b * kQK + 128 * h + 32 * i;
          const __m256i pr = _mm256_maddubs_epi16(v[i], _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq)));
          ai[r] = _mm256_add_epi32(ai[r], _mm256_madd_epi16(pr, s));
        }
      }
    }
    return sc16;
  }
};

// ---- AVX-512 VNNI. Per 128 values and activation row: two vpdpbusd (int32 sums of 4 products),
// one vpackssdw, one vpdpwssd against the scales (int16, one per 4 sums) — 3 multiplies where
// vpmaddubsw + vpdpwssd take 4, and one scale vector per 128 values instead of per 64.

// vpermw indices of those scale vectors. Q4_K, chunks 2P and 2P+1 packed: 128-bit lane L holds
// 4 sums of sub-block 4P + L/2, then 4 of 4P + 2 + L/2. Q6_K, half h's two vectors packed:
// lane L holds 4 sums of sub-block 8h + L, then 4 of 8h + 4 + L.
struct Picks {
  alignas(64) int16_t idx[2][32];
};
constexpr Picks make_picks(bool q6) {
  Picks p{};
  for (int h = 0; h < 2; ++h)
    for (int l = 0; l < 32; ++l)
      p.idx[h][l] =
          static_cast<int16_t>(q6 ? 8 * h + l / 8 + (l % 8 < 4 ? 0 : 4) : 4 * h + l / 16 + (l % 8 < 4 ? 0 : 2));
  return p;
}
constexpr Picks kQ4kPicks = make_picks(false), kQ6kPicks = make_picks(true);

SIBYL_VNNI inline __m256i fold(__m512i v) {
  return _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
}

// 128 values (w0: the first 64, w1: the next) against each activation row's from `off`, the
// sums of 4 packed and scaled by s into a[r].
template <int NX>
SIBYL_VNNI SIBYL_ALWAYS inline void dot128(__m512i* a, __m512i w0, __m512i w1, __m512i s, const Act* x, int64_t off) {
  for (int r = 0; r < NX; ++r) {
    const int8_t* xq = x[r].q + off;
    const __m512i t0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w0, _mm512_loadu_si512(xq));
    const __m512i t1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w1, _mm512_loadu_si512(xq + 64));
    a[r] = _mm512_dpwssd_epi32(a[r], _mm512_packs_epi32(t0, t1), s);
  }
}

struct Q4kVnni : Q4kFormat {
  __m512i nib, pick[2];
  SIBYL_VNNI SIBYL_ALWAYS Q4kVnni()
      : nib(_mm512_set1_epi8(0x0f)), pick{_mm512_load_si512(kQ4kPicks.idx[0]), _mm512_load_si512(kQ4kPicks.idx[1])} {}
  template <int NX>
  SIBYL_VNNI SIBYL_ALWAYS __m256i block(const uint8_t* p, const Act* x, int64_t b, __m256i* ai) const {
    uint64_t sc, mn;
    q4k_scales(p + 4, sc, mn);
    const __m512i sc16 = _mm512_broadcast_i32x4(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(static_cast<long long>(sc))));
    __m512i a[NX];
    for (int r = 0; r < NX; ++r) a[r] = _mm512_setzero_si512();
#pragma GCC unroll 2
    for (int P = 0; P < 2; ++P) {
      // [low nibbles | high nibbles] of a chunk's 32 bytes = its 64 values in order.
      __m512i w0 = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 16 + 64 * P)));
      __m512i w1 = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 48 + 64 * P)));
      w0 = _mm512_and_si512(_mm512_mask_srli_epi16(w0, 0xFFFF0000u, w0, 4), nib);
      w1 = _mm512_and_si512(_mm512_mask_srli_epi16(w1, 0xFFFF0000u, w1, 4), nib);
      const __m512i s = _mm512_permutexvar_epi16(pick[P], sc16);
      dot128<NX>(a, w0, w1, s, x, b * kQK + 128 * P);
    }
    for (int r = 0; r < NX; ++r) ai[r] = fold(a[r]);
    return q4k_mins(mn);
  }
};

struct Q6kVnni : Q6kFormat {
  __m512i nib, hi2, shl, shr, pick[2];
  // qh bits 2i, 2i+1 to bits 4, 5: the low 32 values of a half take i = 0 (left 4), the next
  // 32 i = 1 (left 2); of the high-nibble 64, i = 2 (as is), i = 3 (right 2).
  SIBYL_VNNI SIBYL_ALWAYS Q6kVnni()
      : nib(_mm512_set1_epi8(0x0f)),
        hi2(_mm512_set1_epi8(0x30)),
        shl(_mm512_setr_epi64(4, 4, 4, 4, 2, 2, 2, 2)),
        shr(_mm512_setr_epi64(0, 0, 0, 0, 2, 2, 2, 2)),
        pick{_mm512_load_si512(kQ6kPicks.idx[0]), _mm512_load_si512(kQ6kPicks.idx[1])} {}
  template <int NX>
  SIBYL_VNNI SIBYL_ALWAYS __m256i block(const uint8_t* p, const Act* x, int64_t b, __m256i* ai) const {
    const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 192)));
    const __m512i scz = _mm512_broadcast_i64x4(sc16);
    __m512i a[NX];
    for (int r = 0; r < NX; ++r) a[r] = _mm512_setzero_si512();
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
      const __m512i ql = _mm512_loadu_si512(p + 64 * h);
      const __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 128 + 32 * h)));
      // a | (b & c), c = 0x30: the two high bits over the nibble.
      const __m512i w0 = _mm512_ternarylogic_epi32(_mm512_and_si512(ql, nib), _mm512_sllv_epi64(qh, shl), hi2, 0xF8);
      const __m512i w1 = _mm512_ternarylogic_epi32(_mm512_and_si512(_mm512_srli_epi16(ql, 4), nib),
                                                   _mm512_srlv_epi64(qh, shr), hi2, 0xF8);
      const __m512i s = _mm512_permutexvar_epi16(pick[h], scz);
      dot128<NX>(a, w0, w1, s, x, b * kQK + 128 * h);
    }
    for (int r = 0; r < NX; ++r) ai[r] = fold(a[r]);
    return sc16;
  }
};

// Q4_K for 2–4 activation rows: the tile's 4 weights side by side, one per 128-bit lane (lane c:
// 16 values of weight c), against each activation row's 16 values broadcast to all lanes. Per
// 32-value sub-block and row, two chained vpdpbusd leave 4 int32 sums of 8 (|·| ≤ 8·15·128 fits
// int16) per weight; one vpackssdw + one vpdpwssd per two sub-blocks applies the scales for all 4
// weights at once, and two vpdpwssd per block the mins. A pair's integer sums end as 4 lanes of
// its weight's 128-bit lane, reduced for all 16 pairs together, and the float step runs on the
// 16 pairs (lane 4c + r) as one vector: the same integers and IEEE operations as Q4kVnni.
SIBYL_VNNI inline __m512i q4k_lanes16(const uint8_t* const* p, int off) {
  __m512i v = _mm512_castsi128_si512(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p[0] + off)));
  v = _mm512_inserti32x4(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(p[1] + off)), 1);
  v = _mm512_inserti32x4(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(p[2] + off)), 2);
  return _mm512_inserti32x4(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(p[3] + off)), 3);
}
SIBYL_VNNI inline __m512i bcast16(const int8_t* p) {
  return _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
SIBYL_VNNI inline __m512i bcast16(const int16_t* p) {
  return _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

struct Q4kVnniT {
  template <int NX, int NW>
  SIBYL_VNNI static void run(const Tile& t) {
    const int64_t nb = t.k / kQK;
    const __m512i nib = _mm512_set1_epi8(0x0f);
    const __m512i zero = _mm512_setzero_si512();
    // Lane c of chunk ch's scale vector: int16 [sc_2ch ×4, sc_2ch+1 ×4].
    __m512i spick[4];
    for (int ch = 0; ch < 4; ++ch) {
      const int64_t a = (4 * ch) | (4 * ch + 1) << 8, h = (4 * ch + 2) | (4 * ch + 3) << 8;
      const int64_t lo = a | a << 16 | a << 32 | a << 48, hi = h | h << 16 | h << 32 | h << 48;
      spick[ch] = _mm512_broadcast_i32x4(_mm_set_epi64x(hi, lo));
    }
    const __m512i lane_c = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    Act x[NX];
    for (int r = 0; r < NX; ++r) x[r] = act_row(t, r);
    __m512 acc = _mm512_setzero_ps();
    const uint8_t* w[4];
    for (int c = 0; c < 4; ++c) w[c] = t.w[c < NW ? c : 0];
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* p[4];
      for (int c = 0; c < 4; ++c) p[c] = w[c] + b * kQ4KBytes;
      uint64_t sc[4], mn[4];
      for (int c = 0; c < 4; ++c) q4k_scales(p[c] + 4, sc[c], mn[c]);
      const __m512i sc16 = _mm512_cvtepu8_epi16(_mm256_setr_epi64x(static_cast<long long>(sc[0]), static_cast<long long>(sc[1]),
                                                                   static_cast<long long>(sc[2]), static_cast<long long>(sc[3])));
      const __m512i mn16 = _mm512_cvtepu8_epi16(_mm256_setr_epi64x(static_cast<long long>(mn[0]), static_cast<long long>(mn[1]),
                                                                   static_cast<long long>(mn[2]), static_cast<long long>(mn[3])));
      const __m512i mlo = _mm512_unpacklo_epi16(mn16, mn16), mhi = _mm512_unpackhi_epi16(mn16, mn16);
      __m512i ai[4], am[4];
      for (int r = 0; r < 4; ++r) ai[r] = am[r] = zero;
#pragma GCC unroll 4
      for (int ch = 0; ch < 4; ++ch) {
        const __m512i va = q4k_lanes16(p, 16 + 32 * ch), vb = q4k_lanes16(p, 32 + 32 * ch);
        const __m512i la = _mm512_and_si512(va, nib), lb = _mm512_and_si512(vb, nib);
        const __m512i ha = _mm512_and_si512(_mm512_srli_epi16(va, 4), nib);
        const __m512i hb = _mm512_and_si512(_mm512_srli_epi16(vb, 4), nib);
        const __m512i s = _mm512_shuffle_epi8(sc16, spick[ch]);
        for (int r = 0; r < NX; ++r) {
          const int8_t* xq = x[r].q + b * kQK + 64 * ch;
          const __m512i lo = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(zero, la, bcast16(xq)), lb, bcast16(xq + 16));
          const __m512i hi = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(zero, ha, bcast16(xq + 32)), hb, bcast16(xq + 48));
          ai[r] = _mm512_dpwssd_epi32(ai[r], _mm512_packs_epi32(lo, hi), s);
        }
      }
      for (int r = 0; r < NX; ++r) {
        const int16_t* xs = x[r].s + b * 16;
        am[r] = _mm512_dpwssd_epi32(_mm512_dpwssd_epi32(zero, mlo, bcast16(xs)), mhi, bcast16(xs + 8));
      }
      // Lane c of I (M): [pair (0,c), (1,c), (2,c), (3,c)].
      const __m512i i01 = _mm512_add_epi32(_mm512_unpacklo_epi32(ai[0], ai[1]), _mm512_unpackhi_epi32(ai[0], ai[1]));
      const __m512i i23 = _mm512_add_epi32(_mm512_unpacklo_epi32(ai[2], ai[3]), _mm512_unpackhi_epi32(ai[2], ai[3]));
      const __m512i m01 = _mm512_add_epi32(_mm512_unpacklo_epi32(am[0], am[1]), _mm512_unpackhi_epi32(am[0], am[1]));
      const __m512i m23 = _mm512_add_epi32(_mm512_unpacklo_epi32(am[2], am[3]), _mm512_unpackhi_epi32(am[2], am[3]));
      const __m512i I = _mm512_add_epi32(_mm512_unpacklo_epi64(i01, i23), _mm512_unpackhi_epi64(i01, i23));
      const __m512i M = _mm512_add_epi32(_mm512_unpacklo_epi64(m01, m23), _mm512_unpackhi_epi64(m01, m23));
      __m128 d4, dmin4;
      q4k_d<4>(p, d4, dmin4);
      const __m512 d = _mm512_permutexvar_ps(lane_c, _mm512_castps128_ps512(d4));
      const __m512 dmin = _mm512_permutexvar_ps(lane_c, _mm512_castps128_ps512(dmin4));
      __m128 dx4 = _mm_setzero_ps();
      if constexpr (NX > 0) dx4 = _mm_insert_ps(dx4, _mm_load_ss(x[0].d + b), 0x00);
      if constexpr (NX > 1) dx4 = _mm_insert_ps(dx4, _mm_load_ss(x[1].d + b), 0x10);
      if constexpr (NX > 2) dx4 = _mm_insert_ps(dx4, _mm_load_ss(x[2].d + b), 0x20);
      if constexpr (NX > 3) dx4 = _mm_insert_ps(dx4, _mm_load_ss(x[3].d + b), 0x30);
      const __m512 dx = _mm512_broadcast_f32x4(dx4);
      const __m512 tm = _mm512_mul_ps(_mm512_cvtepi32_ps(M), dmin);
      acc = _mm512_fmadd_ps(_mm512_fmsub_ps(_mm512_cvtepi32_ps(I), d, tm), dx, acc);
    }
    alignas(64) float o[16];
    _mm512_store_ps(o, acc);
    for (int r = 0; r < NX; ++r)
      for (int c = 0; c < NW; ++c) t.out[r * t.ldo + c] = o[4 * c + r];
  }
};

// nx = 1 keeps Q4kVnni's row-by-row stretches (decode streams weights); 2–4 rows go side by side.
struct Q4kVnniMix {
  template <int NX, int NW>
  SIBYL_VNNI static void run(const Tile& t) {
    if constexpr (NX == 1)
      vnni::Grouped<Q4kVnni>::run<NX, NW>(t);
    else
      Q4kVnniT::run<NX, NW>(t);
  }
};

// ---- The tile shape → its instantiation.
template <class K, int NX>
void dispatch_nw(const Tile& t) {
  switch (t.nw) {
    case 1:
      return K::template run<NX, 1>(t);
    case 2:
      return K::template run<NX, 2>(t);
    case 3:
      return K::template run<NX, 3>(t);
    default:
      return K::template run<NX, 4>(t);
  }
}

template <class K>
void dispatch(const Tile& t) {
  switch (t.nx) {
    case 1:
      return dispatch_nw<K, 1>(t);
    case 2:
      return dispatch_nw<K, 2>(t);
    case 3:
      return dispatch_nw<K, 3>(t);
    default:
      return dispatch_nw<K, 4>(t);
  }
}

#endif  // SIBYL_KQUANT_X86

}  // namespace

FastKernel q4_k_kernel() {
#ifdef SIBYL_KQUANT_X86
  if (simd_has(SimdLevel::avx512_vnni)) return {ActFormat::q8_256, dispatch<Q4kVnniMix>};
  if (simd_has(SimdLevel::avx2)) return {ActFormat::q8_256, dispatch<avx2::Grouped<Q4kAvx2>>};
#endif
  return {ActFormat::q8_256, portable<Q4kPortable>};
}

FastKernel q6_k_kernel() {
#ifdef SIBYL_KQUANT_X86
  if (simd_has(SimdLevel::avx512_vnni)) return {ActFormat::q8_256, dispatch<vnni::Grouped<Q6kVnni>>};
  if (simd_has(SimdLevel::avx2)) return {ActFormat::q8_256, dispatch<avx2::Grouped<Q6kAvx2>>};
#endif
  return {ActFormat::q8_256, portable<Q6kPortable>};
}

}  // namespace sibyl::backend::cpu
