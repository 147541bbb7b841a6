// Device-side lookups in the paged latent cache (kernels.h PagedKv), with the bounds checks that
// turn bad step inputs into fault bits instead of stray memory accesses.
#pragma once
#include <cstdint>

#include "backends/cuda/kernels.h"

namespace sibyl::backend::cuda::dev {

__device__ __forceinline__ void report(int32_t* fault, int32_t bits) {
  if (fault) atomicOr(fault, bits);
}

// The page holding position `pos` of sequence `seq`: -1 when the table has none there (a page id
// outside [-1, n_pages) is reported and treated as none). `pos` must lie in [0, max_pages · P).
__device__ __forceinline__ int64_t page_of(const PagedKv& kv, int64_t seq, int64_t pos, int32_t* fault) {
  const int32_t page = kv.page_table[seq * kv.max_pages + pos / kv.page_tokens];
  if (page < -1 || page >= kv.n_pages) {
    report(fault, kFaultPageId);
    return -1;
  }
  return page;
}

// The layer row of (seq, pos), or -1 when it has no page.
__device__ __forceinline__ int64_t row_of(const PagedKv& kv, int64_t seq, int64_t pos, int32_t* fault) {
  const int64_t page = page_of(kv, seq, pos, fault);
  return page < 0 ? -1 : page * kv.page_tokens + pos % kv.page_tokens;
}

// Whether row i of a run names a sequence of the run and a position its page table can hold.
__device__ __forceinline__ bool row_ok(const BatchRows& r, const PagedKv& kv, int64_t i, int64_t& seq, int64_t& pos) {
  seq = r.row_seq[i];
  pos = r.positions[i];
  return seq >= r.seq_lo && seq < r.seq_hi && pos >= 0 && pos < kv.max_pages * kv.page_tokens;
}

}  // namespace sibyl::backend::cuda::dev
