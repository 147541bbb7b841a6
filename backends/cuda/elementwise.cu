// Elementwise and row kernels: add, SwiGLU, RMSNorm, copies, and the MoE gather / weighted scatter.
#include "backends/cuda/device.cuh"
#include "backends/cuda/paging.cuh"

namespace sibyl::backend::cuda {
namespace {

constexpr int kThreads = 256;

unsigned blocks_for(int64_t n) {
  const int64_t b = (n + kThreads - 1) / kThreads;
  return unsigned(b < 65536 * 16 ? (b > 0 ? b : 1) : 65536 * 16);  // grid-stride beyond
}

__global__ void add_kernel(const AddParams p) {
  for (int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x; i < p.n; i += int64_t(gridDim.x) * kThreads)
    p.acc[i] += p.x[i];
}

// silu(g)·u exactly as the CPU: g / (1 + exp(−g)) · u.
__global__ void swiglu_kernel(const SwigluParams p) {
  for (int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x; i < p.n; i += int64_t(gridDim.x) * kThreads) {
    const float g = p.gate[i];
    p.out[i] = g / (1.0f + expf(-g)) * p.up[i];
  }
}

// One block per row; the sum of squares in double like the CPU backend. dst may be src.
__global__ void __launch_bounds__(kThreads) rmsnorm_kernel(const RmsnormParams p) {
  __shared__ double red[32];
  const int64_t r = blockIdx.x;
  const float* src = p.src + r * p.ld_src;
  float* dst = p.dst + r * p.ld_dst;
  double ss = 0.0;
  for (int64_t j = threadIdx.x; j < p.cols; j += kThreads) ss += double(src[j]) * src[j];
  ss = dev::block_sum(ss, red);
  const float inv = float(1.0 / sqrt(ss / double(p.cols) + double(p.eps)));
  for (int64_t j = threadIdx.x; j < p.cols; j += kThreads)
    dst[j] = __fmul_rn(dev::load_any(p.weight, 0, j), __fmul_rn(src[j], inv));
}

__global__ void gather_kernel(const GatherParams p) {
  const int64_t r = blockIdx.y, at = p.rows[r];
  float* out = p.out + r * p.cols;
  const int64_t c0 = int64_t(blockIdx.x) * kThreads + threadIdx.x, step = int64_t(gridDim.x) * kThreads;
  if (at < 0 || at >= p.n_src) {  // never read outside the source: NaN marks the row
    if (c0 == 0) dev::report(p.fault, kFaultGatherRow);
    for (int64_t c = c0; c < p.cols; c += step) out[c] = __int_as_float(0x7fc00000);
    return;
  }
  const float* src = p.x + at * p.ldx;
  for (int64_t c = c0; c < p.cols; c += step) out[c] = src[c];
}

// Rows of one launch are distinct (a token picks an expert once), so no two threads add to one element.
__global__ void scatter_add_kernel(const ScatterAddParams p) {
  const int64_t r = blockIdx.y;
  float* acc = p.acc + int64_t(p.rows[r]) * p.ld_acc;
  const float w = p.weights[p.slots[r]];
  for (int64_t c = int64_t(blockIdx.x) * kThreads + threadIdx.x; c < p.cols; c += int64_t(gridDim.x) * kThreads)
    acc[c] += w * p.src[r * p.cols + c];
}

unsigned col_blocks(int64_t cols) {
  const int64_t b = (cols + kThreads - 1) / kThreads;
  return unsigned(b < 64 ? (b > 0 ? b : 1) : 64);
}

}  // namespace

void launch_add(const AddParams& p, const Exec& ex) {
  if (p.n <= 0) return;
  add_kernel<<<blocks_for(p.n), kThreads, 0, ex.stream>>>(p);
  check_launch("add");
}

void launch_swiglu(const SwigluParams& p, const Exec& ex) {
  if (p.n <= 0) return;
  swiglu_kernel<<<blocks_for(p.n), kThreads, 0, ex.stream>>>(p);
  check_launch("swiglu");
}

void launch_rmsnorm(const RmsnormParams& p, const Exec& ex) {
  for (int64_t r0 = 0; r0 < p.n_rows; r0 += 1 << 30) {
    RmsnormParams c = p;
    c.n_rows = p.n_rows - r0 < (1 << 30) ? p.n_rows - r0 : (1 << 30);
    c.src = p.src + r0 * p.ld_src;
    c.dst = p.dst + r0 * p.ld_dst;
    rmsnorm_kernel<<<unsigned(c.n_rows), kThreads, 0, ex.stream>>>(c);
    check_launch("rmsnorm");
  }
}

void launch_copy(const CopyParams& p, const Exec& ex) {
  if (p.bytes <= 0) return;
  check(cudaMemcpyAsync(p.dst, p.src, size_t(p.bytes), cudaMemcpyKind(p.kind), ex.stream), "copy");
}

void launch_memset(const MemsetParams& p, const Exec& ex) {
  if (p.bytes <= 0) return;
  check(cudaMemsetAsync(p.dst, 0, size_t(p.bytes), ex.stream), "memset");
}

void launch_poison(const MemsetParams& p, const Exec& ex) {
  if (p.bytes <= 0) return;
  check(cudaMemsetAsync(p.dst, 0xff, size_t(p.bytes), ex.stream), "poison");
}

void launch_gather(const GatherParams& p, const Exec& ex) {
  for (int64_t r0 = 0; r0 < p.n; r0 += 65535) {
    GatherParams c = p;
    c.n = p.n - r0 < 65535 ? p.n - r0 : 65535;
    c.rows = p.rows + r0;
    c.out = p.out + r0 * p.cols;
    gather_kernel<<<dim3(col_blocks(p.cols), unsigned(c.n)), kThreads, 0, ex.stream>>>(c);
    check_launch("gather");
  }
}

void launch_scatter_add(const ScatterAddParams& p, const Exec& ex) {
  for (int64_t r0 = 0; r0 < p.n; r0 += 65535) {
    ScatterAddParams c = p;
    c.n = p.n - r0 < 65535 ? p.n - r0 : 65535;
    c.rows = p.rows + r0;
    c.slots = p.slots + r0;
    c.src = p.src + r0 * p.cols;
    scatter_add_kernel<<<dim3(col_blocks(p.cols), unsigned(c.n)), kThreads, 0, ex.stream>>>(c);
    check_launch("scatter_add");
  }
}

}  // namespace sibyl::backend::cuda
