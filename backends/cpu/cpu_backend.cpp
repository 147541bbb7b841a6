// The CPU backend: float32 arithmetic on the stored weights (bf16/fp16/fp32 are
// converted row by row inside the kernels), parallel over a thread pool. Ops run
// eagerly, so begin_step/end_step only bracket them.
#include "backends/cpu/cpu_backend.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "engine/core/failure.h"
#include "backends/cpu/packed.h"
#include "backends/cpu/simd.h"
#include "backends/cpu/vec_math.h"

namespace sibyl::backend::cpu {

CpuTensor::CpuTensor(DType dtype, int64_t rows, int64_t cols)
    : Tensor(dtype, rows, cols), owned_((nbytes() + 7) / 8, 0), data_(reinterpret_cast<uint8_t*>(owned_.data())) {}

CpuTensor::CpuTensor(DType dtype, int64_t rows, int64_t cols, const void* borrowed)
    : Tensor(dtype, rows, cols), data_(static_cast<const uint8_t*>(borrowed)) {}

void CpuTensor::set_block_scale(const void* scale, int64_t block_rows, int64_t block_cols) {
  const int64_t n = ((rows() + block_rows - 1) / block_rows) * ((cols() + block_cols - 1) / block_cols);
  scale_.resize(static_cast<size_t>(n));
  std::memcpy(scale_.data(), scale, static_cast<size_t>(n) * 4);
  block_rows_ = block_rows;
  block_cols_ = block_cols;
}

void CpuTensor::allow_packing() { packing_ = packed_wanted(dtype(), cols()); }

WeightRows CpuTensor::matmul_rows() const {
  WeightRows w = weight_rows();
  if (!packing_ || !packed_wanted(dtype(), cols())) return w;  // (a test may lower the SIMD level later)
  std::call_once(packed_once_, [&] {
    const size_t bytes = packed_bytes(dtype(), rows(), cols());
    packed_store_.reset(new uint8_t[bytes + 64]);  // every byte is written by the packing
    uint8_t* p = packed_store_.get() + (64 - reinterpret_cast<uintptr_t>(packed_store_.get()) % 64) % 64;
    pack_rows(dtype(), data_, rows(), cols(), p);
    packed_ = p;
  });
  w.packed = packed_;
  return w;
}

void CpuKvPool::grow(int64_t n_pages) {
  pages_.reserve(static_cast<size_t>(n_pages));
  while (this->n_pages() < n_pages) pages_.push_back(std::make_unique<float[]>(page_floats()));  // zeroed
}

PagedRows::PagedRows(const CpuKvPool& p, const StepBatch& batch)
    : pool(p),
      positions(cpu(*batch.positions).i32()),
      row_seq(cpu(*batch.row_seq).i32()),
      table(cpu(*batch.page_table).i32()),
      max_pages(batch.page_table->cols()),
      page_tokens(p.page_tokens()) {}

int64_t PagedRows::page_of(int64_t i, int64_t pos) const {
  const int64_t slot = pos / page_tokens;
  const int32_t page = slot < max_pages ? table[row_seq[i] * max_pages + slot] : -1;
  if (page < 0 || page >= pool.n_pages())
    fail(Errc::internal, "cpu backend: position " + std::to_string(pos) + " of step row " + std::to_string(i) +
                             " has no page");
  return page;
}

const float* PagedRows::at(int64_t layer, int64_t i, int64_t pos) const {
  return pool.row(layer, page_of(i, pos), pos % page_tokens);
}

void PagedRows::rows(int64_t layer, int64_t i, int64_t from, int64_t len, const float** out) const {
  const int64_t width = pool.width();
  for (int64_t pos = from; pos < from + len;) {
    const int64_t r0 = pos % page_tokens, count = std::min(page_tokens - r0, from + len - pos);
    const float* base = pool.row(layer, page_of(i, pos), r0);
    for (int64_t r = 0; r < count; ++r) *out++ = base + r * width;
    pos += count;
  }
}

float* PagedRows::mutable_at(CpuKvPool& p, int64_t layer, int64_t i, int64_t pos) const {
  return p.row(layer, page_of(i, pos), pos % page_tokens);
}

void gemm_exact(ThreadPool& pool, const float* x, int64_t n, int64_t ldx, const WeightRows& w, float* out, int64_t ldo) {
  // Weight rows four at a time (converted once), each tile reused by every x row.
  const int64_t quads = (w.n_rows + 3) / 4;
  pool.parallel_for(quads, 4 * n * w.k, [&](int64_t begin, int64_t end) {
    std::vector<float> scratch(w.dtype == DType::f32 ? 0 : static_cast<size_t>(4 * w.k));
    for (int64_t q = begin; q < end; ++q) {
      const int64_t j0 = q * 4, nw = std::min<int64_t>(4, w.n_rows - j0);
      const float* rows[4];
      for (int64_t c = 0; c < nw; ++c) rows[c] = w.row(j0 + c, scratch.data() + c * w.k);
      if (nw < 4) {  // the last, partial group: plain dot products (same sums)
        for (int64_t i = 0; i < n; ++i)
          for (int64_t c = 0; c < nw; ++c) out[i * ldo + j0 + c] = dot(x + i * ldx, rows[c], w.k);
        continue;
      }
      int64_t i = 0;
      for (; i + 4 <= n; i += 4) dot_4x4(x + i * ldx, ldx, rows, w.k, out + i * ldo + j0, ldo);
      for (; i < n; ++i) dot_1x4(x + i * ldx, rows, w.k, out + i * ldo + j0);
    }
  });
}

namespace {

// A position's angles are asked for by every layer's latent store and attention: each thread
// keeps the last ones per position slot, keyed by everything they depend on (the inv_freq
// values themselves, not the tensor's address, which a later model may reuse).
struct RopeCache {
  static constexpr int64_t kSlots = 32, kMaxDim = 64;
  struct Slot {
    int32_t pos = -1;
    int64_t dim = 0;
    float factor = 0.0f;
    float freq[kMaxDim / 2];
    float cs[kMaxDim];
  };
  Slot slots[kSlots];
};

void compute_rope_angles(float* cs, int64_t dim, int32_t pos, const float* inv_freq, float factor) {
  for (int64_t i = 0; i < dim / 2; ++i) {
    // Same float32 angle as the reference (inv_freq · position in float32).
    const float angle = inv_freq[i] * static_cast<float>(pos);
    cs[2 * i] = static_cast<float>(std::cos(static_cast<double>(angle))) * factor;
    cs[2 * i + 1] = static_cast<float>(std::sin(static_cast<double>(angle))) * factor;
  }
}

}  // namespace

void rope_angles(float* cs, int64_t dim, int32_t pos, const RopeParams& rope) {
  const float* inv_freq = cpu(*rope.inv_freq).f32();
  if (dim > RopeCache::kMaxDim || pos < 0) return compute_rope_angles(cs, dim, pos, inv_freq, rope.attention_factor);
  thread_local RopeCache cache;
  RopeCache::Slot& slot = cache.slots[pos % RopeCache::kSlots];
  const size_t freq_bytes = static_cast<size_t>(dim / 2) * 4;
  if (slot.pos != pos || slot.dim != dim || std::memcmp(&slot.factor, &rope.attention_factor, 4) != 0 ||
      std::memcmp(slot.freq, inv_freq, freq_bytes) != 0) {
    compute_rope_angles(slot.cs, dim, pos, inv_freq, rope.attention_factor);
    std::memcpy(slot.freq, inv_freq, freq_bytes);
    slot.pos = pos;
    slot.dim = dim;
    slot.factor = rope.attention_factor;
  }
  std::memcpy(cs, slot.cs, static_cast<size_t>(dim) * 4);
}

void rope_apply(float* x, int64_t dim, const float* cs, bool interleaved) {
  const int64_t half = dim / 2;
  for (int64_t i = 0; i < half; ++i) {
    const float c = cs[2 * i], s = cs[2 * i + 1];
    const int64_t a = interleaved ? 2 * i : i, b = interleaved ? 2 * i + 1 : i + half;
    const float x0 = x[a], x1 = x[b];
    x[a] = x0 * c - x1 * s;
    x[b] = x1 * c + x0 * s;
  }
}

void rope_rotate(float* x, int64_t dim, int32_t pos, const RopeParams& rope) {
  float cs[512];  // rope dims are 64 (DeepSeek) or less; larger ones take the heap
  std::vector<float> big(dim > 512 ? static_cast<size_t>(dim) : 0);
  float* t = dim > 512 ? big.data() : cs;
  rope_angles(t, dim, pos, rope);
  rope_apply(x, dim, t, rope.interleaved);
}

const float* NormWeight::get(const WeightRows& w) {
  if (w.dtype == DType::f32) return reinterpret_cast<const float*>(w.data);
  scratch.resize(static_cast<size_t>(w.k));  // row() converts all w.k
  return w.row(0, scratch.data());
}

void rmsnorm_row(float* dst, const float* src, const float* weight, float eps, int64_t cols) {
  // Σ x² in double: 8 lanes (lane l takes l, l + 8, …; independent chains, not one long one),
  // then the lanes in order, then the tail.
  double lanes[8] = {};
  int64_t j = 0;
  for (; j + 8 <= cols; j += 8)
    for (int l = 0; l < 8; ++l) lanes[l] += static_cast<double>(src[j + l]) * src[j + l];
  double ss = lanes[0];
  for (int l = 1; l < 8; ++l) ss += lanes[l];
  for (; j < cols; ++j) ss += static_cast<double>(src[j]) * src[j];
  const float inv = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(cols) + eps));
  for (j = 0; j < cols; ++j) dst[j] = weight[j] * (src[j] * inv);
}

