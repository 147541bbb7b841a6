// Decode MoE kernels for the plain dtypes, and the dispatcher over all dtypes.
#include "backends/cuda/moe_gemv.cuh"

namespace sibyl::backend::cuda {

void launch_moe_gemv_plain(const MoeGemvParams& p, const Exec& ex) {
  switch (p.dtype) {
    case dev::kF32: dev::moe_gemv_launch<dev::kF32>(p, ex); break;
    case dev::kF16: dev::moe_gemv_launch<dev::kF16>(p, ex); break;
    case dev::kBF16: dev::moe_gemv_launch<dev::kBF16>(p, ex); break;
    case dev::kF8: dev::moe_gemv_launch<dev::kF8>(p, ex); break;
    default: throw_cuda(cudaErrorInvalidValue, "moe_gemv: unsupported weight dtype");
  }
}

void launch_moe_gemv(const MoeGemvParams& p, const Exec& ex) {
  if (p.n_tokens <= 0) return;
  if (p.dtype >= dev::kQ8_0)
    launch_moe_gemv_quant(p, ex);
  else
    launch_moe_gemv_plain(p, ex);
  check_launch("moe_gemv");
}

}  // namespace sibyl::backend::cuda
