// The paged latent cache (one device buffer per layer, grown by copying) and the host-side checks
// of a step batch, done before any of its kernels is recorded.
#include <climits>

#include "backends/cuda/cuda_backend.h"

namespace sibyl::backend::cuda {

// ---------------------------------------------------------------- the pool

CudaKvPool::CudaKvPool(std::shared_ptr<Context> ctx, int64_t n_layers, int64_t width, int64_t page_tokens)
    : ctx_(std::move(ctx)), width_(width), page_tokens_(page_tokens) {
  if (n_layers < 0 || width <= 0 || page_tokens <= 0 || page_tokens > INT32_MAX / width)
    fail(Errc::internal, "CUDA backend: bad KV pool shape (" + std::to_string(n_layers) + " layers, width " +
                             std::to_string(width) + ", " + std::to_string(page_tokens) + " tokens a page)");
  layers_.resize(static_cast<size_t>(n_layers));
}

CudaKvPool::~CudaKvPool() {
  for (const Layer& l : layers_)
    if (l.rows) ctx_->free_persistent(l.rows, size_t(l.pages) * page_bytes());
}

// Layer by layer, so the peak is the old pool plus one new layer. A failure leaves n_pages() and
// every page's contents as they were (layers already grown keep their room for the next try).
void CudaKvPool::grow(int64_t n) {
  if (n <= n_pages_) return;
  if (n > INT32_MAX / page_tokens_)  // positions and page ids are i32 on the device
    fail(Errc::out_of_memory, "CUDA backend: a KV pool of " + std::to_string(n) + " pages of " +
                                  std::to_string(page_tokens_) + " tokens exceeds 2^31 - 1 rows");
  const size_t kept = size_t(n_pages_) * page_bytes(), bytes = size_t(n) * page_bytes();
  const int64_t kept_floats = n_pages_ * page_tokens_ * width_;
  for (Layer& l : layers_) {
    if (l.pages >= n) continue;
    auto* fresh = static_cast<float*>(ctx_->alloc_persistent(bytes, "the KV pool"));
    // New pages read as zeros, like the CPU pool's. Both ops are ordered after any recorded work.
    ctx_->enqueue(launch_memset, MemsetParams{fresh + kept_floats, int64_t(bytes - kept)}, "kv_pool_zero");
    if (l.rows) {
      ctx_->enqueue(launch_copy, CopyParams{fresh, l.rows, int64_t(kept), int32_t(cudaMemcpyDeviceToDevice), 0},
                    "kv_pool_grow");
      ctx_->free_persistent(l.rows, size_t(l.pages) * page_bytes());  // waits for the copy
    }
    l.rows = fresh;
    l.pages = n;
  }
  n_pages_ = n;
  ctx_->invalidate_graphs();  // recorded steps point at the old buffers
}

float* CudaKvPool::layer(int64_t l, const char* op) const {
  if (l < 0 || l >= n_layers())
    fail(Errc::internal, std::string("CUDA backend: ") + op + ": layer " + std::to_string(l) + " is outside the pool's " +
                             std::to_string(n_layers()) + " layers");
  return layers_[static_cast<size_t>(l)].rows;
}

float* CudaKvPool::page(int64_t l, int64_t p, const char* op) const {
  float* rows = layer(l, op);
  if (p < 0 || p >= n_pages_)
    fail(Errc::internal, std::string("CUDA backend: ") + op + ": page " + std::to_string(p) + " is outside the pool's " +
                             std::to_string(n_pages_) + " pages");
  return rows + p * page_tokens_ * width_;
}

// ---------------------------------------------------------------- step batches

CheckedBatch check_batch(const StepBatch& b, const CudaKvPool& pool, int64_t n, const char* op) {
  auto bad = [&](const std::string& why) { fail(Errc::internal, std::string("CUDA backend: ") + op + ": " + why); };
  if (!b.positions || !b.row_seq || !b.page_table) bad("the step batch lacks positions, row_seq or page_table");
  for (const Tensor* t : {b.positions, b.row_seq, b.page_table})
    if (t->dtype() != DType::i32) bad("the step batch's positions, row_seq and page_table must be i32");
  const int64_t n_seqs = int64_t(b.seqs.size());
  int64_t next = 0;
  for (int64_t k = 0; k < n_seqs; ++k) {
    const SeqRows& s = b.seqs[static_cast<size_t>(k)];
    if (s.first_row != next || s.n_rows < 0)
      bad("sequence " + std::to_string(k) + "'s rows [" + std::to_string(s.first_row) + ", +" +
          std::to_string(s.n_rows) + ") do not follow the previous sequence's (row " + std::to_string(next) + ")");
    next += s.n_rows;
  }
  if (next != n) bad("the batch has " + std::to_string(next) + " rows but the activations " + std::to_string(n));
  if (b.positions->cols() != 1 || b.positions->rows() < n || b.row_seq->cols() != 1 || b.row_seq->rows() < n)
    bad("positions and row_seq must be [n, 1] with n = " + std::to_string(n));
  if (b.page_table->rows() < n_seqs || (n_seqs > 0 && b.page_table->cols() < 1))
    bad("the page table has " + std::to_string(b.page_table->rows()) + " rows for " + std::to_string(n_seqs) +
        " sequences");
  const int64_t max_pages = b.page_table->cols();
  if (max_pages > INT32_MAX / pool.page_tokens()) bad("the page table addresses more than 2^31 - 1 positions");
  if (n > 0 && pool.n_pages() == 0) bad("the KV pool has no pages yet (grow it first)");
  for (int64_t k = 0; k < n_seqs; ++k) {
    const SeqRows& s = b.seqs[static_cast<size_t>(k)];
    if (s.path == MlaPath::expanded && s.n_rows > 0 &&
        (s.expanded_context < 1 || s.expanded_context > max_pages * pool.page_tokens()))
      bad("sequence " + std::to_string(k) + "'s expanded_context " + std::to_string(s.expanded_context) +
          " is outside [1, max_pages · page_tokens = " + std::to_string(max_pages * pool.page_tokens()) + "]");
  }
  return CheckedBatch{&b, &dev_tensor(*b.positions), &dev_tensor(*b.row_seq), &dev_tensor(*b.page_table), n, n_seqs,
                      max_pages};
}

PagedKv CheckedBatch::layer_view(const CudaKvPool& pool, int64_t layer, const char* op) const {
  return PagedKv{pool.layer(layer, op), page_table->i32(), pool.n_pages(), pool.page_tokens(), max_pages, pool.width()};
}

BatchRows CheckedBatch::rows(int64_t first_row, int64_t seq_lo, int64_t seq_hi) const {
  return BatchRows{positions->i32() + first_row, row_seq->i32() + first_row, seq_lo, seq_hi};
}

}  // namespace sibyl::backend::cuda
