// Q8_0 and Q5_0 fast tiles: integer dot products of the stored 32-value weight blocks with
// q8_32 activations, then one float scale d_w·d_x per block.
//
// How one pair (activation row, weight row) is summed, per level; the same in every tile
// shape, so a pair's bits never depend on the tile (fast_kernels.h):
//   avx512_vnni  two blocks per step: 16 int32 lanes (8 per block, each the exact sum of 4
//                products) → float, times the lane's block scale, fused into one 16-lane
//                accumulator; an odd last block runs in the low half (the high half adds
//                0). The lanes are then summed in a fixed tree.
//   avx2         (also avx512 without VNNI) one block per step: 8 int32 lanes into an
//                8-lane accumulator the same way.
//   portable     the block's exact integer sum s, then acc = fma(s, d_w·d_x, acc).
// The scale is always the one float product d_w·d_x, however a kernel spreads it over lanes.
//
// The small per-tile loops carry `#pragma GCC unroll`: without it GCC keeps some of the
// register arrays in memory and the tiles run at half speed.
#include <array>
#include <cmath>
#include <cstring>
#include <utility>

#include "backends/cpu/fast_kernels.h"
#include "engine/core/unaligned.h"

#if defined(__x86_64__)
#define SIBYL_TILES_X86 1
#include <immintrin.h>
#if !defined(__clang__)
// GCC 12 warns inside its own AVX-512 headers about the intrinsics' unused merge operand.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#define SIBYL_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,f16c,fma")))
#define SIBYL_AVX2 __attribute__((target("avx2,fma,f16c")))
#endif

namespace sibyl::backend::cpu {
namespace {

using engine::load_u16;
using engine::load_u32;

// Activation row r of a tile (q8_32): its int8 values and its per-block scales.
inline const int8_t* act_qs(const Tile& t, int r) {
  return reinterpret_cast<const int8_t*>(t.x + static_cast<size_t>(r) * t.x_stride);
}
inline const float* act_d(const Tile& t, int r) {
  return reinterpret_cast<const float*>(t.x + static_cast<size_t>(r) * t.x_stride + t.k);
}

// ---------------------------------------------------------------- the block formats
// Each gives its 32 values signed (portable), as maddubs operands (AVX2), and as unsigned
// bytes u = value + kOffset for vpdpbusd (AVX-512; the kernel takes kOffset·Σx back off).

struct Q8 {
  static constexpr size_t kBytes = 34;  // f16 d, int8 q[32]
  static void values(const uint8_t* blk, int8_t* v) { std::memcpy(v, blk + 2, 32); }
#ifdef SIBYL_TILES_X86
  static constexpr int kOffset = 128;  // q ^ 0x80
  template <bool Two>
  SIBYL_VNNI static __m512i vnni(const uint8_t* blk) {
    const __m256i q0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 2));
    const __m256i q1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + (Two ? kBytes : 0) + 2));
    return _mm512_xor_si512(_mm512_inserti64x4(_mm512_castsi256_si512(q0), q1, 1), _mm512_set1_epi8(-128));
  }
  // maddubs wants an unsigned operand: |q|·sign(x, q) (an offset q + 128 would saturate).
  struct Avx2W {
    __m256i abs, q;
  };
  SIBYL_AVX2 static Avx2W avx2_weight(const uint8_t* blk) {
    const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 2));
    return {_mm256_abs_epi8(q), q};
  }
  SIBYL_AVX2 static __m256i avx2_xfix(__m256i) { return _mm256_setzero_si256(); }
  SIBYL_AVX2 static __m256i avx2_pairs(const Avx2W& w, __m256i x, __m256i) {
    return _mm256_maddubs_epi16(w.abs, _mm256_sign_epi8(x, w.q));  // |pair| ≤ 2·128·127
  }
#endif
};

