// BF16 weights packed for small-k matmuls (AVX-512 BF16 only). The row-major tiles end every
// (activation row, weight row) pair with a horizontal sum of 16 lanes; at the k of a small
// MoE model (128–768) that sum costs as much as the products. Packed, 16 weight rows share
// one vector: element pair p of group g is 64 bytes [row 16g + l: w[2p], w[2p + 1]] for lanes
// l < 16 (rows past the matrix are zero), one broadcast activation pair multiplies all 16
// rows, and each lane's sum is already the output. No reduction, no tail.
//
// Determinism: lane l accumulates the pair's products in order p = 0, 1, … with vdpbf16ps,
// one chain per (activation row, weight row) whatever the tile, the other rows or the
// thread, so the contract of fast_kernels.h holds for a packed matrix. A tensor is packed or
// not for its whole life, so a pair always takes the same path.
#pragma once
#include <cstddef>
#include <cstdint>

namespace sibyl::backend::cpu {

inline constexpr int64_t kPackedRows = 16;        // weight rows per group
inline constexpr int64_t kPackedMaxK = 1024;      // above this the row-major tiles are as fast

// Whether a bf16 matrix of this k is packed on this CPU (AVX-512 BF16, k even, k ≤ kPackedMaxK).
bool packed_bf16_wanted(int64_t k);

// Bytes of the packed copy of n_rows × k bf16 (a multiple of 64), and the packing itself.
size_t packed_bf16_bytes(int64_t n_rows, int64_t k);
void pack_bf16(const uint8_t* rows, int64_t n_rows, int64_t k, uint8_t* dst);

// out[r·ldo + j] = Σ_i x_r[i]·w_j[i] for r < nx (1…4) and the weight rows j < n_out of
// groups [0, ngroups) starting at `groups` (ngroups ≤ 8 when nx ≤ 2, else ≤ 4). x rows are
// bf16 (ActFormat::bf16), x_stride bytes apart.
void packed_bf16_tile(const uint8_t* x, size_t x_stride, int nx, const uint8_t* groups, int ngroups, int64_t k,
                      float* out, int64_t ldo, int64_t n_out);

}  // namespace sibyl::backend::cpu
