#include "backends/cpu/vec_math.h"

#include <cmath>
#include <cstring>

#include "backends/cpu/simd.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define SIBYL_VEC_MATH_X86 1
#endif

// GCC 12 warns inside its own AVX-512 headers about the intrinsics' unused merge operand.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace sibyl::backend::cpu {
namespace {

// exp: x = n·ln2 + r with ln2 split in two (n·kLn2Hi is exact for |n| ≤ 128), then
// exp(r) ≈ 1 + r + r²·P(r) with P's coefficients fitted on |r| ≤ ln2/2, times 2^n.
constexpr float kLog2e = 1.44269504088896341f;
constexpr float kLn2Hi = 0.693359375f;
constexpr float kLn2Lo = -2.12194440e-4f;
constexpr float kLo = -87.3365478515625f;  // ≈ ln(2^-126): 2^n stays a normal number
constexpr float kHi = 88.3762626647949f;   // n ≤ 127
constexpr float kP[6] = {1.9875691500e-4f, 1.3981999507e-3f, 8.3334519073e-3f,
                         4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f};

float exp1(float x) {
  float xc = x > kLo ? x : kLo;  // the comparisons the vector min/max make
  xc = xc < kHi ? xc : kHi;
  const float n = std::nearbyint(xc * kLog2e);
  float r = xc - n * kLn2Hi;
  r = r - n * kLn2Lo;
  float p = kP[0];
  for (int i = 1; i < 6; ++i) p = p * r + kP[i];
  const float z = r * r;
  float y = p * z + r + 1.0f;
  const uint32_t bits = static_cast<uint32_t>(static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, 4);
  y = y * scale;
  return x < kLo ? 0.0f : y;
}

void exp_portable(float* y, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = exp1(x[i]);
}

void silu_mul_portable(float* out, const float* g, const float* u, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = g[i] / (1.0f + exp1(-g[i])) * u[i];
}

// Sum of positive values in double: 8 lanes (lane l takes elements l, l + 8, …), then the
// lanes in order.
double sum_portable(const float* s, int64_t n) {
  double lanes[8] = {};
  for (int64_t i = 0; i < n; ++i) lanes[i % 8] += static_cast<double>(s[i]);
  double t = lanes[0];
  for (int l = 1; l < 8; ++l) t += lanes[l];
  return t;
}

#ifdef SIBYL_VEC_MATH_X86

// The same operations as exp1, 16 lanes.
__attribute__((target("avx512f,avx512dq"))) inline __m512 exp16(__m512 x) {
  __m512 xc = _mm512_max_ps(x, _mm512_set1_ps(kLo));
  xc = _mm512_min_ps(xc, _mm512_set1_ps(kHi));
  const __m512 n =
      _mm512_roundscale_ps(_mm512_mul_ps(xc, _mm512_set1_ps(kLog2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_sub_ps(xc, _mm512_mul_ps(n, _mm512_set1_ps(kLn2Hi)));
  r = _mm512_sub_ps(r, _mm512_mul_ps(n, _mm512_set1_ps(kLn2Lo)));
  __m512 p = _mm512_set1_ps(kP[0]);
  for (int i = 1; i < 6; ++i) p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(kP[i]));
  const __m512 z = _mm512_mul_ps(r, r);
  __m512 y = _mm512_add_ps(_mm512_add_ps(_mm512_mul_ps(p, z), r), _mm512_set1_ps(1.0f));
  const __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
  y = _mm512_mul_ps(y, _mm512_castsi512_ps(e));
  return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, _mm512_set1_ps(kLo), _CMP_LT_OQ), y, _mm512_setzero_ps());
}

__attribute__((target("avx512f,avx512dq"))) inline __m512 silu_mul16(__m512 g, __m512 u) {
  const __m512 e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), g));
  return _mm512_mul_ps(_mm512_div_ps(g, _mm512_add_ps(_mm512_set1_ps(1.0f), e)), u);
}

__attribute__((target("avx512f,avx512dq"))) void exp_avx512(float* y, const float* x, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, exp16(_mm512_loadu_ps(x + i)));
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(y + i, m, exp16(_mm512_maskz_loadu_ps(m, x + i)));
  }
}

__attribute__((target("avx512f,avx512dq"))) void silu_mul_avx512(float* out, const float* g, const float* u,
                                                                 int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(out + i, silu_mul16(_mm512_loadu_ps(g + i), _mm512_loadu_ps(u + i)));
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(out + i, m, silu_mul16(_mm512_maskz_loadu_ps(m, g + i), _mm512_maskz_loadu_ps(m, u + i)));
  }
}

// acc (8 double lanes) + e's first 8 values, then + its last 8.
__attribute__((target("avx512f,avx512dq"))) inline __m512d add_halves(__m512d acc, __m512 e) {
  acc = _mm512_add_pd(acc, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
  return _mm512_add_pd(acc, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1))));
}

