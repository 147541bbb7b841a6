// The CUDA backend: device memory, step boundaries and the simple ops; MLA, MoE and the matmul
// dispatch live in their own files. Every op records kernel launches on the context (context.h).
#include "cuda_backend.h"

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

// ---------------------------------------------------------------- KV cache

CudaKvCache::CudaKvCache(std::shared_ptr<Context> ctx, int64_t n_layers, int64_t width)
    : ctx_(std::move(ctx)), layers_(static_cast<size_t>(n_layers), nullptr), width_(width) {}

CudaKvCache::~CudaKvCache() {
  for (float* p : layers_)
    if (p) ctx_->free_persistent(p, size_t(capacity_ * width_) * 4);
}

// Grows like the CPU cache (×2, at most +4096 rows, at least 64); contents are kept.
void CudaKvCache::reserve(int64_t tokens) {
  if (tokens <= capacity_) return;
  int64_t cap = std::max<int64_t>(tokens, std::min<int64_t>(capacity_ * 2, capacity_ + 4096));
  cap = std::max<int64_t>(cap, 64);
  const size_t old_bytes = size_t(capacity_ * width_) * 4, new_bytes = size_t(cap * width_) * 4;
  std::vector<float*> grown(layers_.size(), nullptr);
  try {
    for (float*& p : grown) p = static_cast<float*>(ctx_->alloc_persistent(new_bytes, "the KV cache"));
  } catch (...) {
    for (float* p : grown)
      if (p) ctx_->free_persistent(p, new_bytes);
    throw;
  }
  for (size_t l = 0; l < layers_.size(); ++l) {
    if (!layers_[l]) continue;
    ctx_->enqueue(launch_copy, CopyParams{grown[l], layers_[l], int64_t(old_bytes), int32_t(cudaMemcpyDeviceToDevice), 0},
                  "kv cache copy");
    ctx_->free_persistent(layers_[l], old_bytes);  // waits for the copy
  }
  layers_ = std::move(grown);
  capacity_ = cap;
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
    CudaTensor& t = dev_tensor(dst);
    if (t.dtype() == DType::i32 && bytes <= 64 * 1024) {
      t.shadow.resize(bytes / 4);
      std::memcpy(t.shadow.data(), src, t.shadow.size() * 4);
    } else {
      t.shadow.clear();
    }
    ctx_->write(t.data(), src, bytes);
  }
  void read(const Tensor& src, void* dst, size_t bytes) override {
    if (bytes > src.nbytes()) fail(Errc::internal, "CUDA backend: read past the end of a tensor");
    ctx_->read(dev_tensor(src).data(), dst, bytes);
  }
  std::unique_ptr<KvCache> create_kv_cache(int64_t n_layers, int64_t row_width) override {
    return std::make_unique<CudaKvCache>(ctx_, n_layers, row_width);
  }
  void begin_step() override { ctx_->begin_step(); }
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

  void copy_row(Tensor& dst, const Tensor& src, int64_t row) override {
    const CopyParams p{dev_tensor(dst).f32(), dev_tensor(src).f32() + row * src.cols(), src.cols() * 4,
                       int32_t(cudaMemcpyDeviceToDevice), 0};
    ctx_->enqueue(launch_copy, p, "copy_row");
  }

  void mla_store(KvCache& cache, int64_t layer, const Tensor& kv_a, const Tensor& kv_norm, float eps,
                 const Tensor& positions, const RopeParams& rope) override {
    cuda::mla_store(*ctx_, static_cast<CudaKvCache&>(cache), layer, dev_tensor(kv_a), dev_tensor(kv_norm), eps,
                    dev_tensor(positions), rope);
  }
  void mla_attention(Tensor& dst, const Tensor& q, const KvCache& cache, int64_t layer, const Tensor& positions,
                     const MlaWeights& up, const MlaShape& shape, const RopeParams& rope, MlaPath path) override {
    cuda::mla_attention(*ctx_, dev_tensor(dst), dev_tensor(q), static_cast<const CudaKvCache&>(cache), layer,
                        dev_tensor(positions), up, shape, rope, path);
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
