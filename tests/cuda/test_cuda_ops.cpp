// The CUDA backend's dense and MoE ops against the CPU backend on fresh random inputs: every weight
// dtype on both matmul paths (GEMV kernels for few tokens, dequantize + cuBLAS for many), the
// row ops, the three router rules with ties, and both MoE paths. MLA: test_cuda_mla.cpp.
// Tolerances are for the float32 path (TF32 off): the only differences are summation orders.
#include <algorithm>
#include <map>

#include "cuda_test_util.h"

namespace sibyl::cuda_test {
namespace {

using backend::ExpertSelect;
using backend::ScoreFunc;

constexpr double kTol = 2e-5;  // float32, different summation order

std::vector<DType> all_weight_dtypes() {
  return {DType::f32, DType::f16, DType::bf16, DType::f8_e4m3, DType::q8_0, DType::q5_0, DType::q4_k, DType::q6_k};
}

// ---------------------------------------------------------------- matmul

struct MatmulCase {
  DType dtype;
  int64_t n, rows, cols;
};

class CudaMatmul : public ::testing::TestWithParam<MatmulCase> {};

TEST_P(CudaMatmul, MatchesCpu) {
  SKIP_WITHOUT_CUDA();
  const MatmulCase c = GetParam();
  const uint32_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  Pair p;
  auto w = p.weight(rng, c.dtype, c.rows, c.cols, 128, 128);
  auto x = p.floats(rng, c.n, c.cols);
  auto y = p.output(DType::f32, c.n, c.rows);
  p.run([&](Backend& b, bool g) { b.matmul(pick(y, g), pick(x, g), pick(w, g)); });
  auto [ref, got] = p.read(y);
  EXPECT_LT(rel_error(got, ref), kTol) << engine::dtype_name(c.dtype) << " n=" << c.n;
}

std::vector<MatmulCase> matmul_cases() {
  std::vector<MatmulCase> out;
  for (DType t : all_weight_dtypes()) {
    const bool quant = engine::is_quantized(t);
    for (int64_t n : {1, 2, 3, 8, 13, 40, 70}) {
      out.push_back({t, n, 200, quant ? 512 : 264});  // vectorised kernels
      if (!quant && n <= 13) out.push_back({t, n, 37, 70});  // K not a multiple of 8: scalar kernels
    }
  }
  return out;
}

INSTANTIATE_TEST_SUITE_P(AllDtypes, CudaMatmul, ::testing::ValuesIn(matmul_cases()), [](const auto& info) {
  return std::string(engine::dtype_name(info.param.dtype)) + "_n" + std::to_string(info.param.n) + "_k" +
         std::to_string(info.param.cols);
});

// FP8 with blocks that do not divide the shape and are not multiples of 8.
TEST(CudaMatmulFp8, OddBlocks) {
  SKIP_WITHOUT_CUDA();
  const uint32_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  for (int64_t n : {1, 5, 50}) {
    Pair p;
    auto w = p.weight(rng, DType::f8_e4m3, 75, 136, 7, 12);
    auto x = p.floats(rng, n, 136);
    auto y = p.output(DType::f32, n, 75);
    p.run([&](Backend& b, bool g) { b.matmul(pick(y, g), pick(x, g), pick(w, g)); });
    auto [ref, got] = p.read(y);
    EXPECT_LT(rel_error(got, ref), kTol) << "n=" << n;
  }
}

// ---------------------------------------------------------------- simple ops

TEST(CudaOps, EmbedEveryDtype) {
  SKIP_WITHOUT_CUDA();
  const uint32_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  for (DType t : all_weight_dtypes()) {
    Pair p;
    const int64_t cols = engine::is_quantized(t) ? 512 : 96;
    auto table = p.weight(rng, t, 50, cols);
    std::vector<int32_t> ids = {3, 0, 49, 3, 17};
    auto tok = p.input(DType::i32, 5, 1, ids.data());
    auto out = p.output(DType::f32, 5, cols);
    p.run([&](Backend& b, bool g) { b.embed(pick(out, g), pick(table, g), pick(tok, g)); });
    auto [ref, got] = p.read(out);
    EXPECT_EQ(got, ref) << engine::dtype_name(t) << ": dequantization must be exact";
  }
}

TEST(CudaOps, RmsnormAddSwigluGatherRows) {
  SKIP_WITHOUT_CUDA();
  const uint32_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  for (DType wt : {DType::f32, DType::bf16}) {
    Pair p;
    auto w = p.weight(rng, wt, 1, 300);
    auto x = p.floats(rng, 7, 300);
    auto y = p.output(DType::f32, 7, 300);
    auto prefix = p.floats(rng, 7, 300);
    p.run([&](Backend& b, bool g) {
      b.rmsnorm(pick(y, g), pick(x, g), pick(w, g), 1e-6f);
      b.rmsnorm(pick(prefix, g), pick(prefix, g), pick(w, g), 1e-5f, 120);  // in place, a column prefix
    });
    auto [r1, g1] = p.read(y);
    EXPECT_LT(rel_error(g1, r1), 1e-6) << engine::dtype_name(wt);
    auto [r2, g2] = p.read(prefix);
    EXPECT_LT(rel_error(g2, r2), 1e-6) << engine::dtype_name(wt);
  }
  Pair p;
  auto a = p.floats(rng, 9, 33), b = p.floats(rng, 9, 33), c = p.floats(rng, 9, 33);
  auto s = p.output(DType::f32, 9, 33), rows = p.output(DType::f32, 5, 33);
  const std::vector<int32_t> picks = {4, 0, 8, 4, 7};  // repeats, first and last rows
  auto idx = p.input(DType::i32, 5, 1, picks.data());
  p.run([&](Backend& be, bool g) {
    be.add(pick(a, g), pick(b, g));
    be.swiglu(pick(s, g), pick(a, g), pick(c, g));
    be.gather_rows(pick(rows, g), pick(s, g), pick(idx, g));
  });
  auto [ra, ga] = p.read(a);
  EXPECT_EQ(ga, ra);
  auto [rs, gs] = p.read(s);
  EXPECT_LT(rel_error(gs, rs), 1e-6);
  auto [rr, gr] = p.read(rows);
  for (size_t i = 0; i < picks.size(); ++i)
    EXPECT_EQ(std::vector<float>(gr.begin() + i * 33, gr.begin() + (i + 1) * 33),
              std::vector<float>(gs.begin() + picks[i] * 33, gs.begin() + (picks[i] + 1) * 33))
        << "row " << i;
  EXPECT_EQ(gr, rr);
}

// ---------------------------------------------------------------- MoE router

struct RouteCase {
  ScoreFunc score;
  ExpertSelect select;
  int64_t E, K, groups, topk_groups;
  bool bias, normalize, ties;
};

class CudaRoute : public ::testing::TestWithParam<RouteCase> {};

TEST_P(CudaRoute, SameExpertsAndWeightsAsCpu) {
  SKIP_WITHOUT_CUDA();
  const RouteCase c = GetParam();
  const uint32_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  Pair p;
  const int64_t n = 37, Hd = 64;
  auto gate = p.weight(rng, DType::f32, c.E, Hd);
  Pair::Two bias{};
  if (c.bias) bias = p.weight(rng, DType::f32, 1, c.E);
  auto x = p.floats(rng, n, Hd);
  if (c.ties) {  // identical tokens' rows and duplicate expert rows: exact ties in the scores
    std::vector<float> rows = random_floats(rng, size_t(n * Hd));
    for (int64_t i = 1; i < n; i += 2) std::copy_n(rows.begin() + (i - 1) * Hd, Hd, rows.begin() + i * Hd);
    x = p.input(DType::f32, n, Hd, rows.data());
    std::vector<float> g(size_t(c.E * Hd));
    for (int64_t e = 0; e < c.E; ++e)
      for (int64_t k = 0; k < Hd; ++k) g[size_t(e * Hd + k)] = float(((e / 2) * 7 + k) % 5) * 0.1f - 0.2f;
    p.host.emplace_back(reinterpret_cast<uint8_t*>(g.data()), reinterpret_cast<uint8_t*>(g.data() + g.size()));
    backend::HostWeight hw{"gate", DType::f32, c.E, Hd, p.host.back().data()};
    gate = {p.owned.emplace_back(p.cpu->upload(hw)).get(), p.owned.emplace_back(p.gpu->upload(hw)).get()};
  }
  auto ids = p.output(DType::i32, n, c.K);
  auto w = p.output(DType::f32, n, c.K);
  auto raw = p.output(DType::f32, n, c.E);
  backend::RouterParams rp{c.score, c.select, c.E, c.K, c.groups, c.topk_groups, c.normalize, 2.5f};
  p.run([&](Backend& b, bool g) {
    b.moe_route(pick(ids, g), pick(w, g), &pick(raw, g), pick(x, g), pick(gate, g), c.bias ? &pick(bias, g) : nullptr,
                rp);
  });
  auto [rid, gid] = p.read<int32_t>(ids);
  EXPECT_EQ(gid, rid);
  auto [rw, gw] = p.read(w);
  EXPECT_LT(rel_error(gw, rw), 1e-5);
  auto [rr, gr] = p.read(raw);
  EXPECT_LT(rel_error(gr, rr), 1e-5);
}

std::vector<RouteCase> route_cases() {
  std::vector<RouteCase> out;
  for (bool ties : {false, true})
    for (ScoreFunc s : {ScoreFunc::softmax, ScoreFunc::sigmoid}) {
      out.push_back({s, ExpertSelect::greedy, 16, 4, 1, 1, false, false, ties});
      out.push_back({s, ExpertSelect::greedy, 64, 6, 1, 1, false, true, ties});
      out.push_back({s, ExpertSelect::group_limited, 16, 4, 4, 2, false, false, ties});
      out.push_back({s, ExpertSelect::group_limited, 64, 6, 8, 3, false, true, ties});
      out.push_back({s, ExpertSelect::noaux_tc, 16, 4, 4, 2, true, true, ties});
      out.push_back({s, ExpertSelect::noaux_tc, 256, 8, 8, 4, true, true, ties});
      out.push_back({s, ExpertSelect::noaux_tc, 40, 3, 40, 5, false, true, ties});  // single-expert groups
    }
  return out;
}

std::string route_name(const ::testing::TestParamInfo<RouteCase>& info) {
  const RouteCase& c = info.param;
  static const char* sel[] = {"greedy", "group_limited", "noaux_tc"};
  return std::to_string(info.index) + "_" + (c.score == ScoreFunc::softmax ? "softmax_" : "sigmoid_") +
         sel[int(c.select)] + "_E" + std::to_string(c.E) + (c.ties ? "_ties" : "");
}

INSTANTIATE_TEST_SUITE_P(Rules, CudaRoute, ::testing::ValuesIn(route_cases()), route_name);

// ---------------------------------------------------------------- MoE experts

struct ExpertCase {
  const char* name;
  DType gate, up, down;
  int64_t n;
  bool mixed_experts;  // expert 0 stored in another dtype: the device table cannot serve it
};

class CudaExperts : public ::testing::TestWithParam<ExpertCase> {};

TEST_P(CudaExperts, MatchCpu) {
  SKIP_WITHOUT_CUDA();
  const ExpertCase c = GetParam();
  const uint32_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  Pair p;
  const int64_t E = 16, K = 4, Hd = 256, I = 256;
  backend::ExpertWeights ec, eg;
  for (int64_t e = 0; e < E; ++e) {
    const bool odd = c.mixed_experts && e == 0;
    auto g = p.weight(rng, odd ? DType::bf16 : c.gate, I, Hd);
    auto u = p.weight(rng, c.up, I, Hd);
    auto d = p.weight(rng, odd ? DType::f32 : c.down, Hd, I);
    ec.gate.push_back(g.cpu), eg.gate.push_back(g.gpu);
    ec.up.push_back(u.cpu), eg.up.push_back(u.gpu);
    ec.down.push_back(d.cpu), eg.down.push_back(d.gpu);
  }
  std::vector<int32_t> id(size_t(c.n * K));
  std::vector<float> wt(id.size());
  std::uniform_real_distribution<float> uw(0.1f, 1.0f);
  for (int64_t i = 0; i < c.n; ++i) {
    std::vector<int32_t> all(E);
    for (int32_t e = 0; e < E; ++e) all[size_t(e)] = e;
    std::shuffle(all.begin(), all.end(), rng);
    for (int64_t k = 0; k < K; ++k) id[size_t(i * K + k)] = all[size_t(k)], wt[size_t(i * K + k)] = uw(rng);
  }
  auto ids = p.input(DType::i32, c.n, K, id.data());
  auto w = p.input(DType::f32, c.n, K, wt.data());
  auto x = p.floats(rng, c.n, Hd);
  auto out = p.output(DType::f32, c.n, Hd);
  p.run([&](Backend& b, bool g) { b.moe_experts(pick(out, g), pick(x, g), pick(ids, g), pick(w, g), g ? eg : ec); });
  auto [ref, got] = p.read(out);
  EXPECT_LT(rel_error(got, ref), kTol) << c.name;
}

INSTANTIATE_TEST_SUITE_P(Paths, CudaExperts,
                         ::testing::Values(ExpertCase{"bf16_decode", DType::bf16, DType::bf16, DType::bf16, 1, false},
                                           ExpertCase{"bf16_four", DType::bf16, DType::bf16, DType::bf16, 4, false},
                                           ExpertCase{"bf16_grouped", DType::bf16, DType::bf16, DType::bf16, 30, false},
                                           ExpertCase{"q4k_q6k_decode", DType::q4_k, DType::q4_k, DType::q6_k, 1, false},
                                           ExpertCase{"mixed_gate_up", DType::q4_k, DType::q5_0, DType::q8_0, 2, false},
                                           ExpertCase{"fp8_decode", DType::f8_e4m3, DType::f8_e4m3, DType::f8_e4m3, 1, false},
                                           ExpertCase{"f16_grouped", DType::f16, DType::f16, DType::f16, 45, false},
                                           ExpertCase{"mixed_experts", DType::q8_0, DType::q8_0, DType::q8_0, 1, true}),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace sibyl::cuda_test
