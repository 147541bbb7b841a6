// float32 ⇄ stored element types, including ggml's block-quantized formats. The layouts
// are documented in quant.h. Decoding does ggml's reference arithmetic (the same float
// operations in the same order, never fused into FMA), so a row decodes to the values
// llama.cpp's reference dequantizers give, at every SIMD level.
#include "engine/core/quant.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "engine/core/failure.h"
#include "engine/core/unaligned.h"

// GCC keeps float compares as branches under -ftrapping-math (its default), which stops it
// from vectorising the clamp and select loops; nothing here reads the FP exception flags.
// Contraction to FMA stays off so that every clone computes the same bits. (After the
// standard headers, so only this file's functions carry these options.)
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("no-trapping-math", "fp-contract=off")
#endif

// One clone per SIMD level, chosen when the library loads (GCC on x86-64 only; other
// compilers build the plain version).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define SIBYL_SIMD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define SIBYL_SIMD_CLONES
#endif

namespace sibyl::engine {
namespace {

constexpr int64_t kQ8Bytes = 34, kQ5Bytes = 22, kQ4KBytes = 144, kQ6KBytes = 210;
static_assert(kQ8Bytes == static_cast<int64_t>(block_bytes(DType::q8_0)));
static_assert(kQ5Bytes == static_cast<int64_t>(block_bytes(DType::q5_0)));
static_assert(kQ4KBytes == static_cast<int64_t>(block_bytes(DType::q4_k)));
static_assert(kQ6KBytes == static_cast<int64_t>(block_bytes(DType::q6_k)));

inline void store_u16(uint8_t* p, uint16_t v) { std::memcpy(p, &v, 2); }
inline void store_u32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }

inline float from_bits(uint32_t b) {
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}
inline uint32_t to_bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

// IEEE half → float without branches (so loops over it vectorise); equals f16_to_f32.
inline float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  const uint32_t normal = sign | ((static_cast<uint32_t>(h & 0x7fffu) << 13) + (112u << 23));
  const uint32_t sub = sign | to_bits(static_cast<float>(mant) * 0x1p-24f);  // exact
  const uint32_t special = sign | 0x7f800000u | (mant << 13);                 // inf / nan
  const uint32_t bits = exp == 31 ? special : normal;
  return from_bits(exp == 0 ? sub : bits);
}

// Round to nearest, ties to even, for |v| < 2^22 (the quantizers clamp first).
inline float round_ne(float v) { return (v + 12582912.0f) - 12582912.0f; }

// Two unconditional selects (a nested ?: would be control flow that blocks vectorisation).
inline float clampf(float v, float lo, float hi) {
  v = v < lo ? lo : v;
  return v > hi ? hi : v;
}

// The nearest half to v, moved one step away from zero when that rounded its magnitude down:
// a super-block scale then never leaves the largest sub-block scale out of the integer range
// (which matters where the half is subnormal and its steps are coarse).
// Beyond the half range it stays at the largest finite half (the block saturates, never inf).
uint16_t f16_at_least(float v) {
  uint16_t h = f32_to_f16(v);
  if ((h & 0x7fffu) >= 0x7c00u) return static_cast<uint16_t>((h & 0x8000u) | 0x7bffu);  // inf (or NaN)
  if (std::fabs(half_to_float(h)) < std::fabs(v) && (h & 0x7fffu) < 0x7bffu) ++h;
  return h;
}

inline void k4_pack_scales(uint8_t* s, const int* sc, const int* mn) {
  for (int j = 0; j < 4; ++j) {
    s[j] = static_cast<uint8_t>(sc[j] | ((sc[j + 4] >> 4) << 6));
    s[j + 4] = static_cast<uint8_t>(mn[j] | ((mn[j + 4] >> 4) << 6));
    s[j + 8] = static_cast<uint8_t>((sc[j + 4] & 15) | ((mn[j + 4] & 15) << 4));
  }
}

// ---------------------------------------------------------------- decoding

SIBYL_SIMD_CLONES void decode_f16(const uint8_t* __restrict src, float* __restrict dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = half_to_float(load_u16(src + 2 * i));
}

SIBYL_SIMD_CLONES void decode_bf16(const uint8_t* __restrict src, float* __restrict dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = from_bits(static_cast<uint32_t>(load_u16(src + 2 * i)) << 16);
}

