// Matrix-vector products for up to 8 tokens, reading weight blocks directly (memory-bound decode).
// A block of 128 threads computes rows_per_block output rows; the threads of a row stride over K in
// chunks of 8 elements (one 16-byte load for bf16/f16), so a warp reads 256 consecutive elements
// per step, and each weight chunk is used for all tokens of the launch. Included by gemv_plain.cu
// and gemv_quant.cu, each instantiating its dtypes.
#pragma once
#include "backends/cuda/device.cuh"

namespace sibyl::backend::cuda::dev {

constexpr int kGemvThreads = 128;

// Reduces acc[t] over the threads of each row and writes it (thread `local == 0` of the row).
template <int NT>
__device__ __forceinline__ void gemv_finish(const GemvParams& p, float (&acc)[NT], int tpr, int local, int sub,
                                            bool active, int64_t g, int64_t r) {
  __shared__ float red[kGemvThreads / 32][NT];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int t = 0; t < NT; ++t) {
    const float v = warp_sum(acc[t]);
    if (lane == 0) red[warp][t] = v;
  }
  __syncthreads();
  if (!active || local != 0) return;
  const int wpr = tpr / 32;
  float* y = p.y + g * p.y_group_stride + r;
#pragma unroll
  for (int t = 0; t < NT; ++t) {
    if (t >= p.n_tokens) break;
    float s = 0.0f;
    for (int q = 0; q < wpr; ++q) s += red[sub * wpr + q][t];
    y[t * p.ldy] = s;
  }
}

// Vectorised: K % 8 == 0, weight rows and x rows 16-byte aligned.
template <int DT, int NT>
__global__ void __launch_bounds__(kGemvThreads) gemv_vec_kernel(const GemvParams p) {
  const int tpr = kGemvThreads / p.rows_per_block;
  const int local = threadIdx.x % tpr, sub = threadIdx.x / tpr;
  const int64_t j = int64_t(blockIdx.x) * p.rows_per_block + sub;
  const bool active = j < p.n_rows;
  float acc[NT];
#pragma unroll
  for (int t = 0; t < NT; ++t) acc[t] = 0.0f;
  int64_t g = 0, r = 0;
  if (active) {
    g = j / p.group_rows;
    r = j - g * p.group_rows;
    const int64_t wrow = g * p.w_group_stride + p.w_offset + r;
    const uint8_t* wp = p.w.data + wrow * p.w.row_bytes;
    const float* xg = p.x + g * p.x_group_stride;
#pragma unroll 2
    for (int64_t c = int64_t(local) * 8; c < p.k; c += int64_t(tpr) * 8) {
      float w[8];
      load8s<DT>(p.w, wp, wrow, c, w);
#pragma unroll
      for (int t = 0; t < NT; ++t) {
        if (t < p.n_tokens) {
          const float4* xv = reinterpret_cast<const float4*>(xg + t * p.ldx + c);
          const float4 a = __ldg(xv), b = __ldg(xv + 1);
          acc[t] += w[0] * a.x + w[1] * a.y + w[2] * a.z + w[3] * a.w + w[4] * b.x + w[5] * b.y + w[6] * b.z +
                    w[7] * b.w;
        }
      }
    }
  }
  gemv_finish<NT>(p, acc, tpr, local, sub, active, g, r);
}

// Any K and alignment, one element at a time (tiny or oddly shaped tensors); up to 8 tokens.
template <int DT>
__global__ void __launch_bounds__(kGemvThreads) gemv_scalar_kernel(const GemvParams p) {
  const int tpr = kGemvThreads / p.rows_per_block;
  const int local = threadIdx.x % tpr, sub = threadIdx.x / tpr;
  const int64_t j = int64_t(blockIdx.x) * p.rows_per_block + sub;
  const bool active = j < p.n_rows;
  float acc[8];
#pragma unroll
  for (int t = 0; t < 8; ++t) acc[t] = 0.0f;
  int64_t g = 0, r = 0;
  if (active) {
    g = j / p.group_rows;
    r = j - g * p.group_rows;
    const int64_t wrow = g * p.w_group_stride + p.w_offset + r;
    const uint8_t* wp = p.w.data + wrow * p.w.row_bytes;
    const float* xg = p.x + g * p.x_group_stride;
    for (int64_t c = local; c < p.k; c += tpr) {
      const float w = load1s<DT>(p.w, wp, wrow, c);
#pragma unroll
      for (int t = 0; t < 8; ++t)
        if (t < p.n_tokens) acc[t] += w * xg[t * p.ldx + c];
    }
  }
  gemv_finish<8>(p, acc, tpr, local, sub, active, g, r);
}

// Launches one chunk of at most 8 tokens.
template <int DT>
void gemv_launch(const GemvParams& p, const Exec& ex, bool vec) {
  const dim3 grid(unsigned((p.n_rows + p.rows_per_block - 1) / p.rows_per_block));
  if (!vec) {
    gemv_scalar_kernel<DT><<<grid, kGemvThreads, 0, ex.stream>>>(p);
  } else if (p.n_tokens == 1) {
    gemv_vec_kernel<DT, 1><<<grid, kGemvThreads, 0, ex.stream>>>(p);
  } else if (p.n_tokens == 2) {
    gemv_vec_kernel<DT, 2><<<grid, kGemvThreads, 0, ex.stream>>>(p);
  } else if (p.n_tokens <= 4) {
    gemv_vec_kernel<DT, 4><<<grid, kGemvThreads, 0, ex.stream>>>(p);
  } else {
    gemv_vec_kernel<DT, 8><<<grid, kGemvThreads, 0, ex.stream>>>(p);
  }
}

}  // namespace sibyl::backend::cuda::dev