struct Q5 {
  static constexpr size_t kBytes = 22;  // f16 d, u32 qh, u8 qs[16]; value = q − 16
  // Eight values at a time in a uint64 (a bit loop per value is 3× slower than the exact path).
  static void values(const uint8_t* blk, int8_t* v) {
    static const auto fifth = [] {  // byte i = 16 where bit i of the index is set
      std::array<std::array<uint8_t, 8>, 256> t{};
      for (int b = 0; b < 256; ++b)
        for (int i = 0; i < 8; ++i) t[b][i] = static_cast<uint8_t>(((b >> i) & 1) << 4);
      return t;
    }();
    constexpr uint64_t nib = 0x0f0f0f0f0f0f0f0full, top = 0x8080808080808080ull, sixteen = 0x1010101010101010ull;
    const uint32_t qh = load_u32(blk + 2);
    uint64_t qs[2];
    std::memcpy(qs, blk + 6, 16);
    const uint64_t low[4] = {qs[0] & nib, qs[1] & nib, (qs[0] >> 4) & nib, (qs[1] >> 4) & nib};
    for (int g = 0; g < 4; ++g) {
      uint64_t hi;
      std::memcpy(&hi, fifth[(qh >> (8 * g)) & 255].data(), 8);
      const uint64_t q = ((low[g] | hi | top) - sixteen) ^ top;  // q − 16 per byte, no borrow across
      std::memcpy(v + 8 * g, &q, 8);
    }
  }
#ifdef SIBYL_TILES_X86
  static constexpr int kOffset = 16;  // q itself
  // Byte i of a block (low nibbles, then high ones) is value i, whose fifth bit is bit i of qh.
  template <bool Two>
  SIBYL_VNNI static __m512i vnni(const uint8_t* blk) {
    const uint8_t* b1 = blk + (Two ? kBytes : 0);
    const __m256i s0 = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 6)));
    const __m256i s1 = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b1 + 6)));
    __m512i q = _mm512_inserti64x4(_mm512_castsi256_si512(s0), s1, 1);  // qs0 qs0 qs1 qs1
    q = _mm512_and_si512(_mm512_mask_srli_epi16(q, 0xff00ff00u, q, 4), _mm512_set1_epi8(15));
    const uint64_t qh = load_u32(blk + 2) | static_cast<uint64_t>(load_u32(b1 + 2)) << 32;
    return _mm512_mask_add_epi8(q, _cvtu64_mask64(qh), q, _mm512_set1_epi8(16));
  }
  // q (0…31) is already unsigned: maddubs(q, x) − maddubs(16, x) per pair of bytes.
  struct Avx2W {
    __m256i q;
  };
  SIBYL_AVX2 static Avx2W avx2_weight(const uint8_t* blk) {
    const __m128i qs = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 6));
    const __m256i nib =
        _mm256_and_si256(_mm256_inserti128_si256(_mm256_castsi128_si256(qs), _mm_srli_epi16(qs, 4), 1),
                         _mm256_set1_epi8(15));
    // Byte i takes byte i/8 of qh, then tests bit i%8.
    const __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(load_u32(blk + 2))),
                                               _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2,
                                                                2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
    const __m256i bit = _mm256_set1_epi64x(0x8040201008040201);
    const __m256i high = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
    return {_mm256_or_si256(nib, _mm256_and_si256(high, _mm256_set1_epi8(16)))};
  }
  SIBYL_AVX2 static __m256i avx2_xfix(__m256i x) { return _mm256_maddubs_epi16(_mm256_set1_epi8(16), x); }
  SIBYL_AVX2 static __m256i avx2_pairs(const Avx2W& w, __m256i x, __m256i xfix) {
    return _mm256_sub_epi16(_mm256_maddubs_epi16(w.q, x), xfix);  // |pair| ≤ 2·31·127
  }
#endif
};

// ---------------------------------------------------------------- portable

template <class Q>
struct Portable {
  template <int NX, int NW>
  static void tile(const Tile& t) {
    float acc[NX][NW] = {};
    int8_t v[NW][32];
    float dw[NW];
    for (int64_t b = 0; b < t.k / 32; ++b) {
      for (int c = 0; c < NW; ++c) {
        const uint8_t* blk = t.w[c] + static_cast<size_t>(b) * Q::kBytes;
        Q::values(blk, v[c]);
        dw[c] = engine::f16_to_f32(load_u16(blk));
      }
      for (int r = 0; r < NX; ++r) {
        const int8_t* x = act_qs(t, r) + b * 32;
        const float dx = act_d(t, r)[b];
        for (int c = 0; c < NW; ++c) {
          int32_t s = 0;
          for (int i = 0; i < 32; ++i) s += x[i] * v[c][i];
          acc[r][c] = std::fma(static_cast<float>(s), dw[c] * dx, acc[r][c]);
        }
      }
    }
    for (int r = 0; r < NX; ++r)
      for (int c = 0; c < NW; ++c) t.out[r * t.ldo + c] = acc[r][c];
  }
};

#ifdef SIBYL_TILES_X86