void decode_f8(const uint8_t* src, float* dst, int64_t n) {
  static const std::array<float, 256> table = [] {
    std::array<float, 256> t{};
    for (int b = 0; b < 256; ++b) t[b] = f8_e4m3_to_f32(static_cast<uint8_t>(b));
    return t;
  }();
  for (int64_t i = 0; i < n; ++i) dst[i] = table[src[i]];
}

SIBYL_SIMD_CLONES void decode_q8_0(const uint8_t* __restrict src, float* __restrict dst, int64_t blocks) {
  for (int64_t b = 0; b < blocks; ++b, src += kQ8Bytes, dst += 32) {
    const float d = half_to_float(load_u16(src));
    const int8_t* q = reinterpret_cast<const int8_t*>(src + 2);
    for (int i = 0; i < 32; ++i) dst[i] = static_cast<float>(q[i]) * d;
  }
}

SIBYL_SIMD_CLONES void decode_q5_0(const uint8_t* __restrict src, float* __restrict dst, int64_t blocks) {
  for (int64_t b = 0; b < blocks; ++b, src += kQ5Bytes, dst += 32) {
    const float d = half_to_float(load_u16(src));
    const uint32_t qh = load_u32(src + 2);
    const uint8_t* qs = src + 6;
    for (int j = 0; j < 16; ++j) {
      const int lo = (qs[j] & 15) | static_cast<int>(((qh >> j) & 1u) << 4);
      const int hi = (qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1u) << 4);
      dst[j] = static_cast<float>(lo - 16) * d;
      dst[j + 16] = static_cast<float>(hi - 16) * d;
    }
  }
}

SIBYL_SIMD_CLONES void decode_q4_k(const uint8_t* __restrict src, float* __restrict dst, int64_t blocks) {
  for (int64_t b = 0; b < blocks; ++b, src += kQ4KBytes, dst += 256) {
    const float d = half_to_float(load_u16(src));
    const float dmin = half_to_float(load_u16(src + 2));
    const uint8_t* scales = src + 4;
    for (int c = 0; c < 4; ++c) {
      int s1, m1, s2, m2;
      k4_scale_min(scales, 2 * c, s1, m1);
      k4_scale_min(scales, 2 * c + 1, s2, m2);
      const float d1 = d * static_cast<float>(s1), o1 = dmin * static_cast<float>(m1);
      const float d2 = d * static_cast<float>(s2), o2 = dmin * static_cast<float>(m2);
      const uint8_t* q = src + 16 + 32 * c;
      float* y = dst + 64 * c;
      for (int l = 0; l < 32; ++l) y[l] = d1 * static_cast<float>(q[l] & 15) - o1;
      for (int l = 0; l < 32; ++l) y[32 + l] = d2 * static_cast<float>(q[l] >> 4) - o2;
    }
  }
}

SIBYL_SIMD_CLONES void decode_q6_k(const uint8_t* __restrict src, float* __restrict dst, int64_t blocks) {
  for (int64_t b = 0; b < blocks; ++b, src += kQ6KBytes, dst += 256) {
    const float d = half_to_float(load_u16(src + 208));
    const int8_t* sc = reinterpret_cast<const int8_t*>(src + 192);
    for (int h = 0; h < 2; ++h) {
      const uint8_t* ql = src + 64 * h;
      const uint8_t* qh = src + 128 + 32 * h;
      const int8_t* s = sc + 8 * h;
      float* y = dst + 128 * h;
      for (int g = 0; g < 2; ++g) {
        const float d0 = d * static_cast<float>(s[g]), d1 = d * static_cast<float>(s[g + 2]);
        const float d2 = d * static_cast<float>(s[g + 4]), d3 = d * static_cast<float>(s[g + 6]);
        for (int l = 16 * g; l < 16 * g + 16; ++l) {
          const int q0 = (ql[l] & 15) | ((qh[l] & 3) << 4);
          const int q1 = (ql[l + 32] & 15) | (((qh[l] >> 2) & 3) << 4);
          const int q2 = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
          const int q3 = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
          y[l] = d0 * static_cast<float>(q0 - 32);
          y[l + 32] = d1 * static_cast<float>(q1 - 32);
          y[l + 64] = d2 * static_cast<float>(q2 - 32);
          y[l + 96] = d3 * static_cast<float>(q3 - 32);
        }
      }
    }
  }
}

