// y = x · W for a few tokens, with W used untransposed, per group (head): absorbing q_nope through
// W_UK in the kv_b layout, and expanding k_nope from the latent rows through k_b. A block owns 256
// output columns of one group and token; its 8 warps split the depth rows and each lane decodes 8
// consecutive columns of a row (one coalesced 256-column read per warp), then the warps' partial
// sums meet in shared memory.
#include "backends/cuda/device.cuh"

namespace sibyl::backend::cuda {
namespace {

constexpr int kThreads = 256, kCols = 256;

template <int DT, bool VEC>
__global__ void __launch_bounds__(kThreads) gemv_t_kernel(const GemvTParams p) {
  __shared__ float red[kThreads / 32][kCols];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t c0 = int64_t(blockIdx.x) * kCols, g = blockIdx.y, i = blockIdx.z;
  const float* x = p.x + i * p.ldx + g * p.x_group_stride;
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int64_t d = warp; d < p.depth; d += kThreads / 32) {
    const int64_t row = g * p.w_group_stride + p.w_offset + d;
    const uint8_t* rp = p.w.data + row * p.w.row_bytes;
    const float xv = x[d];
    if (VEC) {
      const int64_t c = c0 + lane * 8;
      if (c < p.w.cols) {
        float w[8];
        dev::load8s<DT>(p.w, rp, row, c, w);
#pragma unroll
        for (int k = 0; k < 8; ++k) acc[k] += xv * w[k];
      }
    } else {
#pragma unroll
      for (int k = 0; k < 8; ++k) {
        const int64_t c = c0 + lane + 32 * k;
        if (c < p.w.cols) acc[k] += xv * dev::load1s<DT>(p.w, rp, row, c);
      }
    }
  }
#pragma unroll
  for (int k = 0; k < 8; ++k) red[warp][VEC ? lane * 8 + k : lane + 32 * k] = acc[k];
  __syncthreads();
  const int64_t c = c0 + threadIdx.x;
  if (c >= p.w.cols) return;
  float s = 0.0f;
#pragma unroll
  for (int w = 0; w < kThreads / 32; ++w) s += red[w][threadIdx.x];
  p.y[i * p.ldy + g * p.y_group_stride + c] = s;
}

template <int DT>
void launch_dt(const GemvTParams& p, const Exec& ex, bool vec) {
  const dim3 grid(unsigned((p.w.cols + kCols - 1) / kCols), unsigned(p.n_groups), unsigned(p.n_tokens));
  if (vec)
    gemv_t_kernel<DT, true><<<grid, kThreads, 0, ex.stream>>>(p);
  else
    gemv_t_kernel<DT, false><<<grid, kThreads, 0, ex.stream>>>(p);
}

}  // namespace

void launch_gemv_t(const GemvTParams& p, const Exec& ex) {
  if (p.n_tokens <= 0 || p.n_groups <= 0) return;
  const bool quant = p.w.dtype >= dev::kQ8_0;
  const bool vec = p.w.cols % 8 == 0 &&
                   (quant || ((reinterpret_cast<uintptr_t>(p.w.data) & 15u) == 0 &&
                              p.w.row_bytes % (p.w.dtype == dev::kF8 ? 8 : 16) == 0));
  switch (p.w.dtype) {
    case dev::kF32: launch_dt<dev::kF32>(p, ex, vec); break;
    case dev::kF16: launch_dt<dev::kF16>(p, ex, vec); break;
    case dev::kBF16: launch_dt<dev::kBF16>(p, ex, vec); break;
    case dev::kF8: launch_dt<dev::kF8>(p, ex, vec); break;
    case dev::kQ8_0: launch_dt<dev::kQ8_0>(p, ex, vec); break;
    case dev::kQ5_0: launch_dt<dev::kQ5_0>(p, ex, vec); break;
    case dev::kQ4_K: launch_dt<dev::kQ4_K>(p, ex, vec); break;
    case dev::kQ6_K: launch_dt<dev::kQ6_K>(p, ex, vec); break;
    default: throw_cuda(cudaErrorInvalidValue, "gemv_t: unsupported weight dtype");
  }
  check_launch("gemv_t");
}

}  // namespace sibyl::backend::cuda