// Decode streams the weight rows from memory: asking for them this many bytes ahead keeps
// more in flight than the hardware prefetcher alone (+5…15% when memory-bound).
constexpr int kPrefetch = 512;

// ---------------------------------------------------------------- AVX2

// 8 lanes → 1: + 4, + 2, + 1.
SIBYL_AVX2 inline float sum8(__m256 v8) {
  const __m128 v4 = _mm_add_ps(_mm256_castps256_ps128(v8), _mm256_extractf128_ps(v8, 1));
  const __m128 v2 = _mm_add_ps(v4, _mm_movehl_ps(v4, v4));
  return _mm_cvtss_f32(_mm_add_ss(v2, _mm_shuffle_ps(v2, v2, 1)));
}

template <class Q>
struct Avx2 {
  template <int NX, int NW>
  SIBYL_AVX2 static void tile(const Tile& t) {
    if constexpr (NX == 1) {
      // One weight row after the other (one sequential run of memory, see Vnni::tile), with
      // the same operations per pair as the 4-row step below.
      const int8_t* xq = act_qs(t, 0);
      const float* xd = act_d(t, 0);
      const __m256i ones = _mm256_set1_epi16(1);
#pragma GCC unroll 1
      for (int c = 0; c < NW; ++c) {
        __m256 acc = _mm256_setzero_ps();
        for (int64_t b = 0; b < t.k / 32; ++b) {
          const uint8_t* blk = t.w[c] + static_cast<size_t>(b) * Q::kBytes;
          _mm_prefetch(reinterpret_cast<const char*>(blk) + kPrefetch, _MM_HINT_T0);
          const typename Q::Avx2W w = Q::avx2_weight(blk);
          const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + b * 32));
          const __m128 s = _mm_mul_ps(_mm_cvtph_ps(_mm_cvtsi32_si128(load_u16(blk))), _mm_load_ss(xd + b));
          const __m256i lanes = _mm256_madd_epi16(Q::avx2_pairs(w, x, Q::avx2_xfix(x)), ones);
          acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(lanes), _mm256_broadcastss_ps(s), acc);
        }
        t.out[c] = sum8(acc);
      }
    } else if constexpr (NX * NW > 8) {
      // 16 registers: at most 8 accumulators per pass (a 4 × 4 tile runs as two 4 × 2).
      Tile right = t;
      for (int c = 2; c < NW; ++c) right.w[c - 2] = t.w[c];
      right.out = t.out + 2;
      tile<NX, 2>(t);
      tile<NX, NW - 2>(right);
    } else {
      __m256 acc[NX][NW];
#pragma GCC unroll 4
      for (int r = 0; r < NX; ++r)
#pragma GCC unroll 4
        for (int c = 0; c < NW; ++c) acc[r][c] = _mm256_setzero_ps();
      const __m256i ones = _mm256_set1_epi16(1);
      for (int64_t b = 0; b < t.k / 32; ++b) {
        typename Q::Avx2W w[NW];
        __m256 dw[NW];   // several rows: each d_w broadcast once, one multiply per pair
        uint64_t h = 0;  // one row: all d_w as halves, converted and scaled together
#pragma GCC unroll 4
        for (int c = 0; c < NW; ++c) {
          const uint8_t* blk = t.w[c] + static_cast<size_t>(b) * Q::kBytes;
          _mm_prefetch(reinterpret_cast<const char*>(blk) + kPrefetch, _MM_HINT_T0);
          w[c] = Q::avx2_weight(blk);
          if constexpr (NX == 1)
            h |= static_cast<uint64_t>(load_u16(blk)) << (16 * c);
          else
            dw[c] = _mm256_broadcastss_ps(_mm_cvtph_ps(_mm_cvtsi32_si128(load_u16(blk))));
        }
#pragma GCC unroll 4
        for (int r = 0; r < NX; ++r) {
          const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(act_qs(t, r) + b * 32));
          const __m256i xfix = Q::avx2_xfix(x);
          __m256 s8;
          if constexpr (NX == 1) {
            const __m128 s4 = _mm_mul_ps(_mm_cvtph_ps(_mm_cvtsi64_si128(static_cast<long long>(h))),
                                         _mm_broadcast_ss(act_d(t, r) + b));
            s8 = _mm256_set_m128(s4, s4);
          } else {
            s8 = _mm256_broadcast_ss(act_d(t, r) + b);
          }
#pragma GCC unroll 4
          for (int c = 0; c < NW; ++c) {
            const __m256i lanes = _mm256_madd_epi16(Q::avx2_pairs(w[c], x, xfix), ones);
            __m256 scale;
            if constexpr (NX == 1)
              scale = _mm256_permutevar_ps(s8, _mm256_set1_epi32(c));
            else
              scale = _mm256_mul_ps(dw[c], s8);
            acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(lanes), scale, acc[r][c]);
          }
        }
      }
