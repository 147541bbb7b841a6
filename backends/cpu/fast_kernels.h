// The fast path's matmul kernels: they compute on the stored weight blocks directly, against
// activations converted once per row to the form the kernel multiplies in (8-bit blocks for
// the quantized types, bf16 where the CPU has AVX-512 BF16). Results differ from the exact
// path by the activation rounding only (tests state the bounds).
//
// Determinism contract (the batched runtime rests on it): the value computed for one pair
// (activation row, weight row) depends only on those two rows and the SIMD level — never on
// the tile it was computed in (nx, nw), the other rows, or the thread that ran it.
#pragma once
#include <cstddef>
#include <cstdint>

#include "engine/core/dtype.h"
#include "backends/cpu/simd.h"

namespace sibyl::backend::cpu {

using engine::DType;

// How a kernel wants its activation rows (each row converted on its own):
//   f32     the float32 row as is: 4·k bytes.
//   bf16    k bfloat16 values, round to nearest even: 2·k bytes.
//   q8_32   int8 qs[k] | float d[k/32] | int16 s[k/32]: value i ≈ d[i/32]·qs[i], d = amax/127 of
//           its block of 32, s[b] = Σ qs of block b.                           (Q8_0, Q5_0)
//   q8_256  int8 qs[k] | float d[k/256] | int16 s[k/16]: one d per 256 values, s per 16 values.
//                                                                              (Q4_K, Q6_K)
// qs = nearest integer of x/d (ties to even); an all-zero block has d = 0 and qs = 0.
enum class ActFormat { f32, bf16, q8_32, q8_256 };

// Bytes of one converted row of k values (a multiple of 64, so rows stay aligned), and the
// conversion itself. k must be a multiple of the format's block (32 or 256).
size_t act_row_bytes(ActFormat format, int64_t k);
void convert_activation(ActFormat format, const float* x, int64_t k, uint8_t* dst);

// A tile of dot products: out[r·ldo + c] = Σ_i x_r[i]·w_c[i] for r < nx, c < nw (1…4 each).
struct Tile {
  const uint8_t* x;            // activation row 0, in the kernel's ActFormat
  size_t x_stride;             // bytes from one activation row to the next
  int nx;
  const uint8_t* w[4];         // weight rows as stored (row_bytes(dtype, k) bytes each)
  int nw;
  const float* w_scale[4];     // f8_e4m3 only: the row's column-block scales
  int64_t scale_cols;          // f8_e4m3 only: columns per scale
  int64_t k;                   // a multiple of the weight dtype's block
  float* out;
  int64_t ldo;
};
using TileFn = void (*)(const Tile&);

struct FastKernel {
  ActFormat act;
  TileFn tile;  // nullptr: no fast kernel for this dtype (the exact path is used)
};

// The best kernel for `dtype` at the levels simd_has() allows.
FastKernel fast_kernel(DType dtype);

// Per family, the kernel for the best level allowed (each in its own file).
FastKernel q8_0_kernel();
FastKernel q5_0_kernel();
FastKernel q4_k_kernel();
FastKernel q6_k_kernel();
FastKernel bf16_kernel();
FastKernel f16_kernel();
FastKernel f32_kernel();
FastKernel f8_kernel();

}  // namespace sibyl::backend::cpu
