// BF16 weights packed 16 rows to a vector (see packed.h).
#include <cstdint>
#include <cstring>

#include "backends/cpu/packed.h"
#include "backends/cpu/packed_tiles.h"

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

struct Bf16Tiles {
  static constexpr DType kDtype = DType::bf16;

  // 4 × 4 accumulators and 4 weight vectors fill the 32 registers; one or two rows take 8
  // groups (enough independent chains): packed_max_groups.
  template <int RX, int G>
  __attribute__((target("avx512f,avx512bw,avx512bf16"))) static void pass(const uint8_t* x, size_t x_stride,
                                                                          const uint8_t* w, int64_t k, float* out,
                                                                          int64_t ldo, int64_t n_out) {
    const int64_t pairs = k / 2, group_bytes = pairs * 64;
    __m512 acc[RX][G];
    packed_tiles::zero(acc);
    for (int64_t p = 0; p < pairs; ++p) {
      __m512i wv[G];
      for (int g = 0; g < G; ++g) wv[g] = _mm512_load_si512(w + g * group_bytes + p * 64);
      // From 3 rows on (an expert's few decode rows, a prompt's tiles) the hardware's prefetch
      // does not run far enough ahead of weights streaming from L3: ask for the next tile's
      // (the groups after these) to L2 — +4–7 % for 32 sessions' decode in lanes, measured;
      // with 1–2 rows the extra loads cost more. Addresses as integers: past the matrix they
      // are only hints.
      if constexpr (RX >= 3)
        for (int g = 0; g < G; ++g)
          __builtin_prefetch(reinterpret_cast<const void*>(reinterpret_cast<uintptr_t>(w) +
                                                           static_cast<uintptr_t>((G + g) * group_bytes + p * 64)),
                             0, 2);
      for (int r = 0; r < RX; ++r) {
        uint32_t xp;
        std::memcpy(&xp, x + static_cast<size_t>(r) * x_stride + 4 * p, 4);
        const __m512i xv = _mm512_set1_epi32(static_cast<int>(xp));
        for (int g = 0; g < G; ++g) acc[r][g] = _mm512_dpbf16_ps(acc[r][g], (__m512bh)xv, (__m512bh)wv[g]);
      }
    }
    packed_tiles::store(acc, out, ldo, n_out);
  }
};

}  // namespace

void packed_bf16_tile(const uint8_t* x, size_t x_stride, int nx, const uint8_t* groups, int ngroups, int64_t k,
                      float* out, int64_t ldo, int64_t n_out) {
  packed_tiles::run<Bf16Tiles>(x, x_stride, nx, groups, ngroups, k, out, ldo, n_out);
}

#endif  // __x86_64__

}  // namespace sibyl::backend::cpu
