// Activation rows converted once per matmul into the form a fast kernel multiplies in.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "backends/cpu/fast_kernels.h"
#include "engine/core/quant.h"

namespace sibyl::backend::cpu {
namespace {

size_t round64(size_t n) { return (n + 63) / 64 * 64; }

// GCC 12 warns inside its own AVX-512 headers about the intrinsics' unused merge operand.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

// The same float operations as quantize_q8_portable below (max |x|, 127 / amax, x · inv rounded to
// nearest even), 16 values at a time: bitwise the same bytes.
__attribute__((target("avx512f,avx512bw,avx512vl"))) void quantize_q8_avx512(const float* x, int64_t k, int64_t block,
                                                                             uint8_t* dst) {
  auto* qs = reinterpret_cast<int8_t*>(dst);
  auto* d = reinterpret_cast<float*>(dst + k);
  for (int64_t b = 0; b < k / block; ++b) {
    const float* xb = x + b * block;
    __m512 m = _mm512_setzero_ps();
    for (int64_t i = 0; i < block; i += 16) m = _mm512_max_ps(m, _mm512_abs_ps(_mm512_loadu_ps(xb + i)));
    const float amax = _mm512_reduce_max_ps(m);
    d[b] = amax / 127.0f;
    const __m512 inv = _mm512_set1_ps(amax > 0.0f ? 127.0f / amax : 0.0f);
    for (int64_t i = 0; i < block; i += 16) {
      const __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(xb + i), inv));  // nearest even
      _mm_storeu_si128(reinterpret_cast<__m128i*>(qs + b * block + i), _mm512_cvtsepi32_epi8(q));
    }
  }
}

// f32_to_bf16 (round to nearest even, NaN kept quiet) 16 values at a time: the same bits.
__attribute__((target("avx512f,avx512bw,avx512vl"))) void bf16_avx512(const float* x, int64_t k, uint16_t* out) {
  int64_t i = 0;
  for (; i + 16 <= k; i += 16) {
    const __m512i v = _mm512_loadu_si512(x + i);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(v, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(v, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
    const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(v, _mm512_set1_epi32(0x7fffffff)),
                                                  _mm512_set1_epi32(0x7f800000));
    r = _mm512_mask_or_epi32(r, nan, _mm512_srli_epi32(v, 16), _mm512_set1_epi32(0x40));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), _mm512_cvtepi32_epi16(r));
  }
  for (; i < k; ++i) out[i] = engine::f32_to_bf16(x[i]);
}

void quantize_q8_portable(const float* x, int64_t k, int64_t block, uint8_t* dst) {
  auto* qs = reinterpret_cast<int8_t*>(dst);
  auto* d = reinterpret_cast<float*>(dst + k);
  for (int64_t b = 0; b < k / block; ++b) {
    const float* xb = x + b * block;
    float amax = 0.0f;
    for (int64_t i = 0; i < block; ++i) amax = std::max(amax, std::fabs(xb[i]));
    const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
    d[b] = amax / 127.0f;
    for (int64_t i = 0; i < block; ++i)
      qs[b * block + i] = static_cast<int8_t>(std::clamp(std::nearbyint(xb[i] * inv), -127.0f, 127.0f));
  }
}

// Symmetric 8-bit blocks of `block` values: qs, one scale per block, sums per `sum_span`.
void quantize_q8(const float* x, int64_t k, int64_t block, int64_t sum_span, uint8_t* dst) {
  if (simd_has(SimdLevel::avx512))
    quantize_q8_avx512(x, k, block, dst);
  else
    quantize_q8_portable(x, k, block, dst);
  const auto* qs = reinterpret_cast<const int8_t*>(dst);
  auto* s = reinterpret_cast<int16_t*>(dst + k + (k / block) * 4);
  for (int64_t g = 0; g < k / sum_span; ++g) {
    int sum = 0;
    for (int64_t i = 0; i < sum_span; ++i) sum += qs[g * sum_span + i];
    s[g] = static_cast<int16_t>(sum);
  }
}

}  // namespace

size_t act_row_bytes(ActFormat format, int64_t k) {
  const auto n = static_cast<size_t>(k);
  switch (format) {
    case ActFormat::f32: return round64(n * 4);
    case ActFormat::bf16: return round64(n * 2);
    case ActFormat::q8_32: return round64(n + (n / 32) * 6);
    case ActFormat::q8_256: return round64(n + (n / 256) * 4 + (n / 16) * 2);
  }
  return 0;
}

void convert_activation(ActFormat format, const float* x, int64_t k, uint8_t* dst) {
  switch (format) {
    case ActFormat::f32:
      std::memcpy(dst, x, static_cast<size_t>(k) * 4);
      return;
    case ActFormat::bf16: {
      auto* out = reinterpret_cast<uint16_t*>(dst);
      if (simd_has(SimdLevel::avx512)) return bf16_avx512(x, k, out);
      for (int64_t i = 0; i < k; ++i) out[i] = engine::f32_to_bf16(x[i]);
      return;
    }
    case ActFormat::q8_32:
      quantize_q8(x, k, 32, 32, dst);
      return;
    case ActFormat::q8_256:
      quantize_q8(x, k, 256, 16, dst);
      return;
  }
}

}  // namespace sibyl::backend::cpu
