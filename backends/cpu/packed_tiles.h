// What the packed tile families share (packed_bf16.cpp, packed_q8.cpp, packed_kquant.cpp): the
// table of tile shapes with its dispatch, the view of 8-bit activation rows, and the masked
// store of a tile's accumulators. Internal to those files.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>

#include "backends/cpu/packed.h"
#include "engine/core/failure.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

// GCC 12 warns inside its own AVX-512 headers about the intrinsics' unused merge operand (in
// every file that includes this one).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace sibyl::backend::cpu::packed_tiles {

using PassFn = void (*)(const uint8_t* x, size_t x_stride, const uint8_t* w, int64_t k, float* out, int64_t ldo,
                        int64_t n_out);

// F::pass<RX, G> for RX activation rows and G groups up to packed_max_groups(F::kDtype, RX),
// indexed [RX − 1][G − 1]; nullptr past that.
template <class F, int RX, size_t... G>
constexpr std::array<PassFn, 8> row_of(std::index_sequence<G...>) {
  return {(static_cast<int>(G) < packed_max_groups(F::kDtype, RX) ? &F::template pass<RX, static_cast<int>(G) + 1>
                                                                   : nullptr)...};
}
template <class F>
constexpr std::array<std::array<PassFn, 8>, 4> kTable = {
    row_of<F, 1>(std::make_index_sequence<8>()), row_of<F, 2>(std::make_index_sequence<8>()),
    row_of<F, 3>(std::make_index_sequence<8>()), row_of<F, 4>(std::make_index_sequence<8>())};

// The tile of family F for nx rows × ngroups groups (packed.h's packed_tile), or an internal
// error for a shape the table lacks.
template <class F>
void run(const uint8_t* x, size_t x_stride, int nx, const uint8_t* groups, int ngroups, int64_t k, float* out,
         int64_t ldo, int64_t n_out) {
  const PassFn fn = (nx >= 1 && nx <= 4 && ngroups >= 1 && ngroups <= 8) ? kTable<F>[nx - 1][ngroups - 1] : nullptr;
  if (!fn)
    engine::fail(engine::Errc::internal, std::string("packed ") + engine::dtype_name(F::kDtype) +
                                             " tile: unsupported shape " + std::to_string(nx) + " x " +
                                             std::to_string(ngroups) + " groups");
  fn(x, x_stride, groups, k, out, ldo, n_out);
}

// RX rows of 8-bit activations (ActFormat q8_32 or q8_256): qs[k] | d[k / block] | s[k / span].
template <int RX>
struct Q8Rows {
  const int8_t* qs[RX];
  const float* d[RX];
  const int16_t* s[RX];
  Q8Rows(const uint8_t* x, size_t x_stride, int64_t k, int64_t block) {
    for (int r = 0; r < RX; ++r) {
      const uint8_t* row = x + static_cast<size_t>(r) * x_stride;
      qs[r] = reinterpret_cast<const int8_t*>(row);
      d[r] = reinterpret_cast<const float*>(row + k);
      s[r] = reinterpret_cast<const int16_t*>(row + k + (k / block) * 4);
    }
  }
};

#if defined(__x86_64__)

template <int RX, int G>
__attribute__((target("avx512f"))) inline void zero(__m512 (&acc)[RX][G]) {
  for (int r = 0; r < RX; ++r)
    for (int g = 0; g < G; ++g) acc[r][g] = _mm512_setzero_ps();
}

// One quad of 8-bit columns: dot[r][g] += Σ over the 4 columns at x_offset of row r's bytes
// (broadcast to every lane) times group g's unsigned weight bytes at w + g·group_bytes.
template <int RX, int G>
__attribute__((target("avx512f,avx512bw,avx512vnni"))) inline void dot_quad(__m512i (&dot)[RX][G], const uint8_t* w,
                                                                             int64_t group_bytes,
                                                                             const Q8Rows<RX>& xr, int64_t x_offset) {
  __m512i wv[G];
  for (int g = 0; g < G; ++g) wv[g] = _mm512_load_si512(w + g * group_bytes);
  for (int r = 0; r < RX; ++r) {
    uint32_t xq;
    std::memcpy(&xq, xr.qs[r] + x_offset, 4);
    const __m512i xv = _mm512_set1_epi32(static_cast<int>(xq));
    for (int g = 0; g < G; ++g) dot[r][g] = _mm512_dpbusd_epi32(dot[r][g], wv[g], xv);
  }
}

// Lane l of acc[r][g] is out[r·ldo + 16g + l], for the tile's first n_out weight rows.
template <int RX, int G>
__attribute__((target("avx512f"))) inline void store(const __m512 (&acc)[RX][G], float* out, int64_t ldo,
                                                     int64_t n_out) {
  for (int g = 0; g < G; ++g) {
    const int64_t lanes = n_out - g * kPackedRows;
    if (lanes <= 0) break;
    const __mmask16 m = lanes >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << lanes) - 1u);
    for (int r = 0; r < RX; ++r) _mm512_mask_storeu_ps(out + r * ldo + g * kPackedRows, m, acc[r][g]);
  }
}

#endif

}  // namespace sibyl::backend::cpu::packed_tiles
