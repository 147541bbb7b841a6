// Q8_0 and Q5_0 weights packed 16 rows to a vector as unsigned bytes with per-block scales
// (see packed.h), multiplied by vpdpbusd against q8_32 activations.
#include <array>
#include <cstring>
#include <string>
#include <utility>

#include "backends/cpu/packed.h"
#include "engine/core/dtype.h"
#include "engine/core/failure.h"
#include "engine/core/unaligned.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace sibyl::backend::cpu {
namespace {

constexpr int64_t kBlockBytes = 576;  // 8 quads × 64 bytes, then 16 float scales

// Block b of a stored row as 32 bytes u = value + 128, and its scale.
float unpack_block(DType dtype, const uint8_t* row, int64_t b, uint8_t (&u)[32]) {
  if (dtype == DType::q8_0) {
    const uint8_t* blk = row + b * 34;
    for (int i = 0; i < 32; ++i) u[i] = static_cast<uint8_t>(blk[2 + i] ^ 0x80u);  // int8 + 128
    return engine::f16_to_f32(engine::load_u16(blk));
  }
  const uint8_t* blk = row + b * 22;  // q5_0: d, qh (32 high bits), 16 bytes of low nibbles
  const uint32_t qh = engine::load_u32(blk + 2);
  for (int j = 0; j < 16; ++j) {
    const int lo = (blk[6 + j] & 15) | static_cast<int>(((qh >> j) & 1u) << 4);
    const int hi = (blk[6 + j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1u) << 4);
    u[j] = static_cast<uint8_t>(lo + 112);  // (q − 16) + 128
    u[j + 16] = static_cast<uint8_t>(hi + 112);
  }
  return engine::f16_to_f32(engine::load_u16(blk));
}

}  // namespace

void pack_q8(DType dtype, const uint8_t* rows, int64_t n_rows, int64_t k, uint8_t* dst) {
  const int64_t nb = k / 32;
  const size_t row_bytes = engine::row_bytes(dtype, k);
  std::memset(dst, 0, packed_bytes(dtype, n_rows, k));  // rows past the matrix: zero scales
  for (int64_t j = 0; j < n_rows; ++j) {
    const int64_t l = j % kPackedRows;
    uint8_t* gd = dst + static_cast<size_t>(j / kPackedRows) * static_cast<size_t>(nb * kBlockBytes);
    for (int64_t b = 0; b < nb; ++b) {
      uint8_t u[32];
      const float d = unpack_block(dtype, rows + static_cast<size_t>(j) * row_bytes, b, u);
      uint8_t* bd = gd + b * kBlockBytes;
      for (int t = 0; t < 8; ++t) std::memcpy(bd + t * 64 + l * 4, u + 4 * t, 4);
      std::memcpy(bd + 512 + l * 4, &d, 4);
    }
  }
}

#if defined(__x86_64__)
namespace {

// GCC 12 warns inside its own AVX-512 headers about the intrinsics' unused merge operand.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

template <int RX, int G>
__attribute__((target("avx512f,avx512bw,avx512vnni"))) void pass(const uint8_t* x, size_t x_stride,
                                                                 const uint8_t* w, int64_t k, float* out,
                                                                 int64_t ldo, int64_t n_out) {
  const int64_t nb = k / 32, group_bytes = nb * kBlockBytes;
  const int8_t* qs[RX];
  const float* dx[RX];
  const int16_t* sx[RX];
  for (int r = 0; r < RX; ++r) {  // the q8_32 row: qs[k] | d[k/32] | s[k/32]
    const uint8_t* row = x + static_cast<size_t>(r) * x_stride;
    qs[r] = reinterpret_cast<const int8_t*>(row);
    dx[r] = reinterpret_cast<const float*>(row + k);
    sx[r] = reinterpret_cast<const int16_t*>(row + k + nb * 4);
  }
  __m512 acc[RX][G];
  for (int r = 0; r < RX; ++r)
    for (int g = 0; g < G; ++g) acc[r][g] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* wb = w + b * kBlockBytes;
    __m512i dot[RX][G];  // from −128·Σx: Σ u·x then is Σ value·x, exactly
    for (int r = 0; r < RX; ++r) {
      const __m512i fix = _mm512_set1_epi32(-128 * static_cast<int>(sx[r][b]));
      for (int g = 0; g < G; ++g) dot[r][g] = fix;
    }
    for (int t = 0; t < 8; ++t) {
      __m512i wv[G];
      for (int g = 0; g < G; ++g) wv[g] = _mm512_load_si512(wb + g * group_bytes + t * 64);
      for (int r = 0; r < RX; ++r) {
        uint32_t xq;
        std::memcpy(&xq, qs[r] + b * 32 + t * 4, 4);
        const __m512i xv = _mm512_set1_epi32(static_cast<int>(xq));
        for (int g = 0; g < G; ++g) dot[r][g] = _mm512_dpbusd_epi32(dot[r][g], wv[g], xv);
      }
    }
    for (int g = 0; g < G; ++g) {
      const __m512 dw = _mm512_load_ps(reinterpret_cast<const float*>(wb + g * group_bytes + 512));
      for (int r = 0; r < RX; ++r)
        acc[r][g] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot[r][g]), _mm512_mul_ps(dw, _mm512_set1_ps(dx[r][b])),
                                    acc[r][g]);
    }
  }
  for (int g = 0; g < G; ++g) {
    const int64_t lanes = n_out - g * kPackedRows;
    if (lanes <= 0) break;
    const __mmask16 m = lanes >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << lanes) - 1u);
    for (int r = 0; r < RX; ++r) _mm512_mask_storeu_ps(out + r * ldo + g * kPackedRows, m, acc[r][g]);
  }
}

using PassFn = void (*)(const uint8_t*, size_t, const uint8_t*, int64_t, float*, int64_t, int64_t);

// [nx − 1][ngroups − 1], up to packed_max_groups.
template <int RX, size_t... G>
constexpr std::array<PassFn, 8> row_of(std::index_sequence<G...>) {
  return {(static_cast<int>(G) < packed_max_groups(DType::q8_0, RX) ? &pass<RX, static_cast<int>(G) + 1>
                                                                     : nullptr)...};
}
constexpr std::array<std::array<PassFn, 8>, 4> kPasses = {
    row_of<1>(std::make_index_sequence<8>()), row_of<2>(std::make_index_sequence<8>()),
    row_of<3>(std::make_index_sequence<8>()), row_of<4>(std::make_index_sequence<8>())};

}  // namespace
#endif

void packed_q8_tile(const uint8_t* x, size_t x_stride, int nx, const uint8_t* groups, int ngroups, int64_t k,
                    float* out, int64_t ldo, int64_t n_out) {
#if defined(__x86_64__)
  const PassFn fn = (nx >= 1 && nx <= 4 && ngroups >= 1 && ngroups <= 8) ? kPasses[nx - 1][ngroups - 1] : nullptr;
  if (fn) return fn(x, x_stride, groups, k, out, ldo, n_out);
#else
  (void)x, (void)x_stride, (void)groups, (void)k, (void)out, (void)ldo, (void)n_out;
#endif
  engine::fail(engine::Errc::internal, "packed q8 tile: unsupported shape " + std::to_string(nx) + " x " +
                                           std::to_string(ngroups) + " groups");
}

}  // namespace sibyl::backend::cpu