// ---------------------------------------------------------------- encoding: plain types

void encode_f16(const float* src, uint8_t* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) store_u16(dst + 2 * i, f32_to_f16(src[i]));
}

void encode_bf16(const float* src, uint8_t* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) store_u16(dst + 2 * i, f32_to_bf16(src[i]));
}

// ---------------------------------------------------------------- encoding: Q8_0, Q5_0
// These follow ggml's reference quantizers operation for operation, so that quantizing the
// same floats gives the same bytes: the scale comes from the largest magnitude.

void encode_q8_0(const float* x, uint8_t* dst, int64_t blocks) {
  for (int64_t b = 0; b < blocks; ++b, x += 32, dst += kQ8Bytes) {
    float amax = 0.0f;
    for (int i = 0; i < 32; ++i) {
      const float ax = std::fabs(x[i]);
      amax = amax > ax ? amax : ax;
    }
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    store_u16(dst, f32_to_f16(d));
    for (int i = 0; i < 32; ++i) {
      const float q = std::round(x[i] * id);  // ties away from zero, as ggml
      dst[2 + i] = static_cast<uint8_t>(static_cast<int8_t>(clampf(q, -127.0f, 127.0f)));
    }
  }
}

void encode_q5_0(const float* x, uint8_t* dst, int64_t blocks) {
  for (int64_t b = 0; b < blocks; ++b, x += 32, dst += kQ5Bytes) {
    float amax = 0.0f, max = 0.0f;  // the first value of largest magnitude, with its sign
    for (int i = 0; i < 32; ++i) {
      if (amax < std::fabs(x[i])) {
        amax = std::fabs(x[i]);
        max = x[i];
      }
    }
    const float d = max / -16.0f;  // the extreme value gets code 0 (−16·d)
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    store_u16(dst, f32_to_f16(d));
    uint32_t qh = 0;
    uint8_t* qs = dst + 6;
    for (int j = 0; j < 16; ++j) {
      // Truncation of a value ≥ 0 (ggml converts x·id + 16.5 to an integer).
      const int lo = std::min(31, static_cast<int>(clampf(x[j] * id + 16.5f, 0.0f, 32.0f)));
      const int hi = std::min(31, static_cast<int>(clampf(x[j + 16] * id + 16.5f, 0.0f, 32.0f)));
      qs[j] = static_cast<uint8_t>((lo & 15) | ((hi & 15) << 4));
      qh |= static_cast<uint32_t>(lo >> 4) << j;
      qh |= static_cast<uint32_t>(hi >> 4) << (j + 16);
    }
    store_u32(dst + 2, qh);
  }
}

// ---------------------------------------------------------------- encoding: Q4_K
// Per 32-value sub-block, an affine fit x ≈ a·q − m (a, m ≥ 0, q ∈ 0…15) minimising the
// weighted squared error (weights below): several grids spanning [min(x, 0), max(x)] are
// tried, each followed by a least-squares solve for (a, m); the best is then polished by
// alternating codes and fit. The eight a's and m's are quantized to 6 bits against the
// super-block's f16 d and dmin, trying the 4×4 neighbouring integer pairs of each sub-block
// with its codes re-fitted, and keeping the pair of least error.
//
// The fixed-size loops below fill per-element arrays and sum them pairwise (reduce), which
// vectorises and gives the same bits at every SIMD level.

template <int N>
inline float reduce(float* a) {
  for (int w = N / 2; w > 0; w /= 2)
    for (int k = 0; k < w; ++k) a[k] += a[k + w];
  return a[0];
}

struct Sums {
  float w = 0, l = 0, ll = 0, lx = 0;  // Σw, Σw·q, Σw·q², Σw·q·x
};

// Sums over the codes q = round(clamp((x − lo)·inv, 0, 15)) of 32 weighted values.
inline Sums q4_code_sums(const float* x, const float* w, float sw, float lo, float inv) {
  float l[32], ll[32], lx[32];
  for (int i = 0; i < 32; ++i) {
    const float q = round_ne(clampf((x[i] - lo) * inv, 0.0f, 15.0f));
    l[i] = w[i] * q;
    ll[i] = l[i] * q;
    lx[i] = l[i] * x[i];
  }
  return {sw, reduce<32>(l), reduce<32>(ll), reduce<32>(lx)};
}

