// Matrix products: GEMV kernels that read the stored blocks directly for a few tokens (decode is
// memory-bound), cuBLAS SGEMM for more (prefill). A non-f32 weight is dequantized to a float32
// scratch a chunk at a time (at most kScratchBytes), used and released: never a persistent copy.
#include <algorithm>

#include "backends/cuda/cublas_loader.h"
#include "backends/cuda/cuda_backend.h"

namespace sibyl::backend::cuda {
namespace {

constexpr size_t kScratchBytes = size_t(64) << 20;

int rows_per_block(int64_t n_rows) { return n_rows >= 4096 ? 4 : n_rows >= 1024 ? 2 : 1; }

int32_t narrow(int64_t v, const char* what) {
  if (v > INT32_MAX) fail(Errc::unsupported, std::string("CUDA backend: ") + what + " exceeds 2^31 - 1");
  return int32_t(v);
}

}  // namespace

void launch_gemm(const GemmParams& p, const Exec& ex) {
  const float one = 1.0f, zero = 0.0f;
  const cublasOperation_t ta = p.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, tb = p.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const int m = narrow(p.m, "GEMM m"), n = narrow(p.n, "GEMM n"), k = narrow(p.k, "GEMM k");
  const int lda = narrow(p.lda, "lda"), ldb = narrow(p.ldb, "ldb"), ldc = narrow(p.ldc, "ldc");
  if (p.batch == 1) {
    check_blas(cublas().sgemm(ex.blas, ta, tb, m, n, k, &one, p.a, lda, p.b, ldb, &zero, p.c, ldc), "cublasSgemm");
  } else {
    check_blas(cublas().sgemm_strided_batched(ex.blas, ta, tb, m, n, k, &one, p.a, lda, p.stride_a, p.b, ldb, p.stride_b,
                                         &zero, p.c, ldc, p.stride_c, narrow(p.batch, "GEMM batch")),
               "cublasSgemmStridedBatched");
  }
}

void linear(Context& ctx, const Linear& a) {
  if (a.n <= 0 || a.rows <= 0 || a.groups <= 0) return;
  const WeightView w = a.w->view();
  const int64_t K = w.cols;
  if (a.n <= kGemvMaxTokens) {
    GemvParams p{};
    p.w = w;
    p.x = a.x;
    p.y = a.y;
    p.n_rows = a.groups * a.rows;
    p.k = K;
    p.ldx = a.ldx;
    p.ldy = a.ldy;
    p.group_rows = a.rows;
    p.w_group_stride = a.w_group_stride;
    p.w_offset = a.w_offset;
    p.x_group_stride = a.x_group_stride;
    p.y_group_stride = a.y_group_stride;
    p.n_tokens = int32_t(a.n);
    p.rows_per_block = rows_per_block(p.n_rows);
    ctx.enqueue(launch_gemv, p, "gemv");
    return;
  }
  // cuBLAS, column-major: y_gᵀ [rows, n] = W_g [K, rows]ᵀ · x_gᵀ [K, n].
  GemmParams g{};
  g.n = a.n;
  g.k = K;
  g.trans_a = 1;
  g.ldb = a.ldx;
  g.ldc = a.ldy;
  g.stride_b = a.x_group_stride;
  g.stride_c = a.y_group_stride;
  if (w.dtype == int32_t(DType::f32)) {
    g.a = reinterpret_cast<const float*>(w.data) + a.w_offset * K;
    g.b = a.x;
    g.c = a.y;
    g.m = a.rows;
    g.lda = K;
    g.stride_a = a.w_group_stride * K;
    g.batch = a.groups;
    ctx.enqueue(launch_gemm, g, "gemm");
    return;
  }
  const int64_t max_rows = std::max<int64_t>(1, int64_t(kScratchBytes / size_t(K * 4)));
  if (a.groups == 1) {  // chunks of output rows
    for (int64_t r0 = 0; r0 < a.rows; r0 += max_rows) {
      const int64_t nr = std::min(max_rows, a.rows - r0);
      Scratch s(ctx, size_t(nr * K) * 4, "dequantized weight");
      DequantParams d{};
      d.w = w;
      d.out = s.f32();
      d.n_rows = nr;
      d.ldo = K;
      d.group_rows = nr;
      d.w_group_stride = nr;
      d.w_offset = a.w_offset + r0;
      ctx.enqueue(launch_dequant, d, "dequant");
      GemmParams c = g;
      c.a = s.f32();
      c.b = a.x;
      c.c = a.y + r0;
      c.m = nr;
      c.lda = K;
      c.batch = 1;
      ctx.enqueue(launch_gemm, c, "gemm");
    }
    return;
  }
  const int64_t per_chunk = std::max<int64_t>(1, max_rows / a.rows);  // whole groups
  for (int64_t g0 = 0; g0 < a.groups; g0 += per_chunk) {
    const int64_t ng = std::min(per_chunk, a.groups - g0);
    Scratch s(ctx, size_t(ng * a.rows * K) * 4, "dequantized weight");
    DequantParams d{};
    d.w = w;
    d.out = s.f32();
    d.n_rows = ng * a.rows;
    d.ldo = K;
    d.group_rows = a.rows;
    d.w_group_stride = a.w_group_stride;
    d.w_offset = a.w_offset + g0 * a.w_group_stride;
    ctx.enqueue(launch_dequant, d, "dequant");
    GemmParams c = g;
    c.a = s.f32();
    c.b = a.x + g0 * a.x_group_stride;
    c.c = a.y + g0 * a.y_group_stride;
    c.m = a.rows;
    c.lda = K;
    c.stride_a = a.rows * K;
    c.batch = ng;
    ctx.enqueue(launch_gemm, c, "gemm");
  }
}

void linear_t(Context& ctx, const LinearT& a) {
  if (a.n <= 0 || a.depth <= 0 || a.groups <= 0) return;
  const WeightView w = a.w->view();
  const int64_t N = w.cols;
  if (a.n <= kGemvTMaxTokens) {
    GemvTParams p{};
    p.w = w;
    p.x = a.x;
    p.y = a.y;
    p.depth = a.depth;
    p.n_groups = a.groups;
    p.w_group_stride = a.w_group_stride;
    p.w_offset = a.w_offset;
    p.ldx = a.ldx;
    p.x_group_stride = a.x_group_stride;
    p.ldy = a.ldy;
    p.y_group_stride = a.y_group_stride;
    p.n_tokens = int32_t(a.n);
    ctx.enqueue(launch_gemv_t, p, "gemv_t");
    return;
  }
  // Column-major: y_gᵀ [N, n] = W_g [depth, N] (as [N, depth], ld N) · x_gᵀ [depth, n].
  GemmParams g{};
  g.m = N;
  g.n = a.n;
  g.k = a.depth;
  g.lda = N;
  g.ldb = a.ldx;
  g.ldc = a.ldy;
  g.stride_b = a.x_group_stride;
  g.stride_c = a.y_group_stride;
  if (w.dtype == int32_t(DType::f32)) {
    g.a = reinterpret_cast<const float*>(w.data) + a.w_offset * N;
    g.b = a.x;
    g.c = a.y;
    g.stride_a = a.w_group_stride * N;
    g.batch = a.groups;
    ctx.enqueue(launch_gemm, g, "gemm");
    return;
  }
  const int64_t per_chunk = std::max<int64_t>(1, int64_t(kScratchBytes / size_t(a.depth * N * 4)));
  for (int64_t g0 = 0; g0 < a.groups; g0 += per_chunk) {
    const int64_t ng = std::min(per_chunk, a.groups - g0);
    Scratch s(ctx, size_t(ng * a.depth * N) * 4, "dequantized weight");
    DequantParams d{};
    d.w = w;
    d.out = s.f32();
    d.n_rows = ng * a.depth;
    d.ldo = N;
    d.group_rows = a.depth;
    d.w_group_stride = a.w_group_stride;
    d.w_offset = a.w_offset + g0 * a.w_group_stride;
    ctx.enqueue(launch_dequant, d, "dequant");
    GemmParams c = g;
    c.a = s.f32();
    c.b = a.x + g0 * a.x_group_stride;
    c.c = a.y + g0 * a.y_group_stride;
    c.stride_a = a.depth * N;
    c.batch = ng;
    ctx.enqueue(launch_gemm, c, "gemm");
  }
}

}  // namespace sibyl::backend::cuda
