// Weights packed for small-k matmuls (AVX-512 only): 16 weight rows share one vector, so one
// broadcast activation value multiplies all 16 and each lane's sum is already an output. The
// row-major tiles end every (activation row, weight row) pair with a horizontal sum of 16
// lanes; at the k of a small MoE model (128–768) that sum costs as much as the products.
// Packed copies are made on first use (CpuTensor::matmul_rows), only where k ≤ kPackedMaxK.
//
//   bf16 (AVX-512 BF16): group g, element pair p: 64 bytes [row 16g + l: w[2p], w[2p + 1]]
//     for lanes l < 16; vdpbf16ps against the bf16 activation pair. Group bytes: 32·k.
//   q8_0, q5_0 (AVX-512 VNNI): group g, block b of 32 columns: 8 × 64 bytes [row 16g + l:
//     u[4t … 4t + 3]] with u = value + 128 (q8_0: the int8; q5_0: q − 16), then the 16 rows'
//     block scales as float32. vpdpbusd against broadcast q8_32 activation bytes from
//     −128·Σx, converted and scaled by d_x·d_w per block. Group bytes: 576·k/32.
//   q4_k, q6_k (AVX-512 VNNI): per super-block of 256 columns, 64 quads × 64 bytes of the
//     unsigned quants, then the sub-blocks' float scales (and Q4_K's mins); against q8_256
//     activations (packed_kquant.cpp). Group bytes: 5120·k/256.
// Rows past the matrix are zero.
//
// Determinism: lane l accumulates one pair's products in order (element pairs, or blocks,
// front to back) from zero, one chain per (activation row, weight row) whatever the tile, the
// other rows or the thread, so the contract of fast_kernels.h holds for a packed matrix. A
// tensor is packed or not for its whole life, so a pair always takes the same path.
#pragma once
#include <cstddef>
#include <cstdint>

#include "engine/core/dtype.h"

namespace sibyl::backend::cpu {

using engine::DType;

inline constexpr int64_t kPackedRows = 16;    // weight rows per group
inline constexpr int64_t kPackedMaxK = 1024;  // above this the row-major tiles are as fast

// The most groups one tile takes against nx activation rows (the registers: bf16 keeps one
// accumulator per (row, group), q8 two), non-increasing in nx.
constexpr int packed_max_groups(DType dtype, int nx) {
  if (dtype == DType::bf16) return nx <= 2 ? 8 : 4;
  return nx <= 1 ? 8 : nx == 2 ? 4 : 3;
}

// Whether a matrix of this dtype and k is packed on this CPU (at the current SIMD level).
bool packed_wanted(DType dtype, int64_t k);

// Bytes of one group of 16 rows, of the packed copy of n_rows (a multiple of 64), and the
// packing itself (`rows`: n_rows stored rows of row_bytes(dtype, k)).
size_t packed_group_bytes(DType dtype, int64_t k);
size_t packed_bytes(DType dtype, int64_t n_rows, int64_t k);
void pack_rows(DType dtype, const uint8_t* rows, int64_t n_rows, int64_t k, uint8_t* dst);

// out[r·ldo + j] = Σ_i x_r[i]·w_j[i] for r < nx (1…4) and the weight rows j < n_out of groups
// [0, ngroups) starting at `groups` (ngroups ≤ packed_max_groups(dtype, nx)).
// x rows are in the dtype's activation format (bf16, q8_32 or q8_256), x_stride bytes apart.
void packed_tile(DType dtype, const uint8_t* x, size_t x_stride, int nx, const uint8_t* groups, int ngroups,
                 int64_t k, float* out, int64_t ldo, int64_t n_out);

// The families (packed_bf16.cpp, packed_q8.cpp, packed_kquant.cpp); their tiles exist on
// x86-64 only (elsewhere packed_wanted is false).
void pack_bf16(const uint8_t* rows, int64_t n_rows, int64_t k, uint8_t* dst);
void pack_q8(DType dtype, const uint8_t* rows, int64_t n_rows, int64_t k, uint8_t* dst);
void pack_kquant(DType dtype, const uint8_t* rows, int64_t n_rows, int64_t k, uint8_t* dst);
#if defined(__x86_64__)
void packed_bf16_tile(const uint8_t* x, size_t x_stride, int nx, const uint8_t* groups, int ngroups, int64_t k,
                      float* out, int64_t ldo, int64_t n_out);
void packed_q8_tile(const uint8_t* x, size_t x_stride, int nx, const uint8_t* groups, int ngroups, int64_t k,
                    float* out, int64_t ldo, int64_t n_out);
void packed_kquant_tile(DType dtype, const uint8_t* x, size_t x_stride, int nx, const uint8_t* groups, int ngroups,
                        int64_t k, float* out, int64_t ldo, int64_t n_out);
#endif

}  // namespace sibyl::backend::cpu
