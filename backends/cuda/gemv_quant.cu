// Decode GEMV for ggml's block formats (Q8_0, Q5_0, Q4_K, Q6_K), dequantised in registers.
#include "backends/cuda/gemv.cuh"

namespace sibyl::backend::cuda {

void launch_gemv_quant(const GemvParams& p, const Exec& ex, bool vec) {
  switch (p.w.dtype) {
    case dev::kQ8_0: dev::gemv_launch<dev::kQ8_0>(p, ex, vec); break;
    case dev::kQ5_0: dev::gemv_launch<dev::kQ5_0>(p, ex, vec); break;
    case dev::kQ4_K: dev::gemv_launch<dev::kQ4_K>(p, ex, vec); break;
    case dev::kQ6_K: dev::gemv_launch<dev::kQ6_K>(p, ex, vec); break;
    default: throw_cuda(cudaErrorInvalidValue, "gemv: unsupported weight dtype");
  }
}

}  // namespace sibyl::backend::cuda