// fast_softmax in one pass per step on 16 lanes: the max (per lane as the scan finds it —
// MAXPS keeps its second operand unless the first is greater, so a NaN counts only at s[0] —
// then the lanes scanned: the same value), exp(s − max) with exp16, the sum in sum_portable's
// 8 double lanes and order (a missing tail element adds +0), and the scale.
__attribute__((target("avx512f,avx512dq"))) void softmax_avx512(float* s, int64_t n) {
  const int64_t body = n & ~int64_t{15};
  const auto tail = static_cast<__mmask16>((1u << (n - body)) - 1);
  __m512 mv = _mm512_set1_ps(s[0]);
  for (int64_t i = 0; i < body; i += 16) mv = _mm512_max_ps(_mm512_loadu_ps(s + i), mv);
  if (tail) mv = _mm512_max_ps(_mm512_mask_loadu_ps(mv, tail, s + body), mv);
  float lane_max[16];
  _mm512_storeu_ps(lane_max, mv);
  float m = s[0];
  for (float v : lane_max) m = v > m ? v : m;
  const __m512 mb = _mm512_set1_ps(m);
  __m512d acc = _mm512_setzero_pd();
  for (int64_t i = 0; i < body; i += 16) {
    const __m512 e = exp16(_mm512_sub_ps(_mm512_loadu_ps(s + i), mb));
    _mm512_storeu_ps(s + i, e);
    acc = add_halves(acc, e);
  }
  if (tail) {
    const __m512 e = _mm512_maskz_mov_ps(tail, exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, s + body), mb)));
    _mm512_mask_storeu_ps(s + body, tail, e);
    acc = add_halves(acc, e);
  }
  double lanes[8];
  _mm512_storeu_pd(lanes, acc);
  double sum = lanes[0];
  for (int l = 1; l < 8; ++l) sum += lanes[l];
  const __m512 inv = _mm512_set1_ps(static_cast<float>(1.0 / sum));
  for (int64_t i = 0; i < body; i += 16) _mm512_storeu_ps(s + i, _mm512_mul_ps(_mm512_loadu_ps(s + i), inv));
  if (tail) _mm512_mask_storeu_ps(s + body, tail, _mm512_mul_ps(_mm512_maskz_loadu_ps(tail, s + body), inv));
}

// AVX2: the same operations, 8 lanes.
__attribute__((target("avx2,fma"))) inline __m256 exp8(__m256 x) {
  __m256 xc = _mm256_max_ps(x, _mm256_set1_ps(kLo));
  xc = _mm256_min_ps(xc, _mm256_set1_ps(kHi));
  const __m256 n =
      _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(kLog2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_sub_ps(xc, _mm256_mul_ps(n, _mm256_set1_ps(kLn2Hi)));
  r = _mm256_sub_ps(r, _mm256_mul_ps(n, _mm256_set1_ps(kLn2Lo)));
  __m256 p = _mm256_set1_ps(kP[0]);
  for (int i = 1; i < 6; ++i) p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(kP[i]));
  const __m256 z = _mm256_mul_ps(r, r);
  __m256 y = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(p, z), r), _mm256_set1_ps(1.0f));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  y = _mm256_mul_ps(y, _mm256_castsi256_ps(e));
  return _mm256_blendv_ps(y, _mm256_setzero_ps(), _mm256_cmp_ps(x, _mm256_set1_ps(kLo), _CMP_LT_OQ));
}

__attribute__((target("avx2,fma"))) void exp_avx2(float* y, const float* x, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, exp8(_mm256_loadu_ps(x + i)));
  exp_portable(y + i, x + i, n - i);
}

__attribute__((target("avx2,fma"))) void silu_mul_avx2(float* out, const float* g, const float* u, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 gv = _mm256_loadu_ps(g + i);
    const __m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), gv));
    _mm256_storeu_ps(out + i,
                     _mm256_mul_ps(_mm256_div_ps(gv, _mm256_add_ps(_mm256_set1_ps(1.0f), e)), _mm256_loadu_ps(u + i)));
  }
  silu_mul_portable(out + i, g + i, u + i, n - i);
}

#endif  // SIBYL_VEC_MATH_X86

}  // namespace

void fast_exp(float* y, const float* x, int64_t n) {
#ifdef SIBYL_VEC_MATH_X86
  if (simd_has(SimdLevel::avx512)) return exp_avx512(y, x, n);
  if (simd_has(SimdLevel::avx2)) return exp_avx2(y, x, n);
#endif
  exp_portable(y, x, n);
}

void fast_silu_mul(float* out, const float* g, const float* u, int64_t n) {
#ifdef SIBYL_VEC_MATH_X86
  if (simd_has(SimdLevel::avx512)) return silu_mul_avx512(out, g, u, n);
  if (simd_has(SimdLevel::avx2)) return silu_mul_avx2(out, g, u, n);
#endif
  silu_mul_portable(out, g, u, n);
}

void fast_softmax(float* s, int64_t n) {
  if (n <= 0) return;
#ifdef SIBYL_VEC_MATH_X86
  if (simd_has(SimdLevel::avx512)) return softmax_avx512(s, n);
#endif
  float m = s[0];
  for (int64_t t = 1; t < n; ++t) m = s[t] > m ? s[t] : m;
  for (int64_t t = 0; t < n; ++t) s[t] -= m;
  fast_exp(s, s, n);
  const double sum = sum_portable(s, n);
  const float inv = static_cast<float>(1.0 / sum);
  for (int64_t t = 0; t < n; ++t) s[t] *= inv;
}

}  // namespace sibyl::backend::cpu