struct Affine {
  float a = 0, b = 0, err = std::numeric_limits<float>::infinity();  // x ≈ a·q + b, b ≤ 0
};

// Weighted least-squares (a > 0, b ≤ 0) for given code sums; err from the expanded square.
inline Affine q4_solve(const Sums& s, float sx, float sxx) {
  Affine f;
  const float det = s.w * s.ll - s.l * s.l;
  if (!(det > 0.0f)) return f;
  float a = (s.w * s.lx - sx * s.l) / det;
  float b = (s.ll * sx - s.l * s.lx) / det;
  if (b > 0.0f) {
    b = 0.0f;
    a = s.lx / s.ll;
  }
  if (!(a > 0.0f)) return f;
  f.a = a;
  f.b = b;
  f.err = sxx - 2.0f * a * s.lx - 2.0f * b * sx + a * a * s.ll + 2.0f * a * b * s.l + s.w * b * b;
  return f;
}

// The importance of each value in its sub-block's squared error: rms(sub-block) + |x|. Errors on
// the larger weights of a trained model count for more (on the tiny-reasoner, plain squared
// error changed a greedy reply of the routed-expert Q4_K model; this weighting, also ggml's
// heuristic, keeps them all), while the plain RMS error stays below llama.cpp's.
inline void q4_weights(const float* x, float* w) {
  float s2 = 0.0f;
  for (int i = 0; i < 32; ++i) s2 += x[i] * x[i];
  const float rms = std::sqrt(s2 / 32.0f);
  for (int i = 0; i < 32; ++i) w[i] = rms + std::fabs(x[i]);
}

// Best (a, m) for one sub-block (m = −b ≥ 0). The candidate grids are evaluated side by
// side (the inner loops run across candidates, so they vectorise without reassociating sums).
constexpr int kQ4Grids = 24;

SIBYL_SIMD_CLONES void q4_fit_sub(const float* x, float& a_out, float& m_out) {
  float w[32];
  q4_weights(x, w);
  float lo = x[0], hi = x[0], sw = 0.0f, sx = 0.0f, sxx = 0.0f;
  for (int i = 0; i < 32; ++i) {
    lo = x[i] < lo ? x[i] : lo;
    hi = x[i] > hi ? x[i] : hi;
    sw += w[i];
    sx += w[i] * x[i];
    sxx += w[i] * x[i] * x[i];
  }
  lo = lo < 0.0f ? lo : 0.0f;
  if (!(hi > lo)) {  // constant ≤ 0: only the min is needed
    a_out = 0.0f;
    m_out = -lo;
    return;
  }
  float inv[kQ4Grids], sl[kQ4Grids] = {}, sll[kQ4Grids] = {}, slx[kQ4Grids] = {};
  for (int t = 0; t < kQ4Grids; ++t) inv[t] = (13.5f + 0.125f * static_cast<float>(t)) / (hi - lo);
  for (int i = 0; i < 32; ++i) {
    const float xi = x[i], wi = w[i], v = x[i] - lo;
    for (int t = 0; t < kQ4Grids; ++t) {
      const float l = round_ne(clampf(v * inv[t], 0.0f, 15.0f));
      const float wl = wi * l;
      sl[t] += wl;
      sll[t] += wl * l;
      slx[t] += wl * xi;
    }
  }
  Affine best;
  best.a = (hi - lo) / 15.0f;
  best.b = lo;
  for (int t = 0; t < kQ4Grids; ++t) {
    const Affine f = q4_solve({sw, sl[t], sll[t], slx[t]}, sx, sxx);
    if (f.err < best.err) best = f;
  }
  for (int it = 0; it < 3; ++it) {  // alternate codes ↔ fit
    const Affine f = q4_solve(q4_code_sums(x, w, sw, best.b, 1.0f / best.a), sx, sxx);
    if (!(f.err < best.err)) break;
    best = f;
  }
  a_out = best.a;
  m_out = -best.b;
}

// Codes of 32 values with scale A = d·sc and offset B = dmin·m (value = A·q − B): the nearest.
inline void q4_codes(const float* x, float A, float B, uint8_t* q) {
  const float inv = A > 0.0f ? 1.0f / A : 0.0f;
  for (int i = 0; i < 32; ++i) q[i] = static_cast<uint8_t>(round_ne(clampf((x[i] + B) * inv, 0.0f, 15.0f)));
}

