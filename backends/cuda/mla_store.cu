// MLA part 1: one block per row writes its latent row [RMSNorm(c_kv) | RoPE(k_pe)] into the pool
// at its (sequence, position), found through the page table on the device.
#include "backends/cuda/device.cuh"
#include "backends/cuda/paging.cuh"

namespace sibyl::backend::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void __launch_bounds__(kThreads) mla_store_kernel(const MlaStoreParams p) {
  __shared__ double red[32];
  const int64_t i = blockIdx.x;
  int64_t seq = 0, pos = 0;
  // Block-uniform: every thread reads the same inputs, so returning here is safe before block_sum.
  const int64_t r = dev::row_ok(p.rows, p.kv, i, seq, pos) ? dev::row_of(p.kv, seq, pos, p.fault) : -1;
  if (r < 0) {
    if (threadIdx.x == 0) dev::report(p.fault, kFaultStoreRow);
    return;
  }
  const float* src = p.kv_a + i * p.ld_kv_a;
  float* row = p.kv.rows + r * p.kv.width;
  double ss = 0.0;
  for (int64_t j = threadIdx.x; j < p.R; j += kThreads) ss += double(src[j]) * src[j];
  ss = dev::block_sum(ss, red);
  const float inv = float(1.0 / sqrt(ss / double(p.R) + double(p.eps)));
  for (int64_t j = threadIdx.x; j < p.R; j += kThreads)
    row[j] = __fmul_rn(dev::load_any(p.norm, 0, j), __fmul_rn(src[j], inv));
  for (int e = threadIdx.x; e < p.dr; e += kThreads)
    row[p.R + e] = dev::rope_element(p.rope, src + p.R, e, int(p.dr), int32_t(pos));
}

}  // namespace

void launch_mla_store(const MlaStoreParams& p, const Exec& ex) {
  for (int64_t i0 = 0; i0 < p.n_tokens; i0 += 1 << 30) {  // gridDim.x limit, with margin
    MlaStoreParams c = p;
    c.n_tokens = p.n_tokens - i0 < (1 << 30) ? p.n_tokens - i0 : (1 << 30);
    c.kv_a = p.kv_a + i0 * p.ld_kv_a;
    c.rows.positions = p.rows.positions + i0;
    c.rows.row_seq = p.rows.row_seq + i0;
    mla_store_kernel<<<unsigned(c.n_tokens), kThreads, 0, ex.stream>>>(c);
    check_launch("mla_store");
  }
}

}  // namespace sibyl::backend::cuda
