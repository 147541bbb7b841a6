// Q8_0 and Q5_0 weights packed 16 rows to a vector as unsigned bytes with per-block scales
// (see packed.h), multiplied by vpdpbusd against q8_32 activations.
#include <cstring>

#include "backends/cpu/packed.h"
#include "backends/cpu/packed_tiles.h"
#include "engine/core/dtype.h"
#include "engine/core/unaligned.h"

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

struct Q8Tiles {
  static constexpr DType kDtype = DType::q8_0;  // (Q5_0 packs to the same bytes)

  template <int RX, int G>
  __attribute__((target("avx512f,avx512bw,avx512vnni"))) static void pass(const uint8_t* x, size_t x_stride,
                                                                          const uint8_t* w, int64_t k, float* out,
                                                                          int64_t ldo, int64_t n_out) {
    const int64_t nb = k / 32, group_bytes = nb * kBlockBytes;
    const packed_tiles::Q8Rows<RX> xr(x, x_stride, k, 32);
    __m512 acc[RX][G];
    packed_tiles::zero(acc);
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* wb = w + b * kBlockBytes;
      __m512i dot[RX][G];  // from −128·Σx: Σ u·x then is Σ value·x, exactly
      for (int r = 0; r < RX; ++r) {
        const __m512i fix = _mm512_set1_epi32(-128 * static_cast<int>(xr.s[r][b]));
        for (int g = 0; g < G; ++g) dot[r][g] = fix;
      }
      for (int t = 0; t < 8; ++t) packed_tiles::dot_quad(dot, wb + t * 64, group_bytes, xr, b * 32 + t * 4);
      for (int g = 0; g < G; ++g) {
        const __m512 dw = _mm512_load_ps(reinterpret_cast<const float*>(wb + g * group_bytes + 512));
        for (int r = 0; r < RX; ++r)
          acc[r][g] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot[r][g]), _mm512_mul_ps(dw, _mm512_set1_ps(xr.d[r][b])),
                                      acc[r][g]);
      }
    }
    packed_tiles::store(acc, out, ldo, n_out);
  }
};

}  // namespace

void packed_q8_tile(const uint8_t* x, size_t x_stride, int nx, const uint8_t* groups, int ngroups, int64_t k,
                    float* out, int64_t ldo, int64_t n_out) {
  packed_tiles::run<Q8Tiles>(x, x_stride, nx, groups, ngroups, k, out, ldo, n_out);
}

#endif  // __x86_64__

}  // namespace sibyl::backend::cpu
