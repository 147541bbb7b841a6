// Q4_K and Q6_K weights packed 16 rows to a vector (see packed.h): per super-block of 256
// columns, 64 quads × 64 bytes of the unsigned quants (Q4_K q ∈ 0…15, Q6_K q ∈ 0…63), then
// the sub-blocks' scales d·sc (Q4_K: 8 of 32 columns, then their mins dmin·m; Q6_K: 16 of
// 16 columns) as float32 per lane. vpdpbusd against q8_256 activations (one d per 256, sums
// per 16): Q6_K's −32 offset starts each sub-block's integer sum at −32·Σx, exactly; Q4_K's
// mins come off in float as min·d_x·Σx.
#include <cstring>

#include "backends/cpu/packed.h"
#include "backends/cpu/packed_tiles.h"
#include "engine/core/dtype.h"
#include "engine/core/quant.h"
#include "engine/core/unaligned.h"

namespace sibyl::backend::cpu {
namespace {

constexpr int64_t kSuperBytes = 5120;  // per group and super-block: 4096 quant bytes, 1024 of scales (and mins)

// One stored super-block as 256 unsigned quants, its sub-blocks' scales and (Q4_K) mins.
void unpack_super(DType dtype, const uint8_t* blk, uint8_t (&q)[256], float (&scale)[16], float (&min)[8]) {
  if (dtype == DType::q4_k) {
    const float d = engine::f16_to_f32(engine::load_u16(blk)), dmin = engine::f16_to_f32(engine::load_u16(blk + 2));
    for (int j = 0; j < 8; ++j) {
      int sc = 0, mn = 0;
      engine::k4_scale_min(blk + 4, j, sc, mn);
      scale[j] = d * static_cast<float>(sc);  // the products dequantize_row uses
      min[j] = dmin * static_cast<float>(mn);
    }
    for (int c = 0; c < 4; ++c)
      for (int l = 0; l < 32; ++l) {
        q[64 * c + l] = blk[16 + 32 * c + l] & 15;
        q[64 * c + 32 + l] = blk[16 + 32 * c + l] >> 4;
      }
    return;
  }
  const uint8_t* ql = blk;  // q6_k: ql[128], qh[64], int8 scales[16], d
  const uint8_t* qh = blk + 128;
  const float d = engine::f16_to_f32(engine::load_u16(blk + 208));
  for (int j = 0; j < 16; ++j) scale[j] = d * static_cast<float>(static_cast<int8_t>(blk[192 + j]));
  for (int h = 0; h < 2; ++h)
    for (int l = 0; l < 32; ++l) {
      const uint8_t a = ql[64 * h + l], b = ql[64 * h + l + 32], hb = qh[32 * h + l];
      q[128 * h + l] = static_cast<uint8_t>((a & 15) | ((hb & 3) << 4));
      q[128 * h + l + 32] = static_cast<uint8_t>((b & 15) | (((hb >> 2) & 3) << 4));
      q[128 * h + l + 64] = static_cast<uint8_t>((a >> 4) | (((hb >> 4) & 3) << 4));
      q[128 * h + l + 96] = static_cast<uint8_t>((b >> 4) | (((hb >> 6) & 3) << 4));
    }
}

}  // namespace

void pack_kquant(DType dtype, const uint8_t* rows, int64_t n_rows, int64_t k, uint8_t* dst) {
  const int64_t nb = k / 256;
  const size_t row_bytes = engine::row_bytes(dtype, k), block_bytes = row_bytes / static_cast<size_t>(nb);
  const int subs = dtype == DType::q4_k ? 8 : 16;
  std::memset(dst, 0, packed_bytes(dtype, n_rows, k));  // rows past the matrix: zero scales
  for (int64_t j = 0; j < n_rows; ++j) {
    const int64_t l = j % kPackedRows;
    uint8_t* gd = dst + static_cast<size_t>(j / kPackedRows) * static_cast<size_t>(nb * kSuperBytes);
    for (int64_t b = 0; b < nb; ++b) {
      uint8_t q[256];
      float scale[16] = {}, min[8] = {};
      unpack_super(dtype, rows + static_cast<size_t>(j) * row_bytes + static_cast<size_t>(b) * block_bytes, q, scale,
                   min);
      uint8_t* bd = gd + b * kSuperBytes;
      for (int t = 0; t < 64; ++t) std::memcpy(bd + t * 64 + l * 4, q + 4 * t, 4);
      for (int s = 0; s < subs; ++s) std::memcpy(bd + 4096 + s * 64 + l * 4, &scale[s], 4);
      if (dtype == DType::q4_k)
        for (int s = 0; s < 8; ++s) std::memcpy(bd + 4608 + s * 64 + l * 4, &min[s], 4);
    }
  }
}

#if defined(__x86_64__)
namespace {

// kSub columns per sub-block; Q4_K (kSub 32) subtracts mins, Q6_K (kSub 16) centres at 32.
template <int kSub>
struct KquantTiles {
  static constexpr DType kDtype = kSub == 32 ? DType::q4_k : DType::q6_k;
  static constexpr bool kMins = kSub == 32;