namespace {

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(const BackendOptions& options)
      : pool_(options.n_threads, options.thread_nice), ex_{pool_, options.precision} {}
  const char* name() const override { return "cpu"; }
  Precision precision() const override { return ex_.precision; }
  const char* cpu_simd() const override { return simd_name(simd_best()); }
  bool batch_invariant() const override { return true; }  // every op is row by row (see gemm, mla)
  int step_lanes() const override { return pool_.size(); }
  void run_lanes(int n, const std::function<void(int)>& lane) override { pool_.run_lanes(n, lane); }

  std::unique_ptr<Tensor> upload(const HostWeight& w) override {
    // Weights stay in the memory map (zero copy) unless misaligned for their dtype.
    std::unique_ptr<CpuTensor> t;
    const size_t align = engine::is_quantized(w.dtype) ? 2 : dtype_size(w.dtype);  // quant blocks: f16 fields
    if (reinterpret_cast<uintptr_t>(w.data) % align == 0) {
      t = std::make_unique<CpuTensor>(w.dtype, w.rows, w.cols, w.data);
    } else {
      t = std::make_unique<CpuTensor>(w.dtype, w.rows, w.cols);
      std::memcpy(t->mutable_bytes(), w.data, t->nbytes());
    }
    if (w.block_scale) t->set_block_scale(w.block_scale, w.block_rows, w.block_cols);
    if (ex_.precision == Precision::fast) t->allow_packing();
    return t;
  }
  std::unique_ptr<Tensor> alloc(DType dtype, int64_t rows, int64_t cols) override {
    return std::make_unique<CpuTensor>(dtype, rows, cols);
  }
  void write(Tensor& dst, const void* src, size_t bytes) override {
    if (bytes > dst.nbytes()) fail(Errc::internal, "cpu backend: write past the end of a tensor");
    std::memcpy(cpu(dst).mutable_bytes(), src, bytes);
  }
  void read(const Tensor& src, void* dst, size_t bytes) override {
    if (bytes > src.nbytes()) fail(Errc::internal, "cpu backend: read past the end of a tensor");
    std::memcpy(dst, cpu(src).bytes(), bytes);
  }
  std::unique_ptr<KvPool> create_kv_pool(int64_t n_layers, int64_t row_width, int64_t page_tokens) override {
    return std::make_unique<CpuKvPool>(n_layers, row_width, page_tokens);
  }
  void read_kv_rows(const KvPool& pool, int64_t layer, int64_t page, int64_t n_rows, float* dst) override {
    const auto& p = kv(pool);
    check_page(p, page, n_rows);
    std::memcpy(dst, p.row(layer, page, 0), static_cast<size_t>(n_rows * p.width()) * 4);
  }
  void write_kv_rows(KvPool& pool, int64_t layer, int64_t page, int64_t n_rows, const float* src) override {
    auto& p = kv(pool);
    check_page(p, page, n_rows);
    std::memcpy(p.row(layer, page, 0), src, static_cast<size_t>(n_rows * p.width()) * 4);
  }
  void begin_step(uint64_t) override {}
  void end_step() override {}