// The 6-bit integer at or below v/step.
inline int six_bit_floor(float v, float step) {
  if (!(step > 0.0f)) return 0;
  return static_cast<int>(clampf(std::floor(v / step), 0.0f, 63.0f));
}

// Chooses the sub-block's 6-bit scale and min among the integers around a/d and m/dmin:
// the pair whose re-fitted codes give the least (weighted) squared error, computed as the
// decoder computes values; all 16 pairs side by side.
SIBYL_SIMD_CLONES float q4_pick_scale_min(const float* x, float a, float m, float d, float dmin, int& sc_out,
                                          int& mn_out) {
  constexpr int kPairs = 16;
  float w[32];
  q4_weights(x, w);
  const int s0 = six_bit_floor(a, d) - 1, m0 = six_bit_floor(m, dmin) - 1;
  int sc[kPairs], mn[kPairs];
  float A[kPairs], B[kPairs], inv[kPairs], err[kPairs] = {};
  for (int c = 0; c < kPairs; ++c) {
    sc[c] = d > 0.0f ? std::clamp(s0 + c / 4, 0, 63) : 0;
    mn[c] = dmin > 0.0f ? std::clamp(m0 + c % 4, 0, 63) : 0;
    A[c] = d * static_cast<float>(sc[c]);
    B[c] = dmin * static_cast<float>(mn[c]);
    inv[c] = A[c] > 0.0f ? 1.0f / A[c] : 0.0f;
  }
  for (int i = 0; i < 32; ++i) {
    const float xi = x[i], wi = w[i];
    for (int c = 0; c < kPairs; ++c) {
      const float l = round_ne(clampf((xi + B[c]) * inv[c], 0.0f, 15.0f));
      const float e = A[c] * l - B[c] - xi;
      err[c] += wi * e * e;
    }
  }
  int best = 0;
  for (int c = 1; c < kPairs; ++c)
    if (err[c] < err[best]) best = c;
  sc_out = sc[best];
  mn_out = mn[best];
  return err[best];
}

void encode_q4_k(const float* x, uint8_t* dst, int64_t blocks) {
  for (int64_t b = 0; b < blocks; ++b, x += 256, dst += kQ4KBytes) {
    float a[8], m[8];
    float max_a = 0.0f, max_m = 0.0f;
    for (int j = 0; j < 8; ++j) {
      q4_fit_sub(x + 32 * j, a[j], m[j]);
      max_a = a[j] > max_a ? a[j] : max_a;
      max_m = m[j] > max_m ? m[j] : max_m;
    }
    const uint16_t dh = f16_at_least(max_a / 63.0f), mh = f16_at_least(max_m / 63.0f);
    const float d = half_to_float(dh), dmin = half_to_float(mh);
    int sc[8], mn[8];
    for (int j = 0; j < 8; ++j) q4_pick_scale_min(x + 32 * j, a[j], m[j], d, dmin, sc[j], mn[j]);
    store_u16(dst, dh);
    store_u16(dst + 2, mh);
    k4_pack_scales(dst + 4, sc, mn);
    uint8_t q[256];
    for (int j = 0; j < 8; ++j) q4_codes(x + 32 * j, d * static_cast<float>(sc[j]), dmin * static_cast<float>(mn[j]), q + 32 * j);
    for (int c = 0; c < 4; ++c)
      for (int l = 0; l < 32; ++l)
        dst[16 + 32 * c + l] = static_cast<uint8_t>(q[64 * c + l] | (q[64 * c + 32 + l] << 4));
  }
}

// ---------------------------------------------------------------- encoding: Q6_K
// Per 16-value sub-block a signed scale s (x ≈ s·q, q ∈ −32…31) minimising the squared
// error over a range of grids, polished like Q4_K; the 16 scales are quantized to int8
// against the super-block's f16 d (the largest gets −128), neighbours tried, codes re-fitted.

// Σq² and Σq·x over the codes q = round(clamp(x·inv, −32, 31)) of 16 values.
inline void q6_code_sums(const float* x, float inv, float& sll, float& slx) {
  float ll[16], lx[16];
  for (int i = 0; i < 16; ++i) {
    const float l = round_ne(clampf(x[i] * inv, -32.0f, 31.0f));
    ll[i] = l * l;
    lx[i] = l * x[i];
  }
  sll = reduce<16>(ll);
  slx = reduce<16>(lx);
}

