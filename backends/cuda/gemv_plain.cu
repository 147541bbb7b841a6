// Decode GEMV for the plain dtypes (f32, f16, bf16, f8_e4m3 with block scales), and the dispatcher
// that splits a launch into chunks of 8 tokens and picks the vectorised kernel when it may.
#include "backends/cuda/gemv.cuh"

namespace sibyl::backend::cuda {

void launch_gemv_plain(const GemvParams& p, const Exec& ex, bool vec) {
  switch (p.w.dtype) {
    case dev::kF32: dev::gemv_launch<dev::kF32>(p, ex, vec); break;
    case dev::kF16: dev::gemv_launch<dev::kF16>(p, ex, vec); break;
    case dev::kBF16: dev::gemv_launch<dev::kBF16>(p, ex, vec); break;
    case dev::kF8: dev::gemv_launch<dev::kF8>(p, ex, vec); break;
    default: throw_cuda(cudaErrorInvalidValue, "gemv: unsupported weight dtype");
  }
}

namespace {
bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }
}  // namespace

void launch_gemv(const GemvParams& p, const Exec& ex) {
  const bool quant = p.w.dtype >= dev::kQ8_0;
  // 16-byte loads of 8 inputs (and of 8 weights for f32/f16/bf16, 8 bytes for f8): every row and
  // every token's slice must stay aligned. Quantized blocks are read at their own alignment.
  const bool w_ok = quant || (aligned16(p.w.data) && p.w.row_bytes % (p.w.dtype == dev::kF8 ? 8 : 16) == 0);
  const bool vec = w_ok && p.k % 8 == 0 && aligned16(p.x) && p.ldx % 4 == 0 && p.x_group_stride % 4 == 0;
  for (int64_t t0 = 0; t0 < p.n_tokens; t0 += 8) {
    GemvParams c = p;
    c.n_tokens = int32_t(p.n_tokens - t0 < 8 ? p.n_tokens - t0 : 8);
    c.x = p.x + t0 * p.ldx;
    c.y = p.y + t0 * p.ldy;
    if (quant)
      launch_gemv_quant(c, ex, vec);
    else
      launch_gemv_plain(c, ex, vec);
    check_launch("gemv");
  }
}

}  // namespace sibyl::backend::cuda
