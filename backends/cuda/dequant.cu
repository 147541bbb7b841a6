// Weight rows to float32: the embedding lookup, and the scratch a cuBLAS GEMM reads for a
// prefill-sized matmul on a non-f32 weight (a chunk per call; never a persistent copy).
#include "backends/cuda/device.cuh"

namespace sibyl::backend::cuda {
namespace {

constexpr int kThreads = 256;

template <int DT, bool VEC>
__global__ void __launch_bounds__(kThreads) dequant_kernel(const DequantParams p) {
  const int64_t r = blockIdx.y;
  const int64_t src = p.row_ids ? int64_t(p.row_ids[r])
                                : (r / p.group_rows) * p.w_group_stride + p.w_offset + r % p.group_rows;
  const uint8_t* rp = p.w.data + src * p.w.row_bytes;
  float* out = p.out + r * p.ldo;
  if (VEC) {
    const int64_t c = (int64_t(blockIdx.x) * kThreads + threadIdx.x) * 8;
    if (c >= p.w.cols) return;
    float v[8];
    dev::load8s<DT>(p.w, rp, src, c, v);
#pragma unroll
    for (int k = 0; k < 8; ++k) out[c + k] = v[k];
  } else {
    for (int64_t c = int64_t(blockIdx.x) * kThreads + threadIdx.x; c < p.w.cols; c += int64_t(gridDim.x) * kThreads)
      out[c] = dev::load1s<DT>(p.w, rp, src, c);
  }
}

template <int DT>
void launch_dt(const DequantParams& p, const Exec& ex, bool vec) {
  const int64_t per_block = vec ? kThreads * 8 : kThreads;
  const dim3 grid(unsigned((p.w.cols + per_block - 1) / per_block), unsigned(p.n_rows));
  if (vec)
    dequant_kernel<DT, true><<<grid, kThreads, 0, ex.stream>>>(p);
  else
    dequant_kernel<DT, false><<<grid, kThreads, 0, ex.stream>>>(p);
}

}  // namespace

void launch_dequant(const DequantParams& p, const Exec& ex) {
  if (p.n_rows <= 0) return;
  if (p.n_rows > 65535) {  // gridDim.y limit: split, keeping whole groups together
    const bool one_group = p.row_ids || p.n_rows <= p.group_rows;
    const int64_t step = one_group ? 65535 : (65535 / p.group_rows) * p.group_rows;
    if (step == 0) throw_cuda(cudaErrorInvalidValue, "dequant: a group of more than 65535 rows");
    for (int64_t r0 = 0; r0 < p.n_rows; r0 += step) {
      DequantParams c = p;
      c.n_rows = p.n_rows - r0 < step ? p.n_rows - r0 : step;
      c.out = p.out + r0 * p.ldo;
      if (p.row_ids)
        c.row_ids = p.row_ids + r0;
      else
        c.w_offset = one_group ? p.w_offset + r0 : p.w_offset + (r0 / p.group_rows) * p.w_group_stride;
      launch_dequant(c, ex);
    }
    return;
  }
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
    default: throw_cuda(cudaErrorInvalidValue, "dequant: unsupported weight dtype");
  }
  check_launch("dequant");
}

}  // namespace sibyl::backend::cuda
