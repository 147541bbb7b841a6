// MLA part 1: one block per token writes its latent cache row [RMSNorm(c_kv) | RoPE(k_pe)].
#include "device.cuh"

namespace sibyl::backend::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void __launch_bounds__(kThreads) mla_store_kernel(const MlaStoreParams p) {
  __shared__ double red[32];
  const int64_t i = blockIdx.x;
  const float* src = p.kv_a + i * p.ld_kv_a;
  const int32_t pos = p.positions[i];
  float* row = p.cache + int64_t(pos) * p.width;
  double ss = 0.0;
  for (int64_t j = threadIdx.x; j < p.R; j += kThreads) ss += double(src[j]) * src[j];
  ss = dev::block_sum(ss, red);
  const float inv = float(1.0 / sqrt(ss / double(p.R) + double(p.eps)));
  for (int64_t j = threadIdx.x; j < p.R; j += kThreads)
    row[j] = __fmul_rn(dev::load_any(p.norm, 0, j), __fmul_rn(src[j], inv));
  for (int e = threadIdx.x; e < p.dr; e += kThreads)
    row[p.R + e] = dev::rope_element(p.rope, src + p.R, e, int(p.dr), pos);
}

}  // namespace

void launch_mla_store(const MlaStoreParams& p, const Exec& ex) {
  if (p.n_tokens <= 0) return;
  mla_store_kernel<<<unsigned(p.n_tokens), kThreads, 0, ex.stream>>>(p);
  check_launch("mla_store");
}

}  // namespace sibyl::backend::cuda