constexpr int kQ6Grids = 32;

SIBYL_SIMD_CLONES float q6_fit_sub(const float* x) {
  float amax = 0.0f, max = 0.0f;
  for (int i = 0; i < 16; ++i) {
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      max = x[i];
    }
  }
  if (!(amax > 1e-30f)) return 0.0f;
  // Grids putting the extreme value near code −32 (first half) or +31 (second half).
  float inv[kQ6Grids], sll[kQ6Grids] = {}, slx[kQ6Grids] = {};
  for (int t = 0; t < kQ6Grids / 2; ++t) {
    const float step = 0.125f * static_cast<float>(t - kQ6Grids / 4);
    inv[t] = -(32.0f + step) / max;
    inv[t + kQ6Grids / 2] = (31.0f + step) / max;
  }
  for (int i = 0; i < 16; ++i) {
    const float xi = x[i];
    for (int t = 0; t < kQ6Grids; ++t) {
      const float l = round_ne(clampf(xi * inv[t], -32.0f, 31.0f));
      sll[t] += l * l;
      slx[t] += l * xi;
    }
  }
  // slx²/sll is what the least-squares scale slx/sll removes from Σx²: maximise it.
  float best_gain = -1.0f, best_s = -max / 32.0f;
  for (int t = 0; t < kQ6Grids; ++t) {
    if (sll[t] > 0.0f && slx[t] * slx[t] > best_gain * sll[t]) {
      best_gain = slx[t] * slx[t] / sll[t];
      best_s = slx[t] / sll[t];
    }
  }
  for (int it = 0; it < 3 && best_s != 0.0f; ++it) {  // alternate codes ↔ fit
    float l2, lx;
    q6_code_sums(x, 1.0f / best_s, l2, lx);
    if (!(l2 > 0.0f && lx * lx > best_gain * l2)) break;
    best_gain = lx * lx / l2;
    best_s = lx / l2;
  }
  return best_s;
}

// Squared error of 16 values coded with scale A (value = A·q), codes the nearest.
inline float q6_sub_error(const float* x, float A, int8_t* q) {
  float l[16], e2[16];
  const float inv = A != 0.0f ? 1.0f / A : 0.0f;
  for (int i = 0; i < 16; ++i) {
    l[i] = round_ne(clampf(x[i] * inv, -32.0f, 31.0f));
    const float e = A * l[i] - x[i];
    e2[i] = e * e;
  }
  if (q)
    for (int i = 0; i < 16; ++i) q[i] = static_cast<int8_t>(l[i]);
  return reduce<16>(e2);
}

SIBYL_SIMD_CLONES float q6_sub_error_clone(const float* x, float A) { return q6_sub_error(x, A, nullptr); }

void encode_q6_k(const float* x, uint8_t* dst, int64_t blocks) {
  for (int64_t b = 0; b < blocks; ++b, x += 256, dst += kQ6KBytes) {
    float s[16];
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < 16; ++j) {
      s[j] = q6_fit_sub(x + 16 * j);
      if (std::fabs(s[j]) > amax) {
        amax = std::fabs(s[j]);
        max = s[j];
      }
    }
    const uint16_t dh = f16_at_least(max / -128.0f);
    const float d = half_to_float(dh);
    int8_t* scales = reinterpret_cast<int8_t*>(dst + 192);
    int8_t q[256];
    for (int j = 0; j < 16; ++j) {
      const float* xs = x + 16 * j;
      int best_sc = 0;
      if (d != 0.0f) {
        const int s0 = static_cast<int>(clampf(std::floor(s[j] / d), -128.0f, 127.0f));
        float best = std::numeric_limits<float>::infinity();
        for (int c = std::max(-128, s0 - 1); c <= std::min(127, s0 + 2); ++c) {
          const float e = q6_sub_error_clone(xs, d * static_cast<float>(c));
          if (e < best) {
            best = e;
            best_sc = c;
          }
        }
      }
      scales[j] = static_cast<int8_t>(best_sc);
      if (best_sc == 0) {
        for (int i = 0; i < 16; ++i) q[16 * j + i] = 0;
      } else {
        q6_sub_error(xs, d * static_cast<float>(best_sc), q + 16 * j);
      }
    }
    store_u16(dst + 208, dh);
    for (int h = 0; h < 2; ++h) {
      uint8_t* ql = dst + 64 * h;
      uint8_t* qh = dst + 128 + 32 * h;
      const int8_t* u = q + 128 * h;
      for (int l = 0; l < 32; ++l) {
        const int u0 = u[l] + 32, u1 = u[l + 32] + 32, u2 = u[l + 64] + 32, u3 = u[l + 96] + 32;
        ql[l] = static_cast<uint8_t>((u0 & 15) | ((u2 & 15) << 4));
        ql[l + 32] = static_cast<uint8_t>((u1 & 15) | ((u3 & 15) << 4));
        qh[l] = static_cast<uint8_t>((u0 >> 4) | ((u1 >> 4) << 2) | ((u2 >> 4) << 4) | ((u3 >> 4) << 6));
      }
    }
  }
}

