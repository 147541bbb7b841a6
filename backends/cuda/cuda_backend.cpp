// The CUDA backend: device memory, step boundaries and the simple ops; MLA, MoE and the matmul
// dispatch live in their own files. Every op records kernel launches on the context (context.h).
#include "backends/cuda/cuda_backend.h"

#include <algorithm>
#include <cstring>

namespace sibyl::backend::cuda {

// ---------------------------------------------------------------- tensors

CudaTensor::CudaTensor(std::shared_ptr<Context> ctx, DType dtype, int64_t rows, int64_t cols, bool persistent,
                       const std::string& what)
    : Tensor(dtype, rows, cols), ctx_(std::move(ctx)), bytes_(nbytes()), persistent_(persistent) {
  if (rows < 0 || cols < 0 || cols % engine::block_elems(dtype) != 0)
    fail(Errc::internal, "CUDA backend: bad tensor shape for " + what);
  data_ = persistent_ ? ctx_->alloc_persistent(bytes_, what) : ctx_->alloc_temp(bytes_, what);
  if (!persistent_ && ctx_->poison() && bytes_)  // NaN everywhere: unwritten outputs show in the tests
    ctx_->enqueue(launch_poison, MemsetParams{data_, int64_t(bytes_)}, "poison");
}

CudaTensor::~CudaTensor() {
  attachment.reset();
  if (scale_) ctx_->free_persistent(scale_, scale_bytes_);
  if (persistent_)
    ctx_->free_persistent(data_, bytes_);
  else
    ctx_->free_temp(data_);
}

void CudaTensor::set_block_scale(const void* host_scale, int64_t block_rows, int64_t block_cols) {
  if (block_rows <= 0 || block_cols <= 0) fail(Errc::format, "CUDA backend: FP8 weight without a block size");
  const int64_t n = ((rows() + block_rows - 1) / block_rows) * ((cols() + block_cols - 1) / block_cols);
  std::vector<float> copy(static_cast<size_t>(n));  // the file's copy may be misaligned
  std::memcpy(copy.data(), host_scale, copy.size() * 4);
  scale_bytes_ = copy.size() * 4;
  scale_ = static_cast<float*>(ctx_->alloc_persistent(scale_bytes_, "FP8 block scales"));
  ctx_->upload(scale_, copy.data(), scale_bytes_);
  block_rows_ = int32_t(block_rows);
  block_cols_ = int32_t(block_cols);
  scale_cols_ = int32_t((cols() + block_cols - 1) / block_cols);
}

WeightView CudaTensor::view() const {
  return WeightView{static_cast<const uint8_t*>(data_), scale_,          rows(),      cols(),
                    int64_t(engine::row_bytes(dtype(), cols())), int32_t(dtype()), block_rows_, block_cols_,
                    scale_cols_};
}

RopeArgs rope_args(const RopeParams& rope) {
  return RopeArgs{dev_tensor(*rope.inv_freq).f32(), rope.attention_factor, rope.interleaved ? 1 : 0};
}

// ---------------------------------------------------------------- the backend

namespace {

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(std::shared_ptr<Context> ctx) : ctx_(std::move(ctx)) {}
  const char* name() const override { return "cuda"; }
  Context& context() const { return *ctx_; }