#pragma GCC unroll 4
      for (int r = 0; r < NX; ++r)
#pragma GCC unroll 4
        for (int c = 0; c < NW; ++c) t.out[r * t.ldo + c] = sum8(acc[r][c]);
    }
  }
};

// ---------------------------------------------------------------- AVX-512 VNNI

// 16 lanes → 1: + 8, then as sum8.
SIBYL_VNNI inline float sum16(__m512 a) {
  const __m256 v8 = _mm256_add_ps(_mm512_castps512_ps256(a), _mm512_extractf32x8_ps(a, 1));
  const __m128 v4 = _mm_add_ps(_mm256_castps256_ps128(v8), _mm256_extractf128_ps(v8, 1));
  const __m128 v2 = _mm_add_ps(v4, _mm_movehl_ps(v4, v4));
  return _mm_cvtss_f32(_mm_add_ss(v2, _mm_shuffle_ps(v2, v2, 1)));
}

template <class Q>
struct Vnni {
  // One step over blocks b, b + 1 (Two) or b alone: then the high half of x is 0, so its
  // lanes are 0 whatever the weight bytes there, and its scales are 0.
  template <int NX, int NW, bool Two>
  SIBYL_VNNI static void step(const Tile& t, int64_t b, __m512 (&acc)[NX][NW]) {
    __m512i w[NW];
    uint64_t h[2] = {0, 0};  // d_w of blocks b, b + 1 of every row, as halves: one conversion
#pragma GCC unroll 4
    for (int c = 0; c < NW; ++c) {
      const uint8_t* blk = t.w[c] + static_cast<size_t>(b) * Q::kBytes;
      _mm_prefetch(reinterpret_cast<const char*>(blk) + kPrefetch, _MM_HINT_T0);
      w[c] = Q::template vnni<Two>(blk);
      const uint64_t d2 = load_u16(blk) | (Two ? static_cast<uint64_t>(load_u16(blk + Q::kBytes)) << 16 : 0u);
      h[c / 2] |= d2 << (32 * (c % 2));
    }
    const __m256 dw = _mm256_cvtph_ps(_mm_set_epi64x(static_cast<long long>(h[1]), static_cast<long long>(h[0])));
#pragma GCC unroll 4
    for (int r = 0; r < NX; ++r) {
      const int8_t* xq = act_qs(t, r) + b * 32;
      const __m512i x = Two ? _mm512_loadu_si512(xq)
                            : _mm512_zextsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq)));
      uint64_t dx = 0;
      std::memcpy(&dx, act_d(t, r) + b, Two ? 8 : 4);
      // Lanes 2c, 2c + 1: row c's scales for blocks b, b + 1.
      const __m256 scales = _mm256_mul_ps(dw, _mm256_castsi256_ps(_mm256_set1_epi64x(static_cast<long long>(dx))));
      // −kOffset·Σx per lane of 4: vpdpbusd from there yields Σ value·x exactly.
      const __m512i zero = _mm512_setzero_si512();
      const __m512i fix = _mm512_dpbusd_epi32(zero, _mm512_set1_epi8(static_cast<char>(Q::kOffset)),
                                              _mm512_sub_epi8(zero, x));
