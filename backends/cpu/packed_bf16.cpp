// BF16 weights packed 16 rows to a vector (see packed.h).
#include "backends/cpu/packed.h"

#include <array>
#include <cstring>
#include <string>
#include <utility>

#include "engine/core/failure.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace sibyl::backend::cpu {

void pack_bf16(const uint8_t* rows, int64_t n_rows, int64_t k, uint8_t* dst) {
  const int64_t groups = (n_rows + kPackedRows - 1) / kPackedRows, pairs = k / 2;
  const size_t row_bytes = static_cast<size_t>(k) * 2;
  for (int64_t g = 0; g < groups; ++g) {
    uint8_t* gd = dst + static_cast<size_t>(g * pairs) * 64;
    for (int64_t l = 0; l < kPackedRows; ++l) {
      const int64_t j = g * kPackedRows + l;
      for (int64_t p = 0; p < pairs; ++p) {
        uint32_t v = 0;
        if (j < n_rows) std::memcpy(&v, rows + static_cast<size_t>(j) * row_bytes + 4 * p, 4);
        std::memcpy(gd + p * 64 + l * 4, &v, 4);
      }
    }
  }
}

#if defined(__x86_64__)
namespace {

template <int RX, int G>
__attribute__((target("avx512f,avx512bw,avx512bf16"))) void pass(const uint8_t* x, size_t x_stride,
                                                                 const uint8_t* w, int64_t k, float* out,
                                                                 int64_t ldo, int64_t n_out) {
  const int64_t pairs = k / 2, group_bytes = pairs * 64;
  __m512 acc[RX][G];
  for (int r = 0; r < RX; ++r)
    for (int g = 0; g < G; ++g) acc[r][g] = _mm512_setzero_ps();
  for (int64_t p = 0; p < pairs; ++p) {
    __m512i wv[G];
    for (int g = 0; g < G; ++g) wv[g] = _mm512_load_si512(w + g * group_bytes + p * 64);
    for (int r = 0; r < RX; ++r) {
      uint32_t xp;
      std::memcpy(&xp, x + static_cast<size_t>(r) * x_stride + 4 * p, 4);
      const __m512i xv = _mm512_set1_epi32(static_cast<int>(xp));
      for (int g = 0; g < G; ++g) acc[r][g] = _mm512_dpbf16_ps(acc[r][g], (__m512bh)xv, (__m512bh)wv[g]);
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

// [nx − 1][ngroups − 1], up to packed_max_groups: 4 × 4 accumulators and 4 weight vectors fill
// the 32 registers; one or two rows take 8 groups (enough independent chains).
template <int RX, size_t... G>
constexpr std::array<PassFn, 8> row_of(std::index_sequence<G...>) {
  return {(static_cast<int>(G) < packed_max_groups(DType::bf16, RX) ? &pass<RX, static_cast<int>(G) + 1>
                                                                   : nullptr)...};
}
constexpr std::array<std::array<PassFn, 8>, 4> kPasses = {
    row_of<1>(std::make_index_sequence<8>()), row_of<2>(std::make_index_sequence<8>()),
    row_of<3>(std::make_index_sequence<8>()), row_of<4>(std::make_index_sequence<8>())};

}  // namespace
#endif

void packed_bf16_tile(const uint8_t* x, size_t x_stride, int nx, const uint8_t* groups, int ngroups, int64_t k,
                      float* out, int64_t ldo, int64_t n_out) {
#if defined(__x86_64__)
  const PassFn fn = (nx >= 1 && nx <= 4 && ngroups >= 1 && ngroups <= 8) ? kPasses[nx - 1][ngroups - 1] : nullptr;
  if (fn) return fn(x, x_stride, groups, k, out, ldo, n_out);
#else
  (void)x, (void)x_stride, (void)groups, (void)k, (void)out, (void)ldo, (void)n_out;
#endif
  engine::fail(engine::Errc::internal, "packed bf16 tile: unsupported shape " + std::to_string(nx) + " x " +
                                           std::to_string(ngroups) + " groups");
}

}  // namespace sibyl::backend::cpu