  std::unique_ptr<Tensor> upload(const HostWeight& w) override {
    auto t = std::make_unique<CudaTensor>(ctx_, w.dtype, w.rows, w.cols, true, "weight " + w.name);
    ctx_->upload(t->data(), w.data, t->nbytes());
    if (w.block_scale) t->set_block_scale(w.block_scale, w.block_rows, w.block_cols);
    return t;
  }
  std::unique_ptr<Tensor> alloc(DType dtype, int64_t rows, int64_t cols) override {
    return std::make_unique<CudaTensor>(ctx_, dtype, rows, cols, false, "activations");
  }
  void write(Tensor& dst, const void* src, size_t bytes) override {
    if (bytes > dst.nbytes()) fail(Errc::internal, "CUDA backend: write past the end of a tensor");
    ctx_->write(dev_tensor(dst).data(), src, bytes);
  }
  void read(const Tensor& src, void* dst, size_t bytes) override {
    if (bytes > src.nbytes()) fail(Errc::internal, "CUDA backend: read past the end of a tensor");
    ctx_->read(dev_tensor(src).data(), dst, bytes);
  }
  std::unique_ptr<KvPool> create_kv_pool(int64_t n_layers, int64_t row_width, int64_t page_tokens) override {
    return std::make_unique<CudaKvPool>(ctx_, n_layers, row_width, page_tokens);
  }
  void read_kv_rows(const KvPool& pool, int64_t layer, int64_t page, int64_t n_rows, float* dst) override {
    const CudaKvPool& p = dev_pool(pool);
    const float* src = p.page(layer, page, "read_kv_rows");
    if (n_rows < 0 || n_rows > p.page_tokens()) fail(Errc::internal, "CUDA backend: read_kv_rows: bad row count");
    ctx_->read(src, dst, size_t(n_rows * p.width()) * sizeof(float));
  }
  void write_kv_rows(KvPool& pool, int64_t layer, int64_t page, int64_t n_rows, const float* src) override {
    CudaKvPool& p = dev_pool(pool);
    float* dst = p.page(layer, page, "write_kv_rows");
    if (n_rows < 0 || n_rows > p.page_tokens()) fail(Errc::internal, "CUDA backend: write_kv_rows: bad row count");
    ctx_->write_sync(dst, src, size_t(n_rows * p.width()) * sizeof(float));
  }
  void begin_step(uint64_t replay_key) override { ctx_->begin_step(replay_key); }
  void end_step() override { ctx_->end_step(); }

  void embed(Tensor& dst, const Tensor& table, const Tensor& tokens) override {
    if (table.cols() != dst.cols()) fail(Errc::internal, "CUDA backend: embed width mismatch");
    DequantParams p{};
    p.w = dev_tensor(table).view();
    p.out = dev_tensor(dst).f32();
    p.row_ids = dev_tensor(tokens).i32();
    p.n_rows = dst.rows();
    p.ldo = dst.cols();
    p.group_rows = 1;
    ctx_->enqueue(launch_dequant, p, "embed");
  }

  void rmsnorm(Tensor& dst, const Tensor& src, const Tensor& weight, float eps, int64_t cols) override {
    RmsnormParams p{};
    p.weight = dev_tensor(weight).view();
    p.src = dev_tensor(src).f32();
    p.dst = dev_tensor(dst).f32();
    p.n_rows = src.rows();
    p.cols = cols ? cols : src.cols();
    p.ld_src = src.cols();
    p.ld_dst = dst.cols();
    p.eps = eps;
    ctx_->enqueue(launch_rmsnorm, p, "rmsnorm");
  }

  void matmul(Tensor& dst, const Tensor& src, const Tensor& weight) override {
    if (src.cols() < weight.cols() || dst.cols() < weight.rows())
      fail(Errc::internal, "CUDA backend: matmul shapes do not match");
    Linear a{};
    a.w = &dev_tensor(weight);
    a.rows = weight.rows();
    a.x = dev_tensor(src).f32();
    a.ldx = src.cols();
    a.y = dev_tensor(dst).f32();
    a.ldy = dst.cols();
    a.n = src.rows();
    linear(*ctx_, a);
  }

  void add(Tensor& acc, const Tensor& x) override {
    ctx_->enqueue(launch_add, AddParams{dev_tensor(acc).f32(), dev_tensor(x).f32(), acc.rows() * acc.cols()}, "add");
  }

  void swiglu(Tensor& dst, const Tensor& gate, const Tensor& up) override {
    ctx_->enqueue(launch_swiglu,
                  SwigluParams{dev_tensor(dst).f32(), dev_tensor(gate).f32(), dev_tensor(up).f32(), dst.rows() * dst.cols()},
                  "swiglu");
  }