#pragma GCC unroll 4
      for (int c = 0; c < NW; ++c) {
        const __m512i lanes = _mm512_dpbusd_epi32(fix, w[c], x);
        const __m512i spread = _mm512_setr_epi32(2 * c, 2 * c, 2 * c, 2 * c, 2 * c, 2 * c, 2 * c, 2 * c, 2 * c + 1,
                                                 2 * c + 1, 2 * c + 1, 2 * c + 1, 2 * c + 1, 2 * c + 1, 2 * c + 1,
                                                 2 * c + 1);
        const __m512 scale = _mm512_permutexvar_ps(spread, _mm512_castps256_ps512(scales));
        acc[r][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(lanes), scale, acc[r][c]);
      }
    }
  }

  // One activation row against weight row c alone, blocks front to back: the same operations
  // per pair as step (so the same bits), but a 1 × NW tile then reads its rows one after the
  // other, one sequential run of memory; stepping the NW rows side by side instead makes NW
  // short streams, which the memory prefetchers serve at a fraction of the bandwidth.
  template <bool Two>
  SIBYL_VNNI static __m512 row_step(const uint8_t* w, const int8_t* xq, const float* xd, int64_t b, __m512 acc) {
    const uint8_t* blk = w + static_cast<size_t>(b) * Q::kBytes;
    _mm_prefetch(reinterpret_cast<const char*>(blk) + kPrefetch, _MM_HINT_T0);
    const __m512i wv = Q::template vnni<Two>(blk);
    const uint32_t h = load_u16(blk) | (Two ? static_cast<uint32_t>(load_u16(blk + Q::kBytes)) << 16 : 0u);
    const __m128 dw = _mm_cvtph_ps(_mm_cvtsi32_si128(static_cast<int>(h)));
    const __m512i x = Two ? _mm512_loadu_si512(xq + b * 32)
                          : _mm512_zextsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + b * 32)));
    uint64_t dx = 0;
    std::memcpy(&dx, xd + b, Two ? 8 : 4);
    // Lanes 0, 1: the scales of blocks b, b + 1; then lanes 0–7 ← 0, 8–15 ← 1.
    const __m128 s = _mm_mul_ps(dw, _mm_castsi128_ps(_mm_cvtsi64_si128(static_cast<long long>(dx))));
    const __m512 scale = _mm512_permutexvar_ps(_mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1),
                                               _mm512_castps128_ps512(s));
    const __m512i zero = _mm512_setzero_si512();
    const __m512i fix =
        _mm512_dpbusd_epi32(zero, _mm512_set1_epi8(static_cast<char>(Q::kOffset)), _mm512_sub_epi8(zero, x));
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_dpbusd_epi32(fix, wv, x)), scale, acc);
  }

  template <int NX, int NW>
  SIBYL_VNNI static void tile(const Tile& t) {
    if constexpr (NX == 1) {
      const int8_t* xq = act_qs(t, 0);
      const float* xd = act_d(t, 0);
      const int64_t nb = t.k / 32;
#pragma GCC unroll 1
      for (int c = 0; c < NW; ++c) {
        __m512 a = _mm512_setzero_ps();
        int64_t b = 0;
        for (; b + 2 <= nb; b += 2) a = row_step<true>(t.w[c], xq, xd, b, a);
        if (b < nb) a = row_step<false>(t.w[c], xq, xd, b, a);
        t.out[c] = sum16(a);
      }
      return;
    }
    __m512 acc[NX][NW];
#pragma GCC unroll 4
    for (int r = 0; r < NX; ++r)
#pragma GCC unroll 4
      for (int c = 0; c < NW; ++c) acc[r][c] = _mm512_setzero_ps();
    const int64_t nb = t.k / 32;
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) step<NX, NW, true>(t, b, acc);
    if (b < nb) step<NX, NW, false>(t, b, acc);
#pragma GCC unroll 4
    for (int r = 0; r < NX; ++r)
#pragma GCC unroll 4
      for (int c = 0; c < NW; ++c) t.out[r * t.ldo + c] = sum16(acc[r][c]);
  }
};

#endif  // SIBYL_TILES_X86

// ---------------------------------------------------------------- dispatch

// K::tile<nx, nw> for every shape, indexed (nx − 1)·4 + nw − 1.
template <class K, int... I>
constexpr std::array<TileFn, 16> shapes(std::integer_sequence<int, I...>) {
  return {&K::template tile<I / 4 + 1, I % 4 + 1>...};
}

template <class K>
void dispatch(const Tile& t) {
  static constexpr std::array<TileFn, 16> fns = shapes<K>(std::make_integer_sequence<int, 16>{});
  fns[static_cast<size_t>((t.nx - 1) * 4 + t.nw - 1)](t);
}

template <class Q>
TileFn best_tile() {
#ifdef SIBYL_TILES_X86
  if (simd_has(SimdLevel::avx512_vnni)) return dispatch<Vnni<Q>>;
  if (simd_has(SimdLevel::avx2)) return dispatch<Avx2<Q>>;
#endif
  return dispatch<Portable<Q>>;
}

}  // namespace

FastKernel q8_0_kernel() { return {ActFormat::q8_32, best_tile<Q8>()}; }
FastKernel q5_0_kernel() { return {ActFormat::q8_32, best_tile<Q5>()}; }

}  // namespace sibyl::backend::cpu
