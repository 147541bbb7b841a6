// The expanded MLA path's input: one sequence's latent rows [0, n) gathered through its page table
// into a contiguous array, so the expansion (cuBLAS) and the prefill kernel read plain rows.
#include "backends/cuda/paging.cuh"

namespace sibyl::backend::cuda {
namespace {

constexpr int kThreads = 128;

// Blocks stride over the rows; a row's page is looked up once per block.
__global__ void __launch_bounds__(kThreads) kv_gather_kernel(const KvGatherParams p) {
  const int64_t W = p.kv.width;
  for (int64_t t = blockIdx.x; t < p.n; t += gridDim.x) {
    const int64_t r = dev::row_of(p.kv, p.seq, t, p.fault);
    float* out = p.out + t * W;
    if (r < 0) {  // past the sequence's end (or a reported bad id): zeros, never read as a key
      for (int64_t c = threadIdx.x; c < W; c += kThreads) out[c] = 0.0f;
      continue;
    }
    const float* src = p.kv.rows + r * W;
    for (int64_t c = threadIdx.x; c < W; c += kThreads) out[c] = src[c];
  }
}

}  // namespace

void launch_kv_gather(const KvGatherParams& p, const Exec& ex) {
  if (p.n <= 0) return;
  if (p.n > p.kv.max_pages * p.kv.page_tokens) throw_cuda(cudaErrorInvalidValue, "kv_gather: beyond the page table");
  const unsigned blocks = unsigned(p.n < 65535 ? p.n : 65535);
  kv_gather_kernel<<<blocks, kThreads, 0, ex.stream>>>(p);
  check_launch("kv_gather");
}

}  // namespace sibyl::backend::cuda