void check_length(DType type, int64_t n, const char* what) {
  if (n < 0 || n % block_elems(type) != 0)
    fail(Errc::invalid_argument, std::string(what) + ": " + std::to_string(n) + " elements is not a multiple of the " +
                                     dtype_name(type) + " block (" + std::to_string(block_elems(type)) + ")");
}

}  // namespace

uint16_t f32_to_f16(float f) {
  const uint32_t x = to_bits(f);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));  // NaN stays NaN
  if (ax >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // ≥ 65520 rounds to inf
  if (ax >= 0x38800000u) {                                              // a normal half (≥ 2^-14)
    const uint32_t r = ax + 0xfffu + ((ax >> 13) & 1u);                 // round to nearest even
    return static_cast<uint16_t>(sign | ((r - (112u << 23)) >> 13));
  }
  // Subnormal half: |f| / 2^-24 rounded to an integer (1024 carries into the smallest normal).
  const int e = static_cast<int>(ax >> 23);
  const int shift = 126 - e;  // ≥ 14 here
  if (shift > 24) return sign;  // below 2^-25: rounds to zero
  const uint32_t m = (ax & 0x7fffffu) | 0x800000u;
  uint32_t q = m >> shift;
  const uint32_t rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1);
  if (rem > half || (rem == half && (q & 1u))) ++q;
  return static_cast<uint16_t>(sign | q);
}

uint16_t f32_to_bf16(float f) {
  const uint32_t x = to_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x40u);  // quiet NaN
  return static_cast<uint16_t>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

void dequantize_row(DType type, const void* src, float* dst, int64_t n) {
  check_length(type, n, "dequantize_row");
  const auto* s = static_cast<const uint8_t*>(src);
  const int64_t blocks = n / block_elems(type);
  switch (type) {
    case DType::f32: std::memcpy(dst, src, static_cast<size_t>(n) * 4); return;
    case DType::f16: decode_f16(s, dst, n); return;
    case DType::bf16: decode_bf16(s, dst, n); return;
    case DType::f8_e4m3: decode_f8(s, dst, n); return;
    case DType::q8_0: decode_q8_0(s, dst, blocks); return;
    case DType::q5_0: decode_q5_0(s, dst, blocks); return;
    case DType::q4_k: decode_q4_k(s, dst, blocks); return;
    case DType::q6_k: decode_q6_k(s, dst, blocks); return;
    case DType::i32:
    case DType::i64: break;
  }
  fail(Errc::unsupported, std::string("dequantize_row: no float view of ") + dtype_name(type));
}

void quantize_row(DType type, const float* src, void* dst, int64_t n) {
  check_length(type, n, "quantize_row");
  auto* d = static_cast<uint8_t*>(dst);
  const int64_t blocks = n / block_elems(type);
  switch (type) {
    case DType::f32: std::memcpy(dst, src, static_cast<size_t>(n) * 4); return;
    case DType::f16: encode_f16(src, d, n); return;
    case DType::bf16: encode_bf16(src, d, n); return;
    case DType::q8_0: encode_q8_0(src, d, blocks); return;
    case DType::q5_0: encode_q5_0(src, d, blocks); return;
    case DType::q4_k: encode_q4_k(src, d, blocks); return;
    case DType::q6_k: encode_q6_k(src, d, blocks); return;
    case DType::f8_e4m3:
    case DType::i32:
    case DType::i64: break;
  }
  fail(Errc::unsupported, std::string("quantize_row: cannot encode ") + dtype_name(type));
}

}  // namespace sibyl::engine
