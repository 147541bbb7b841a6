// Decode-sized MoE kernels reading the expert weights through a device table indexed by the
// router's choices, so a decode step needs no host round trip (and can be a CUDA graph). One warp
// per output row; lanes read 8 consecutive elements (16 bytes of bf16) per step. See MoeGemvParams.
#pragma once
#include "backends/cuda/device.cuh"

namespace sibyl::backend::cuda::dev {

constexpr int kMoeRowsPerBlock = 4;

template <int DT, int NW>
__device__ __forceinline__ void moe_dot(const WeightView* ws, int64_t j, const float* x, int64_t k, float* out) {
  const uint8_t* rp[NW];
#pragma unroll
  for (int q = 0; q < NW; ++q) {
    rp[q] = ws[q].data + j * ws[q].row_bytes;
    out[q] = 0.0f;
  }
  const int lane = threadIdx.x & 31;
  for (int64_t c = int64_t(lane) * 8; c < k; c += 256) {
    const float4* xv = reinterpret_cast<const float4*>(x + c);
    const float4 a = __ldg(xv), b = __ldg(xv + 1);
#pragma unroll
    for (int q = 0; q < NW; ++q) {
      float w[8];
      load8s<DT>(ws[q], rp[q], j, c, w);
      out[q] += w[0] * a.x + w[1] * a.y + w[2] * a.z + w[3] * a.w + w[4] * b.x + w[5] * b.y + w[6] * b.z + w[7] * b.w;
    }
  }
#pragma unroll
  for (int q = 0; q < NW; ++q) out[q] = warp_sum(out[q]);
}

template <int DT, int MODE>
__global__ void __launch_bounds__(kMoeRowsPerBlock * 32) moe_gemv_kernel(const MoeGemvParams p) {
  const int lane = threadIdx.x & 31;
  const int64_t j = int64_t(blockIdx.x) * kMoeRowsPerBlock + (threadIdx.x >> 5);
  if (j >= p.rows) return;  // whole warps; no block barriers
  if constexpr (MODE == 2) {
    const int64_t i = blockIdx.y;
    float total = 0.0f;
    for (int64_t k = 0; k < p.top_k; ++k) {
      const int64_t slot = i * p.top_k + k;
      const WeightView w = p.table_a[p.ids[slot]];
      float d;
      moe_dot<DT, 1>(&w, j, p.x + slot * p.ldx, p.k, &d);
      total += p.weights[slot] * d;
    }
    if (lane == 0) p.y[i * p.ldy + j] = total;
  } else {
    const int64_t slot = blockIdx.y;
    const int e = p.ids[slot];
    const float* x = p.x + (slot / p.top_k) * p.ldx;
    if constexpr (MODE == 1) {
      const WeightView ws[2] = {p.table_a[e], p.table_b[e]};
      float gu[2];
      moe_dot<DT, 2>(ws, j, x, p.k, gu);
      if (lane == 0) p.y[slot * p.ldy + j] = gu[0] / (1.0f + expf(-gu[0])) * gu[1];
    } else {
      const WeightView w = p.table_a[e];
      float a;
      moe_dot<DT, 1>(&w, j, x, p.k, &a);
      if (lane == 0) p.y[slot * p.ldy + j] = a;
    }
  }
}

template <int DT>
void moe_gemv_launch(const MoeGemvParams& p, const Exec& ex) {
  const dim3 grid(unsigned((p.rows + kMoeRowsPerBlock - 1) / kMoeRowsPerBlock),
                  unsigned(p.mode == 2 ? p.n_tokens : p.n_tokens * p.top_k));
  const int threads = kMoeRowsPerBlock * 32;
  if (p.mode == 0)
    moe_gemv_kernel<DT, 0><<<grid, threads, 0, ex.stream>>>(p);
  else if (p.mode == 1)
    moe_gemv_kernel<DT, 1><<<grid, threads, 0, ex.stream>>>(p);
  else
    moe_gemv_kernel<DT, 2><<<grid, threads, 0, ex.stream>>>(p);
}

}  // namespace sibyl::backend::cuda::dev
