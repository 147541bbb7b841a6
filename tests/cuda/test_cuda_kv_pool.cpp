// The CUDA backend's paged pool and step inputs: host transfers of pages, growing, copying pages,
// bad step inputs caught on the host (at the op) and on the device (at the next read), and keyed
// steps replayed from a CUDA graph giving exactly what eager launches give.
#include <cstdlib>
#include <optional>

#include "backends/cuda/cuda_backend.h"
#include "cuda_paged_util.h"

namespace sibyl::cuda_test {
namespace {

using engine::Errc;

std::unique_ptr<Backend> cuda_backend() { return backend::create_backend(backend::BackendKind::cuda, {}); }

// ---------------------------------------------------------------- host transfers, grow, copy

TEST(CudaKvPool, RowsRoundTripAndGrowKeepsThem) {
  SKIP_WITHOUT_CUDA();
  const uint32_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  auto be = cuda_backend();
  const int64_t L = 3, W = 72, P = 16;
  auto pool = be->create_kv_pool(L, W, P);
  EXPECT_EQ(pool->n_pages(), 0);
  EXPECT_EQ(pool->page_tokens(), P);
  pool->grow(5);
  ASSERT_EQ(pool->n_pages(), 5);
  // Every page of every layer, then a partial page: exact round trips.
  std::vector<std::vector<float>> pages;
  for (int64_t l = 0; l < L; ++l)
    for (int64_t p = 0; p < 5; ++p) {
      pages.push_back(random_floats(rng, size_t(P * W)));
      be->write_kv_rows(*pool, l, p, P, pages.back().data());
    }
  const std::vector<float> part = random_floats(rng, size_t(5 * W));
  be->write_kv_rows(*pool, 2, 3, 5, part.data());
  std::copy(part.begin(), part.end(), pages[size_t(2 * 5 + 3)].begin());
  auto check_all = [&](const char* when) {
    for (int64_t l = 0; l < L; ++l)
      for (int64_t p = 0; p < 5; ++p) {
        std::vector<float> got(size_t(P * W));
        be->read_kv_rows(*pool, l, p, P, got.data());
        EXPECT_EQ(got, pages[size_t(l * 5 + p)]) << when << ": layer " << l << " page " << p;
      }
  };
  check_all("before growing");
  pool->grow(3);  // smaller: nothing changes
  EXPECT_EQ(pool->n_pages(), 5);
  pool->grow(12);
  ASSERT_EQ(pool->n_pages(), 12);
  check_all("after growing");
  for (int64_t l = 0; l < L; ++l)
    for (int64_t p = 5; p < 12; ++p) {
      std::vector<float> got(size_t(P * W), 1.0f);
      be->read_kv_rows(*pool, l, p, P, got.data());
      EXPECT_TRUE(std::all_of(got.begin(), got.end(), [](float v) { return v == 0.0f; })) << "new page " << p;
    }
  // A partial read reads only the first rows.
  std::vector<float> two(size_t(3 * W), -7.0f);
  be->read_kv_rows(*pool, 1, 4, 2, two.data());
  EXPECT_EQ(std::vector<float>(two.begin(), two.begin() + 2 * W),
            std::vector<float>(pages[size_t(5 + 4)].begin(), pages[size_t(5 + 4)].begin() + 2 * W));
  EXPECT_EQ(two[size_t(2 * W)], -7.0f) << "read past n_rows";
}

TEST(CudaKvPool, CopyPageCopiesEveryLayerInStepOrder) {
  SKIP_WITHOUT_CUDA();
  const uint32_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  auto be = cuda_backend();
  const int64_t L = 4, W = 40, P = 4;
  auto pool = be->create_kv_pool(L, W, P);
  pool->grow(6);
  std::vector<std::vector<float>> src;
  for (int64_t l = 0; l < L; ++l) {
    src.push_back(random_floats(rng, size_t(P * W)));
    be->write_kv_rows(*pool, l, 2, P, src.back().data());
  }
  be->begin_step();
  be->copy_kv_page(*pool, 5, 2);
  be->copy_kv_page(*pool, 0, 5);  // ordered after the first copy
  be->copy_kv_page(*pool, 3, 3);  // onto itself: nothing
  be->end_step();
  for (int64_t l = 0; l < L; ++l)
    for (int64_t p : {5, 0, 2}) {
      std::vector<float> got(size_t(P * W));
      be->read_kv_rows(*pool, l, p, P, got.data());
      EXPECT_EQ(got, src[size_t(l)]) << "layer " << l << " page " << p;
    }
  std::vector<float> untouched(size_t(P * W), 1.0f);
  be->read_kv_rows(*pool, 1, 4, P, untouched.data());
  EXPECT_TRUE(std::all_of(untouched.begin(), untouched.end(), [](float v) { return v == 0.0f; }));
}

TEST(CudaKvPool, BadPagesLayersAndRowCountsAreInternalErrors) {
  SKIP_WITHOUT_CUDA();
  auto be = cuda_backend();
  auto pool = be->create_kv_pool(2, 8, 4);
  pool->grow(3);
  std::vector<float> buf(64);
  EXPECT_EQ(failure_of([&] { be->read_kv_rows(*pool, 0, 3, 1, buf.data()); }), Errc::internal);
  EXPECT_EQ(failure_of([&] { be->read_kv_rows(*pool, 2, 0, 1, buf.data()); }), Errc::internal);
  EXPECT_EQ(failure_of([&] { be->read_kv_rows(*pool, 0, 0, 5, buf.data()); }), Errc::internal);
  EXPECT_EQ(failure_of([&] { be->write_kv_rows(*pool, 0, -1, 1, buf.data()); }), Errc::internal);
  EXPECT_EQ(failure_of([&] { be->copy_kv_page(*pool, 0, 3); }), Errc::internal);
  EXPECT_EQ(failure_of([&] { be->copy_kv_page(*pool, -1, 0); }), Errc::internal);
  EXPECT_EQ(failure_of([&] { be->read_kv_rows(*pool, 1, 2, 4, buf.data()); }), Errc{}) << "the last page is fine";
}

// ---------------------------------------------------------------- bad step inputs

// A tiny MLA layer on one backend: weights from fixed host bytes, so two backends get the same.
struct TinyMla {
  static constexpr int64_t H = 4, R = 64, dn = 32, dr = 16, dv = 32, W = R + dr;
  std::vector<float> host_norm, host_kv_b, host_freq;
  TinyMla() {
    std::mt19937 rng(7);
    host_norm = random_floats(rng, size_t(R), 0.5f);
    for (float& v : host_norm) v += 1.0f;
    host_kv_b = random_floats(rng, size_t(H * (dn + dv) * R), 0.1f);
    for (int64_t k = 0; k < dr / 2; ++k) host_freq.push_back(std::pow(10000.0f, -2.0f * float(k) / float(dr)));
  }
  struct On {
    std::unique_ptr<Tensor> norm, kv_b, freq;
    backend::RopeParams rope;
    backend::MlaWeights up;
  };
  On on(Backend& be) const {
    On o;
    o.norm = be.upload({"norm", DType::f32, 1, R, host_norm.data()});
    o.kv_b = be.upload({"kv_b", DType::f32, H * (dn + dv), R, host_kv_b.data()});
    o.freq = be.alloc(DType::f32, 1, dr / 2);
    be.write(*o.freq, host_freq.data(), host_freq.size() * 4);
    o.rope = {o.freq.get(), 1.0f, true};
    o.up.kv_b = o.kv_b.get();
    return o;
  }
  static backend::MlaShape shape() { return {H, R, dn, dr, dv, 1.0f / std::sqrt(float(dn + dr))}; }
};

TEST(CudaStepInputs, HostSideBatchErrorsFailAtTheOp) {
  SKIP_WITHOUT_CUDA();
  std::mt19937 rng(1);
  auto be = cuda_backend();
  const TinyMla m;
  const TinyMla::On w = m.on(*be);
  const std::vector<SeqSpec> specs = {{0, 3, MlaPath::expanded}, {0, 2, MlaPath::absorbed}};
  const PagedLayout layout = make_layout(rng, specs, 4);
  auto pool = be->create_kv_pool(1, TinyMla::W, 4);
  auto kv_a = be->alloc(DType::f32, 5, TinyMla::W);
  auto q = be->alloc(DType::f32, 5, TinyMla::H * (TinyMla::dn + TinyMla::dr));
  auto out = be->alloc(DType::f32, 5, TinyMla::H * TinyMla::dv);
  BatchTensors bt(*be, step_rows(specs, layout), layout);
  auto attempt = [&](const StepBatch& b, int64_t layer, bool attention) {
    std::string msg;
    const Errc e = failure_of(
        [&] {
          be->begin_step();
          struct End {
            Backend& b;
            ~End() { b.end_step(); }
          } end{*be};
          if (attention)
            be->mla_attention(*out, *q, *pool, layer, b, w.up, TinyMla::shape(), w.rope);
          else
            be->mla_store(*pool, layer, *kv_a, *w.norm, 1e-6f, b, w.rope);
        },
        &msg);
    return std::make_pair(e, msg);
  };
  EXPECT_EQ(attempt(bt.batch, 0, false).first, Errc::internal) << "a pool without pages";
  pool->grow(layout.n_pages);
  EXPECT_EQ(attempt(bt.batch, 0, false).first, Errc{});
  EXPECT_EQ(attempt(bt.batch, 0, true).first, Errc{});
  EXPECT_EQ(attempt(bt.batch, 1, true).first, Errc::internal) << "a layer outside the pool";
  StepBatch gap = bt.batch;
  gap.seqs[1].first_row = 4;
  EXPECT_EQ(attempt(gap, 0, false).first, Errc::internal) << "rows that skip one";
  StepBatch short_batch = bt.batch;
  short_batch.seqs.pop_back();
  EXPECT_EQ(attempt(short_batch, 0, true).first, Errc::internal) << "fewer batch rows than activations";
  StepBatch far = bt.batch;
  far.seqs[0].expanded_context = layout.max_pages * 4 + 1;
  const auto [code, msg] = attempt(far, 0, true);
  EXPECT_EQ(code, Errc::internal);
  EXPECT_NE(msg.find("expanded_context"), std::string::npos) << msg;
  StepBatch no_table = bt.batch;
  no_table.page_table = nullptr;
  EXPECT_EQ(attempt(no_table, 0, true).first, Errc::internal);
  std::vector<float> probe(size_t(TinyMla::H * TinyMla::dv * 5));
  EXPECT_EQ(failure_of([&] { be->read(*out, probe.data(), probe.size() * 4); }), Errc{})
      << "host-side errors leave no device fault behind";
}

// Page ids and positions only the device sees: the kernels skip the work, and the next read fails
// naming what was wrong; the read after it succeeds.
TEST(CudaStepInputs, DeviceSideFaultsFailTheNextReadOnce) {
  SKIP_WITHOUT_CUDA();
  std::mt19937 rng(2);
  auto be = cuda_backend();
  const TinyMla m;
  const TinyMla::On w = m.on(*be);
  const int64_t P = 4;
  const std::vector<SeqSpec> specs = {{0, 8, MlaPath::absorbed}};
  PagedLayout layout = make_layout(rng, specs, P);
  auto pool = be->create_kv_pool(1, TinyMla::W, P);
  pool->grow(layout.n_pages);
  const HostBatch hb = step_rows(specs, layout);
  BatchTensors bt(*be, hb, layout);
  auto kv_a = be->alloc(DType::f32, 8, TinyMla::W);
  auto q = be->alloc(DType::f32, 8, TinyMla::H * (TinyMla::dn + TinyMla::dr));
  auto out = be->alloc(DType::f32, 8, TinyMla::H * TinyMla::dv);
  const std::vector<float> kv_host = random_floats(rng, size_t(8 * TinyMla::W));
  const std::vector<float> q_host = random_floats(rng, size_t(8 * TinyMla::H * (TinyMla::dn + TinyMla::dr)));
  be->write(*kv_a, kv_host.data(), kv_host.size() * 4);
  be->write(*q, q_host.data(), q_host.size() * 4);
  std::vector<float> sink(size_t(8 * TinyMla::H * TinyMla::dv));
  auto read_fails_with = [&](const char* words) {
    std::string msg;
    EXPECT_EQ(failure_of([&] { be->read(*out, sink.data(), sink.size() * 4); }, &msg), Errc::internal);
    EXPECT_NE(msg.find(words), std::string::npos) << msg;
    EXPECT_EQ(failure_of([&] { be->read(*out, sink.data(), sink.size() * 4); }), Errc{}) << "reported once";
  };
  auto step = [&](bool store, MlaPath path) {
    StepBatch b = bt.batch;
    b.seqs[0].path = path;
    b.seqs[0].expanded_context = 8;
    be->begin_step();
    if (store) be->mla_store(*pool, 0, *kv_a, *w.norm, 1e-6f, b, w.rope);
    be->mla_attention(*out, *q, *pool, 0, b, w.up, TinyMla::shape(), w.rope);
    be->end_step();
  };
  step(true, MlaPath::absorbed);
  EXPECT_EQ(failure_of([&] { be->read(*out, sink.data(), sink.size() * 4); }), Errc{}) << "valid inputs";

  // A page id past the pool.
  std::vector<int32_t> table = layout.table;
  table[1] = int32_t(layout.n_pages + 10);
  be->write(*bt.page_table, table.data(), table.size() * 4);
  step(true, MlaPath::absorbed);
  read_fails_with("page table entry");
  // An attended position without a page (-1), on both paths.
  table = layout.table;
  table[0] = -1;
  be->write(*bt.page_table, table.data(), table.size() * 4);
  for (MlaPath path : {MlaPath::absorbed, MlaPath::expanded}) {
    step(false, path);
    read_fails_with("without a page");
  }
  // A row naming a sequence the batch does not have.
  be->write(*bt.page_table, layout.table.data(), layout.table.size() * 4);
  std::vector<int32_t> seqs(8, 0);
  seqs[3] = 1;
  be->write(*bt.row_seq, seqs.data(), seqs.size() * 4);
  step(false, MlaPath::absorbed);
  read_fails_with("sequence or position");
  // gather_rows past its source.
  be->write(*bt.row_seq, hb.row_seq.data(), hb.row_seq.size() * 4);
  auto idx = be->alloc(DType::i32, 2, 1);
  const int32_t bad[2] = {1, 8};
  be->write(*idx, bad, sizeof bad);
  auto picked = be->alloc(DType::f32, 2, TinyMla::H * TinyMla::dv);
  be->begin_step();
  be->gather_rows(*picked, *out, *idx);
  be->end_step();
  read_fails_with("gather_rows");
}

// ---------------------------------------------------------------- keyed steps and graphs

// Sets an environment variable for a scope (the backend reads its switches when created).
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    setenv(name, value, 1);
  }
  ~ScopedEnv() {
    if (old_)
      setenv(name_, old_->c_str(), 1);
    else
      unsetenv(name_);
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  std::optional<std::string> old_;
};

// A decode step of three sequences (4-token pages: the page tables change every few steps) run on
// two backends: one begins every step with a replay key, the other with none. Outputs must be
// equal bit for bit, step after step, with the inputs written before the step, written inside it
// (the staging halves), and after the pool grew (the recorded graphs are dropped).
TEST(CudaGraphs, KeyedDecodeStepsEqualEagerOnes) {
  SKIP_WITHOUT_CUDA();
  const uint32_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  const ScopedEnv graphs_on("SIBYL_CUDA_GRAPHS", "1");  // both backends: only keyed steps may replay
  const TinyMla m;
  const int64_t P = 4, steps = 15, n = 3;
  const std::vector<SeqSpec> final_len = {{5, steps}, {0, steps}, {13, steps}};
  const PagedLayout full = make_layout(rng, final_len, P);
  struct Side {
    std::unique_ptr<Backend> be = cuda_backend();
    TinyMla::On w;
    std::unique_ptr<backend::KvPool> pool;
    std::unique_ptr<Tensor> kv_a, q, out, idx, last;
    std::unique_ptr<BatchTensors> bt;
  };
  Side sides[2];
  std::vector<SeqSpec> now = {{5, 1}, {0, 1}, {13, 1}};
  for (Side& s : sides) {
    s.w = m.on(*s.be);
    s.pool = s.be->create_kv_pool(1, TinyMla::W, P);
    s.pool->grow(full.n_pages);
    s.kv_a = s.be->alloc(DType::f32, n, TinyMla::W);
    s.q = s.be->alloc(DType::f32, n, TinyMla::H * (TinyMla::dn + TinyMla::dr));
    s.out = s.be->alloc(DType::f32, n, TinyMla::H * TinyMla::dv);
    s.idx = s.be->alloc(DType::i32, 2, 1);
    s.last = s.be->alloc(DType::f32, 2, TinyMla::H * TinyMla::dv);
    s.bt = std::make_unique<BatchTensors>(*s.be, step_rows(now, full), full);
  }
  // The cached prefixes: random rows written straight into both pools.
  for (size_t k = 0; k < now.size(); ++k)
    for (int64_t t = 0; t < now[k].cached; ++t) {
      const std::vector<float> row = random_floats(rng, size_t(TinyMla::W));
      for (Side& s : sides) {
        std::vector<float> page(size_t(P * TinyMla::W));
        const int32_t pg = full.pages[k][size_t(t / P)];
        s.be->read_kv_rows(*s.pool, 0, pg, P, page.data());
        std::copy(row.begin(), row.end(), page.begin() + (t % P) * TinyMla::W);
        s.be->write_kv_rows(*s.pool, 0, pg, P, page.data());
      }
    }
  const uint64_t key = 0x5eed;
  for (int64_t it = 0; it < steps; ++it) {
    const bool inside = it >= 5 && it < 10;  // inputs written inside the step: staged copies
    if (it == 10)
      for (Side& s : sides) s.pool->grow(full.n_pages + 2);  // moves the pool: graphs dropped
    // Only the pages reached so far are in the table: its contents change as the sequences grow.
    PagedLayout visible = full;
    for (size_t k = 0; k < now.size(); ++k)
      for (int64_t j = (now[k].cached + 1 + P - 1) / P; j < full.max_pages; ++j)
        visible.table[k * size_t(full.max_pages) + size_t(j)] = -1;
    const HostBatch hb = step_rows(now, visible);
    const std::vector<float> kv_host = random_floats(rng, size_t(n * TinyMla::W));
    const std::vector<float> q_host = random_floats(rng, size_t(n * TinyMla::H * (TinyMla::dn + TinyMla::dr)));
    const int32_t pick_rows[2] = {2, 0};
    std::vector<float> results[2];
    for (int side = 0; side < 2; ++side) {
      Side& s = sides[side];
      auto write_inputs = [&] {
        s.bt->write(*s.be, hb, visible);
        s.be->write(*s.kv_a, kv_host.data(), kv_host.size() * 4);
        s.be->write(*s.q, q_host.data(), q_host.size() * 4);
        s.be->write(*s.idx, pick_rows, sizeof pick_rows);
      };
      if (!inside) write_inputs();
      s.be->begin_step(side == 0 ? key : 0);
      if (inside) write_inputs();
      s.be->mla_store(*s.pool, 0, *s.kv_a, *s.w.norm, 1e-6f, s.bt->batch, s.w.rope);
      s.be->mla_attention(*s.out, *s.q, *s.pool, 0, s.bt->batch, s.w.up, TinyMla::shape(), s.w.rope);
      s.be->gather_rows(*s.last, *s.out, *s.idx);
      s.be->end_step();
      results[side].resize(size_t(2 * TinyMla::H * TinyMla::dv));
      s.be->read(*s.last, results[side].data(), results[side].size() * 4);
    }
    EXPECT_EQ(results[0], results[1]) << "step " << it;
    EXPECT_TRUE(std::all_of(results[0].begin(), results[0].end(), [](float v) { return std::isfinite(v); }));
    const auto st = backend::cuda::backend_stats(*sides[0].be);
    if (it == 4) {  // one capture, replayed
      EXPECT_EQ(st.graph_captures, 1u);
      EXPECT_EQ(st.graph_launches, 5u);
    }
    if (it == 9) {  // one more capture per staging half
      EXPECT_EQ(st.graph_captures, 3u);
      EXPECT_EQ(st.graph_launches, 10u);
    }
    if (it == 14) {
      EXPECT_GE(st.graph_invalidations, 1u);
      EXPECT_EQ(st.graph_captures, 4u);
      EXPECT_EQ(st.graph_launches, 15u);
    }
    EXPECT_EQ(backend::cuda::backend_stats(*sides[1].be).graph_launches, 0u) << "unkeyed steps record nothing";
    for (SeqSpec& sp : now) ++sp.cached;
  }
  // A broken promise (other ops under the same key) costs a capture, never a wrong result.
  std::vector<float> outs[2];
  for (int side = 0; side < 2; ++side) {
    Side& s = sides[side];
    s.be->begin_step(side == 0 ? key : 0);
    s.be->mla_attention(*s.out, *s.q, *s.pool, 0, s.bt->batch, s.w.up, TinyMla::shape(), s.w.rope);
    s.be->end_step();
    outs[side].resize(size_t(n * TinyMla::H * TinyMla::dv));
    s.be->read(*s.out, outs[side].data(), outs[side].size() * 4);
  }
  EXPECT_EQ(outs[0], outs[1]);
  EXPECT_EQ(backend::cuda::backend_stats(*sides[0].be).graph_captures, 5u);
  // The pools hold the same rows.
  EXPECT_EQ(read_layer(*sides[0].be, *sides[0].pool, 0, TinyMla::W), read_layer(*sides[1].be, *sides[1].pool, 0, TinyMla::W));
}

}  // namespace
}  // namespace sibyl::cuda_test