  template <int RX, int G>
  __attribute__((target("avx512f,avx512bw,avx512vnni"))) static void pass(const uint8_t* x, size_t x_stride,
                                                                          const uint8_t* w, int64_t k, float* out,
                                                                          int64_t ldo, int64_t n_out) {
    const int64_t nb = k / 256, group_bytes = nb * kSuperBytes;
    const packed_tiles::Q8Rows<RX> xr(x, x_stride, k, 256);  // sums per 16
    __m512 acc[RX][G];
    packed_tiles::zero(acc);
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* wb = w + b * kSuperBytes;
      for (int j = 0; j < 256 / kSub; ++j) {
        __m512i dot[RX][G];
        for (int r = 0; r < RX; ++r) {
          const int fix = kMins ? 0 : -32 * xr.s[r][b * 16 + j];
          for (int g = 0; g < G; ++g) dot[r][g] = _mm512_set1_epi32(fix);
        }
        for (int t = 0; t < kSub / 4; ++t) {
          const int quad = j * (kSub / 4) + t;
          packed_tiles::dot_quad(dot, wb + quad * 64, group_bytes, xr, b * 256 + quad * 4);
        }
        for (int g = 0; g < G; ++g) {
          const __m512 sc = _mm512_load_ps(reinterpret_cast<const float*>(wb + g * group_bytes + 4096 + j * 64));
          for (int r = 0; r < RX; ++r)
            acc[r][g] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot[r][g]), _mm512_mul_ps(sc, _mm512_set1_ps(xr.d[r][b])),
                                        acc[r][g]);
          if (kMins) {
            const __m512 mn = _mm512_load_ps(reinterpret_cast<const float*>(wb + g * group_bytes + 4608 + j * 64));
            for (int r = 0; r < RX; ++r) {
              const int sum = xr.s[r][b * 16 + 2 * j] + xr.s[r][b * 16 + 2 * j + 1];
              acc[r][g] = _mm512_fnmadd_ps(mn, _mm512_set1_ps(xr.d[r][b] * static_cast<float>(sum)), acc[r][g]);
            }
          }
        }
      }
    }
    packed_tiles::store(acc, out, ldo, n_out);
  }
};

}  // namespace

void packed_kquant_tile(DType dtype, const uint8_t* x, size_t x_stride, int nx, const uint8_t* groups, int ngroups,
                        int64_t k, float* out, int64_t ldo, int64_t n_out) {
  if (dtype == DType::q4_k)
    return packed_tiles::run<KquantTiles<32>>(x, x_stride, nx, groups, ngroups, k, out, ldo, n_out);
  packed_tiles::run<KquantTiles<16>>(x, x_stride, nx, groups, ngroups, k, out, ldo, n_out);
}

#endif  // __x86_64__

}  // namespace sibyl::backend::cpu
