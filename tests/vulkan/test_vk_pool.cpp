// The paged KV pool (host transfers of rows, growth, page copies) and recorded steps replayed
// with new inputs (begin_step's replay key), against exact expectations and the CPU oracle.
#include <cstdio>

#include "vk_mla_setup.h"

namespace sibyl::vktest {
namespace {

class VkPool : public VkVsCpu {};

constexpr int64_t kLayers = 3, kWidth = 10, kP = 4;

std::vector<float> page_rows(Backend& b, const backend::KvPool& pool, int64_t layer, int64_t page, int64_t n = kP) {
  std::vector<float> v(static_cast<size_t>(n * kWidth));
  b.read_kv_rows(pool, layer, page, n, v.data());
  return v;
}

TEST_F(VkPool, KvRowsRoundTripAndGrowKeepsContents) {
  auto pool = vk->create_kv_pool(kLayers, kWidth, kP);
  EXPECT_EQ(pool->n_pages(), 0);
  EXPECT_EQ(pool->page_tokens(), kP);
  pool->grow(3);
  std::vector<std::vector<float>> want;  // [layer * pages + page]
  for (int64_t l = 0; l < kLayers; ++l)
    for (int64_t p = 0; p < 3; ++p) {
      want.push_back(random_floats(kP * kWidth, rng));
      vk->write_kv_rows(*pool, l, p, kP, want.back().data());
    }
  // Part of a page: only its first rows change.
  const std::vector<float> part = random_floats(2 * kWidth, rng);
  vk->write_kv_rows(*pool, 2, 1, 2, part.data());
  std::copy(part.begin(), part.end(), want[2 * 3 + 1].begin());
  for (int64_t l = 0; l < kLayers; ++l)
    for (int64_t p = 0; p < 3; ++p) EXPECT_EQ(page_rows(*vk, *pool, l, p), want[l * 3 + p]) << l << "/" << p;
  EXPECT_EQ(page_rows(*vk, *pool, 0, 2, 3), std::vector<float>(want[2].begin(), want[2].begin() + 3 * kWidth));

  pool->grow(2);  // never shrinks
  EXPECT_EQ(pool->n_pages(), 3);
  pool->grow(7);
  EXPECT_EQ(pool->n_pages(), 7);
  for (int64_t l = 0; l < kLayers; ++l)
    for (int64_t p = 0; p < 3; ++p) EXPECT_EQ(page_rows(*vk, *pool, l, p), want[l * 3 + p]) << "after grow " << l << "/" << p;
  const std::vector<float> last = random_floats(kP * kWidth, rng);
  vk->write_kv_rows(*pool, 1, 6, kP, last.data());
  EXPECT_EQ(page_rows(*vk, *pool, 1, 6), last);
  EXPECT_EQ(page_rows(*vk, *pool, 1, 0), want[3]);
  std::vector<float> sink(kP * kWidth);
  EXPECT_THROW(vk->read_kv_rows(*pool, 1, 7, kP, sink.data()), engine::Failure);
  EXPECT_THROW(vk->read_kv_rows(*pool, 3, 0, kP, sink.data()), engine::Failure);
}

TEST_F(VkPool, CopyKvPageEveryLayerInOrder) {
  std::unique_ptr<backend::KvPool> pool[2] = {cpu->create_kv_pool(kLayers, kWidth, kP),
                                              vk->create_kv_pool(kLayers, kWidth, kP)};
  std::vector<std::vector<float>> init;
  for (auto& p : pool) p->grow(5);
  for (int64_t l = 0; l < kLayers; ++l)
    for (int64_t p = 0; p < 5; ++p) {
      init.push_back(random_floats(kP * kWidth, rng));
      cpu->write_kv_rows(*pool[0], l, p, kP, init.back().data());
      vk->write_kv_rows(*pool[1], l, p, kP, init.back().data());
    }
  both([&](Backend& b, int s) {
    b.copy_kv_page(*pool[s], 3, 1);
    b.copy_kv_page(*pool[s], 0, 3);  // reads what the first copy wrote
    b.copy_kv_page(*pool[s], 2, 2);
  });
  for (int64_t l = 0; l < kLayers; ++l) {
    const int64_t from[5] = {1, 1, 2, 1, 4};
    for (int64_t p = 0; p < 5; ++p) {
      const std::vector<float> got = page_rows(*vk, *pool[1], l, p);
      EXPECT_EQ(got, init[l * 5 + from[p]]) << "layer " << l << " page " << p;
      EXPECT_EQ(got, page_rows(*cpu, *pool[0], l, p)) << "layer " << l << " page " << p;
    }
  }
}

// Decode steps of three sequences begun with one replay key: recorded once, replayed with new
// positions, latents and queries (written before begin_step or inside it before the ops),
// re-recorded after the pool grows. Every step is checked against the CPU.
TEST_F(VkPool, ReplayedDecodeStepsMatchCpu) {
  const MlaDims dims{4, 64, 32, 16, 32, false, DType::bf16, true};
  MlaWeightsBoth w(*cpu, *vk, dims, rng);
  const int64_t width = w.width(), qk = dims.dn + dims.dr, steps = 8;
  const std::vector<int64_t> hist = {5, 9, 2};
  std::vector<int64_t> lengths;
  for (int64_t h : hist) lengths.push_back(h + steps);
  const int64_t max_pages = 8, n_pages = 16;
  const std::vector<int32_t> table = shuffled_page_table(lengths, kP, max_pages, n_pages, rng);
  std::unique_ptr<backend::KvPool> pool[2] = {cpu->create_kv_pool(1, width, kP), vk->create_kv_pool(1, width, kP)};
  for (auto& p : pool) p->grow(n_pages);
  {
    BatchRows rows;
    for (size_t s = 0; s < hist.size(); ++s) rows.seqs.push_back({static_cast<int32_t>(s), 0, hist[s]});
    BatchBoth b(*cpu, *vk, rows, table, max_pages);
    Pair kv = f32_both(*cpu, *vk, b.rows, width, random_floats(static_cast<size_t>(b.rows * width), rng));
    both([&](Backend& be, int s) { be.mla_store(*pool[s], 0, side(kv, s), side(w.norm, s), 1e-6f, b.batch(s), w.rope(s)); });
  }
  // The step's tensors live across steps (the replay promise); only their contents change.
  BatchRows rows;
  for (size_t s = 0; s < hist.size(); ++s) rows.seqs.push_back({static_cast<int32_t>(s), hist[s], hist[s] + 1});
  BatchBoth b(*cpu, *vk, rows, table, max_pages);
  const int64_t n = b.rows;
  Pair kv = alloc_both(*cpu, *vk, DType::f32, n, width), q = alloc_both(*cpu, *vk, DType::f32, n, dims.H * qk);
  Pair out = alloc_both(*cpu, *vk, DType::f32, n, dims.H * dims.dv), kept = alloc_both(*cpu, *vk, DType::f32, 2, dims.H * dims.dv);
  Pair keep = i32_both(*cpu, *vk, 2, 1, {2, 0});
  for (int64_t step = 0; step < steps; ++step) {
    if (step == 4)
      for (auto& p : pool) p->grow(n_pages + 3);  // new buffers: the recording must not be replayed
    std::vector<int32_t> pos;
    for (int64_t h : hist) pos.push_back(static_cast<int32_t>(h + step));
    const std::vector<float> kv_v = random_floats(static_cast<size_t>(n * width), rng);
    const std::vector<float> q_v = random_floats(static_cast<size_t>(n * dims.H * qk), rng);
    const bool inside = step % 2 == 1;  // inputs written inside the step, before its ops
    for (int s = 0; s < 2; ++s) {
      Backend& be = s ? *vk : *cpu;
      auto inputs = [&] {
        be.write(side(b.positions, s), pos.data(), pos.size() * 4);
        be.write(side(kv, s), kv_v.data(), kv_v.size() * 4);
        be.write(side(q, s), q_v.data(), q_v.size() * 4);
      };
      if (!inside) inputs();
      be.begin_step(42);
      if (inside) inputs();
      be.mla_store(*pool[s], 0, side(kv, s), side(w.norm, s), 1e-6f, b.batch(s), w.rope(s));
      be.mla_attention(side(out, s), side(q, s), *pool[s], 0, b.batch(s), w.up(s), w.shape(), w.rope(s));
      be.gather_rows(side(kept, s), side(out, s), side(keep, s));
      be.end_step();
    }
    const double err = rel_error(read_f32(*vk, *out.vk), read_f32(*cpu, *out.cpu));
    EXPECT_LT(err, 2e-5) << "step " << step;
    EXPECT_LT(rel_error(read_f32(*vk, *kept.vk), read_f32(*cpu, *kept.cpu)), 2e-5) << "step " << step;
  }
  for (size_t s = 0; s < hist.size(); ++s)  // the stores of every step, replayed ones included
    for (int64_t p = 0; p * kP < lengths[s]; ++p) {
      const int64_t page = table[s * max_pages + static_cast<size_t>(p)];
      const int64_t rows_in = std::min(kP, lengths[s] - p * kP);
      std::vector<float> a(static_cast<size_t>(rows_in * width)), e(a.size());
      vk->read_kv_rows(*pool[1], 0, page, rows_in, a.data());
      cpu->read_kv_rows(*pool[0], 0, page, rows_in, e.data());
      EXPECT_LT(rel_error(a, e), 1e-6) << "sequence " << s << " page " << p;
    }
}

// A replayed step resubmits the recorded commands: shown here by breaking the promise on
// purpose (other tensors, same ops), which a replay ignores.
TEST_F(VkPool, ReplayResubmitsTheRecording) {
  const std::vector<float> x_v = random_floats(50, rng), a_v = random_floats(50, rng), b_v = random_floats(50, rng);
  TensorPtr x = vk->alloc(DType::f32, 5, 10), a = vk->alloc(DType::f32, 5, 10), b = vk->alloc(DType::f32, 5, 10);
  vk->write(*x, x_v.data(), 200);
  vk->write(*a, a_v.data(), 200);
  vk->write(*b, b_v.data(), 200);
  vk->begin_step(9);
  vk->add(*a, *x);
  vk->end_step();
  vk->begin_step(9);
  vk->add(*b, *x);  // replayed as add(a, x)
  vk->end_step();
  std::vector<float> a_want = a_v;
  for (size_t i = 0; i < a_want.size(); ++i) a_want[i] = (a_want[i] + x_v[i]) + x_v[i];
  EXPECT_EQ(read_f32(*vk, *a), a_want);
  EXPECT_EQ(read_f32(*vk, *b), b_v);
}

TEST_F(VkPool, ReplayWithOtherOpsIsReported) {
  TensorPtr x = vk->alloc(DType::f32, 2, 8), a = vk->alloc(DType::f32, 2, 8);
  const std::vector<float> ones(16, 1.0f), zeros(16, 0.0f);
  vk->write(*x, ones.data(), 64);
  vk->write(*a, zeros.data(), 64);
  vk->begin_step(11);
  vk->add(*a, *x);
  vk->end_step();
  vk->begin_step(11);
  vk->add(*a, *x);
  vk->add(*a, *x);
  EXPECT_THROW(vk->end_step(), engine::Failure);
  vk->begin_step(11);  // recorded anew
  vk->add(*a, *x);
  vk->add(*a, *x);
  vk->end_step();
  EXPECT_EQ(read_f32(*vk, *a), std::vector<float>(16, 3.0f));
}

// Steps that read mid-way, or whose tensors were freed and reallocated, run as they are.
TEST_F(VkPool, ReplayFallsBackWhenItCannotHold) {
  TensorPtr x = vk->alloc(DType::f32, 1, 8), a = vk->alloc(DType::f32, 1, 8);
  std::vector<float> v(8, 1.0f), got(8);
  vk->write(*a, v.data(), 32);
  for (float step : {1.0f, 2.0f, 3.0f}) {
    std::fill(v.begin(), v.end(), step);
    vk->write(*x, v.data(), 32);
    vk->begin_step(12);
    vk->add(*a, *x);
    vk->read(*a, got.data(), 32);  // a capture inside the step
    vk->add(*a, *x);
    vk->end_step();
  }
  EXPECT_EQ(got, std::vector<float>(8, 10.0f));  // 1 + 2·1 + 2·2, then + 3 at the capture
  EXPECT_EQ(read_f32(*vk, *a), std::vector<float>(8, 13.0f));

  TensorPtr y = vk->alloc(DType::f32, 1, 8), c = vk->alloc(DType::f32, 1, 8);
  std::fill(v.begin(), v.end(), 0.0f);
  vk->write(*c, v.data(), 32);
  for (float step : {1.0f, 10.0f, 100.0f}) {
    y.reset();  // freed; the next one likely lands on the same memory
    y = vk->alloc(DType::f32, 1, 8);
    std::fill(v.begin(), v.end(), step);
    vk->write(*y, v.data(), 32);
    vk->begin_step(13);
    vk->add(*c, *y);
    vk->end_step();
  }
  EXPECT_EQ(read_f32(*vk, *c), std::vector<float>(8, 111.0f));
}

}  // namespace
}  // namespace sibyl::vktest
