// Element-wise math of the fast path (SiLU gates, attention softmax) on whole arrays, 16 or 8
// values per instruction instead of one libm call each — at many rows per step std::exp was a
// tenth of the step. The exact path keeps libm.
//
// fast_exp: exp(x) to within 2 ulp (range reduction x = n·ln2 + r, a degree-7 polynomial in
// r, then 2^n), for x in [-87.33, 88.37]; below it gives 0, above it exp(88.37). Every level
// (AVX-512, AVX2, portable) runs the same multiplies and adds in the same order, without
// fused multiply-adds, so each value is bitwise the same on every level and never depends on
// its neighbours (the batched runtime's determinism).
#pragma once
#include <cstdint>

namespace sibyl::backend::cpu {

// y[i] = exp(x[i]); y may be x.
void fast_exp(float* y, const float* x, int64_t n);
// out[i] = g[i] / (1 + exp(-g[i])) · u[i] (SiLU(g)·u); out may be g or u.
void fast_silu_mul(float* out, const float* g, const float* u, int64_t n);
// s ← softmax(s): max, exp(s − max) as fast_exp, their sum in double (8 lanes, then the lanes
// in order), each times 1/sum.
void fast_softmax(float* s, int64_t n);

}  // namespace sibyl::backend::cpu
