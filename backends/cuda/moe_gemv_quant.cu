// Decode MoE kernels for ggml's block formats.
#include "backends/cuda/moe_gemv.cuh"

namespace sibyl::backend::cuda {

void launch_moe_gemv_quant(const MoeGemvParams& p, const Exec& ex) {
  switch (p.dtype) {
    case dev::kQ8_0: dev::moe_gemv_launch<dev::kQ8_0>(p, ex); break;
    case dev::kQ5_0: dev::moe_gemv_launch<dev::kQ5_0>(p, ex); break;
    case dev::kQ4_K: dev::moe_gemv_launch<dev::kQ4_K>(p, ex); break;
    case dev::kQ6_K: dev::moe_gemv_launch<dev::kQ6_K>(p, ex); break;
    default: throw_cuda(cudaErrorInvalidValue, "moe_gemv: unsupported weight dtype");
  }
}

}  // namespace sibyl::backend::cuda