  void embed(Tensor& dst, const Tensor& table, const Tensor& tokens) override {
    const int32_t* ids = cpu(tokens).i32();
    WeightRows rows = cpu(table).weight_rows();
    float* out = cpu(dst).f32();
    for (int64_t i = 0; i < dst.rows(); ++i) {
      float* row = out + i * dst.cols();
      const float* src = rows.row(ids[i], row);  // converts into `row` unless stored as f32
      if (src != row) std::memcpy(row, src, static_cast<size_t>(rows.k) * 4);
    }
  }

  void rmsnorm(Tensor& dst, const Tensor& src, const Tensor& weight, float eps, int64_t cols) override {
    if (cols == 0) cols = src.cols();
    const float* in = cpu(src).f32();
    float* out = cpu(dst).f32();
    NormWeight nw;
    const float* w = nw.get(cpu(weight).weight_rows());
    // cost: per row a double-precision sum and a scaling, many times its width in multiply-adds
    ex_.pool.parallel_for(src.rows(), cols * 32, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) rmsnorm_row(out + i * dst.cols(), in + i * src.cols(), w, eps, cols);
    });
  }

  void matmul(Tensor& dst, const Tensor& src, const Tensor& weight) override {
    gemm(ex_, cpu(src).f32(), src.rows(), src.cols(), cpu(weight).matmul_rows(), cpu(dst).f32(), dst.cols());
  }
  void matmul_pair(Tensor& dst_a, const Tensor& weight_a, Tensor& dst_b, const Tensor& weight_b,
                   const Tensor& src) override {
    gemm_pair(ex_, cpu(src).f32(), src.rows(), src.cols(), cpu(weight_a).matmul_rows(), cpu(dst_a).f32(),
              dst_a.cols(), cpu(weight_b).matmul_rows(), cpu(dst_b).f32(), dst_b.cols());
  }

  void add(Tensor& acc, const Tensor& x) override {
    float* a = cpu(acc).f32();
    const float* b = cpu(x).f32();
    ex_.pool.parallel_for(acc.rows() * acc.cols(), 1, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) a[i] += b[i];
    });
  }

  void swiglu(Tensor& dst, const Tensor& gate, const Tensor& up) override {
    float* out = cpu(dst).f32();
    const float* g = cpu(gate).f32();
    const float* u = cpu(up).f32();
    if (ex_.precision == Precision::fast) {
      ex_.pool.parallel_for(dst.rows() * dst.cols(), 4,
                            [&](int64_t begin, int64_t end) { fast_silu_mul(out + begin, g + begin, u + begin, end - begin); });
      return;
    }
    ex_.pool.parallel_for(dst.rows() * dst.cols(), 16, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) out[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
    });
  }

  void gather_rows(Tensor& dst, const Tensor& src, const Tensor& rows) override {
    const int32_t* r = cpu(rows).i32();
    for (int64_t i = 0; i < dst.rows(); ++i) {
      if (r[i] < 0 || r[i] >= src.rows()) fail(Errc::internal, "cpu backend: gather_rows index out of range");
      std::memcpy(cpu(dst).f32() + i * dst.cols(), cpu(src).f32() + r[i] * src.cols(),
                  static_cast<size_t>(src.cols()) * 4);
    }
  }
  void copy_kv_page(KvPool& pool, int64_t dst, int64_t src) override {
    auto& p = kv(pool);
    check_page(p, dst, 0);
    check_page(p, src, 0);
    std::memcpy(p.page(dst), p.page(src), p.page_floats() * 4);
  }

  void mla_store(KvPool& pool, int64_t layer, const Tensor& kv_a, const Tensor& kv_norm, float eps,
                 const StepBatch& batch, const RopeParams& rope) override {
    cpu::mla_store(ex_, kv(pool), layer, cpu(kv_a), cpu(kv_norm), eps, batch, rope);
  }
  void mla_attention(Tensor& dst, const Tensor& q, const KvPool& pool, int64_t layer, const StepBatch& batch,
                     const MlaWeights& up, const MlaShape& shape, const RopeParams& rope) override {
    cpu::mla_attention(ex_, cpu(dst), cpu(q), kv(pool), layer, batch, up, shape, rope);
  }
  void moe_route(Tensor& ids, Tensor& weights, Tensor* raw_logits, const Tensor& x, const Tensor& gate,
                 const Tensor* score_bias, const RouterParams& params) override {
    cpu::moe_route(ex_, cpu(ids), cpu(weights), raw_logits ? &cpu(*raw_logits) : nullptr, cpu(x), cpu(gate),
                   score_bias ? &cpu(*score_bias) : nullptr, params);
  }
  void moe_experts(Tensor& dst, const Tensor& x, const Tensor& ids, const Tensor& weights,
                   const ExpertWeights& experts) override {
    cpu::moe_experts(ex_, cpu(dst), cpu(x), cpu(ids), cpu(weights), experts);
  }

 private:
  static CpuKvPool& kv(KvPool& p) { return static_cast<CpuKvPool&>(p); }
  static const CpuKvPool& kv(const KvPool& p) { return static_cast<const CpuKvPool&>(p); }
  static void check_page(const CpuKvPool& p, int64_t page, int64_t n_rows) {
    if (page < 0 || page >= p.n_pages() || n_rows < 0 || n_rows > p.page_tokens())
      fail(Errc::internal, "cpu backend: KV page " + std::to_string(page) + " (" + std::to_string(n_rows) +
                               " rows) outside the pool");
  }

  ThreadPool pool_;
  Exec ex_;
};

}  // namespace
}  // namespace sibyl::backend::cpu

namespace sibyl::backend {
std::unique_ptr<Backend> create_cpu_backend(const BackendOptions& options) {
  return std::make_unique<cpu::CpuBackend>(options);
}
}  // namespace sibyl::backend