  void gather_rows(Tensor& dst, const Tensor& src, const Tensor& rows) override {
    if (dst.cols() != src.cols() || dst.dtype() != src.dtype() || dtype_size(src.dtype()) != 4 ||
        rows.dtype() != DType::i32 || rows.rows() * rows.cols() < dst.rows())
      fail(Errc::internal, "CUDA backend: gather_rows shapes do not match");
    const GatherParams p{dev_tensor(dst).f32(), dev_tensor(src).f32(), dev_tensor(rows).i32(), dst.rows(), dst.cols(),
                         src.cols(), src.rows(), ctx_->fault_word()};
    if (dst.rows() > 0) ctx_->enqueue(launch_gather, p, "gather_rows");
  }

  // One device copy per layer, in stream order with the step's other ops.
  void copy_kv_page(KvPool& pool, int64_t dst, int64_t src) override {
    CudaKvPool& p = dev_pool(pool);
    if (dst < 0 || src < 0 || dst >= p.n_pages() || src >= p.n_pages())
      fail(Errc::internal, "CUDA backend: copy_kv_page: page " + std::to_string(dst < 0 || dst >= p.n_pages() ? dst : src) +
                               " is outside the pool's " + std::to_string(p.n_pages()) + " pages");
    for (int64_t l = 0; l < p.n_layers(); ++l) {
      float* to = p.page(l, dst, "copy_kv_page");
      const float* from = p.page(l, src, "copy_kv_page");
      if (to == from) continue;
      ctx_->enqueue(launch_copy, CopyParams{to, from, int64_t(p.page_bytes()), int32_t(cudaMemcpyDeviceToDevice), 0},
                    "copy_kv_page");
    }
  }

  void mla_store(KvPool& pool, int64_t layer, const Tensor& kv_a, const Tensor& kv_norm, float eps,
                 const StepBatch& batch, const RopeParams& rope) override {
    cuda::mla_store(*ctx_, dev_pool(pool), layer, dev_tensor(kv_a), dev_tensor(kv_norm), eps, batch, rope);
  }
  void mla_attention(Tensor& dst, const Tensor& q, const KvPool& pool, int64_t layer, const StepBatch& batch,
                     const MlaWeights& up, const MlaShape& shape, const RopeParams& rope) override {
    cuda::mla_attention(*ctx_, dev_tensor(dst), dev_tensor(q), dev_pool(pool), layer, batch, up, shape, rope);
  }
  void moe_route(Tensor& ids, Tensor& weights, Tensor* raw_logits, const Tensor& x, const Tensor& gate,
                 const Tensor* score_bias, const RouterParams& params) override {
    cuda::moe_route(*ctx_, dev_tensor(ids), dev_tensor(weights), raw_logits ? &dev_tensor(*raw_logits) : nullptr,
                    dev_tensor(x), dev_tensor(gate), score_bias ? &dev_tensor(*score_bias) : nullptr, params);
  }
  void moe_experts(Tensor& dst, const Tensor& x, const Tensor& ids, const Tensor& weights,
                   const ExpertWeights& experts) override {
    cuda::moe_experts(*ctx_, dev_tensor(dst), dev_tensor(x), dev_tensor(ids), dev_tensor(weights), experts);
  }

 private:
  std::shared_ptr<Context> ctx_;
};

}  // namespace

Stats backend_stats(const Backend& b) {
  const auto* cb = dynamic_cast<const CudaBackend*>(&b);
  if (!cb) fail(Errc::invalid_argument, "not a CUDA backend");
  return cb->context().stats();
}

}  // namespace sibyl::backend::cuda

namespace sibyl::backend {

std::unique_ptr<Backend> create_cuda_backend(const BackendOptions& options) {
  return std::make_unique<cuda::CudaBackend>(cuda::Context::create(options));
}

}  // namespace sibyl::backend
