// Every dense and MoE Vulkan op against the CPU backend (the oracle) on random inputs: every
// weight dtype, odd shapes, both matmul kernel shapes, gathering rows, every router variant,
// routed experts across several dispatches. MLA and the KV pool: test_vk_mla.cpp, test_vk_pool.cpp.
#include <algorithm>
#include <cstdio>
#include <deque>
#include <map>

#include "vk_test_util.h"

namespace sibyl::vktest {
namespace {

using backend::ExpertSelect;
using backend::ScoreFunc;

const DType kAllWeightTypes[] = {DType::f32,  DType::f16,  DType::bf16, DType::f8_e4m3,
                                 DType::q8_0, DType::q5_0, DType::q4_k, DType::q6_k};

// Row lengths a dtype allows: odd ones for plain types, whole blocks for quantized ones.
std::vector<int64_t> row_lengths(DType t) {
  if (t == DType::q4_k || t == DType::q6_k) return {256, 512};
  if (t == DType::q8_0 || t == DType::q5_0) return {96, 256};
  return {67, 256};
}

class VkOps : public VkVsCpu {};

// The matmul with LANES invocations per row (GPUs: 16) and with one (CPU devices): both
// kernel shapes are checked wherever the suite runs.
class LanesGuard {
 public:
  explicit LanesGuard(const char* v) { setenv("SIBYL_VULKAN_LANES", v, 1); }
  ~LanesGuard() { unsetenv("SIBYL_VULKAN_LANES"); }
};

TEST_F(VkOps, MatmulEveryDtypeShapeAndKernel) {
  std::map<std::string, double> worst;
  for (const char* lanes : {"1", "16"}) {
    std::unique_ptr<Backend> v;
    {
      LanesGuard g(lanes);
      std::string why;
      v = make_vulkan(why);
    }
    for (DType t : kAllWeightTypes)
      for (int64_t K : row_lengths(t))
        for (int64_t N : {1, 37, 130})
          for (int64_t n : {1, 3, 17}) {
            std::vector<float> wf = random_floats(static_cast<size_t>(N * K), rng, 0.5f);
            HostTensor h = encode(t, N, K, wf);
            std::vector<float> x = random_floats(static_cast<size_t>(n * K), rng);
            Pair w = upload_both(*cpu, *v, h), xs = f32_both(*cpu, *v, n, K, x),
                 y = alloc_both(*cpu, *v, DType::f32, n, N);
            for (int s = 0; s < 2; ++s) {
              Backend& b = s ? *v : *cpu;
              b.begin_step();
              b.matmul(side(y, s), side(xs, s), side(w, s));
              b.end_step();
            }
            const double err = rel_error(read_f32(*v, *y.vk), read_f32(*cpu, *y.cpu));
            // A lone dot product may cancel to a small value: its relative error is larger.
            const double tolerance = n * N < 8 ? 1e-4 : 1e-5;
            if (n * N >= 8) worst[engine::dtype_name(t)] = std::max(worst[engine::dtype_name(t)], err);
            EXPECT_LT(err, tolerance) << engine::dtype_name(t) << " n=" << n << " N=" << N << " K=" << K
                                      << " lanes=" << lanes;
          }
  }
  for (const auto& [name, err] : worst) std::printf("matmul %-8s max relative error %.3g (outputs of 37+ values)\n", name.c_str(), err);
}

TEST_F(VkOps, EmbedEveryDtypeIsExact) {
  for (DType t : kAllWeightTypes) {
    const int64_t V = 13, C = 256;
    std::vector<float> f = random_floats(static_cast<size_t>(V * C), rng);
    HostTensor h = encode(t, V, C, f);
    Pair table = upload_both(*cpu, *vk, h);
    Pair ids = i32_both(*cpu, *vk, 5, 1, {3, 0, 12, 3, 7});
    Pair out = alloc_both(*cpu, *vk, DType::f32, 5, C);
    both([&](Backend& b, int s) { b.embed(side(out, s), side(table, s), side(ids, s)); });
    EXPECT_EQ(read_f32(*vk, *out.vk), read_f32(*cpu, *out.cpu)) << engine::dtype_name(t);
  }
}

TEST_F(VkOps, RmsnormPrefixAndInPlace) {
  for (DType wt : {DType::f32, DType::bf16}) {
    const int64_t rows = 5, cols = 70, prefix = 40;
    std::vector<float> x = random_floats(static_cast<size_t>(rows * cols), rng), w = random_floats(cols, rng);
    std::vector<float> wp(w.begin(), w.begin() + prefix);
    // A prefix norm's weight has `prefix` columns (the CPU backend converts whole weight rows
    // into a scratch of `cols` floats).
    HostTensor hw = encode(wt, 1, cols, w), hp = encode(wt, 1, prefix, wp);
    Pair weight = upload_both(*cpu, *vk, hw), pweight = upload_both(*cpu, *vk, hp);
    Pair src = f32_both(*cpu, *vk, rows, cols, x), full = alloc_both(*cpu, *vk, DType::f32, rows, cols);
    Pair inplace = f32_both(*cpu, *vk, rows, cols, x);
    both([&](Backend& b, int s) {
      b.rmsnorm(side(full, s), side(src, s), side(weight, s), 1e-6f);
      b.rmsnorm(side(inplace, s), side(inplace, s), side(pweight, s), 1e-6f, prefix);  // dst == src, a prefix
    });
    EXPECT_LT(rel_error(read_f32(*vk, *full.vk), read_f32(*cpu, *full.cpu)), 1e-6);
    EXPECT_LT(rel_error(read_f32(*vk, *inplace.vk), read_f32(*cpu, *inplace.cpu)), 1e-6);
  }
}

TEST_F(VkOps, AddSwigluGatherRows) {
  const int64_t rows = 7, cols = 333;
  std::vector<float> a = random_floats(rows * cols, rng), b = random_floats(rows * cols, rng, 3.0f);
  Pair acc = f32_both(*cpu, *vk, rows, cols, a), x = f32_both(*cpu, *vk, rows, cols, b);
  Pair g = f32_both(*cpu, *vk, rows, cols, b), u = f32_both(*cpu, *vk, rows, cols, a);
  const std::vector<int32_t> keep = {5, 0, 6, 5};  // repeated and out of order
  Pair idx = i32_both(*cpu, *vk, 4, 1, keep);
  Pair picked = alloc_both(*cpu, *vk, DType::f32, 4, cols), one = alloc_both(*cpu, *vk, DType::f32, 1, cols);
  both([&](Backend& be, int s) {
    be.add(side(acc, s), side(x, s));
    be.swiglu(side(g, s), side(g, s), side(u, s));  // in place, as the engine does
    be.gather_rows(side(picked, s), side(acc, s), side(idx, s));
    be.gather_rows(side(one, s), side(g, s), side(idx, s));  // the first index only
  });
  const std::vector<float> sum = read_f32(*cpu, *acc.cpu);
  EXPECT_EQ(read_f32(*vk, *acc.vk), sum);
  EXPECT_LT(rel_error(read_f32(*vk, *g.vk), read_f32(*cpu, *g.cpu)), 1e-6);
  const std::vector<float> got = read_f32(*vk, *picked.vk);
  EXPECT_EQ(got, read_f32(*cpu, *picked.cpu));
  for (size_t i = 0; i < keep.size(); ++i)  // not only equal to the CPU: the rows asked for
    EXPECT_TRUE(std::equal(got.begin() + i * cols, got.begin() + (i + 1) * cols, sum.begin() + keep[i] * cols)) << i;
  EXPECT_LT(rel_error(read_f32(*vk, *one.vk), read_f32(*cpu, *one.cpu)), 1e-6);  // swiglu's exp differs
}

// ---------------------------------------------------------------- MoE

struct RouteCase {
  const char* name;
  ScoreFunc score;
  ExpertSelect select;
  int64_t E, K, n_group, topk_group;
  bool normalize, bias, ties;
  float scaling;
};

void PrintTo(const RouteCase& c, std::ostream* os) { *os << c.name; }

class VkRoute : public VkOps, public ::testing::WithParamInterface<RouteCase> {};

TEST_P(VkRoute, IdsExactWeightsAndLogitsClose) {
  const RouteCase c = GetParam();
  const int64_t n = 9, H = 96;
  std::vector<float> gate = random_floats(c.E * H, rng, 0.2f);
  if (c.ties)  // duplicated rows: equal logits, so the choice falls to the lower index
    for (int64_t dup : {5, 9, 21, 22, 23})
      std::copy_n(gate.begin() + 4 * H, H, gate.begin() + dup * H);
  HostTensor hg = encode(DType::bf16, c.E, H, gate);
  Pair g = upload_both(*cpu, *vk, hg);
  std::vector<float> bias = random_floats(c.E, rng, 0.05f);
  HostTensor hb = encode(DType::f32, 1, c.E, bias);
  Pair b = upload_both(*cpu, *vk, hb);
  Pair x = f32_both(*cpu, *vk, n, H, random_floats(n * H, rng));
  Pair ids = alloc_both(*cpu, *vk, DType::i32, n, c.K), w = alloc_both(*cpu, *vk, DType::f32, n, c.K),
       raw = alloc_both(*cpu, *vk, DType::f32, n, c.E);
  const backend::RouterParams rp{c.score, c.select, c.E, c.K, c.n_group, c.topk_group, c.normalize, c.scaling};
  both([&](Backend& be, int s) {
    be.moe_route(side(ids, s), side(w, s), &side(raw, s), side(x, s), side(g, s), c.bias ? &side(b, s) : nullptr, rp);
  });
  EXPECT_EQ(read_i32(*vk, *ids.vk), read_i32(*cpu, *ids.cpu));
  EXPECT_LT(rel_error(read_f32(*vk, *w.vk), read_f32(*cpu, *w.cpu)), 1e-5);
  EXPECT_LT(rel_error(read_f32(*vk, *raw.vk), read_f32(*cpu, *raw.cpu)), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(
    Variants, VkRoute,
    ::testing::Values(
        RouteCase{"softmax_greedy", ScoreFunc::softmax, ExpertSelect::greedy, 64, 6, 1, 1, false, false, false, 1.0f},
        RouteCase{"softmax_greedy_top1_norm", ScoreFunc::softmax, ExpertSelect::greedy, 16, 1, 1, 1, true, false, false,
                  1.0f},
        RouteCase{"softmax_group_limited", ScoreFunc::softmax, ExpertSelect::group_limited, 64, 6, 8, 3, true, false,
                  false, 16.0f},
        RouteCase{"sigmoid_noaux_tc_bias", ScoreFunc::sigmoid, ExpertSelect::noaux_tc, 64, 8, 8, 4, true, true, false,
                  2.5f},
        RouteCase{"sigmoid_noaux_tc_no_bias_one_group", ScoreFunc::sigmoid, ExpertSelect::noaux_tc, 32, 4, 1, 1, true,
                  false, false, 1.5f},
        RouteCase{"sigmoid_noaux_tc_single_expert_groups", ScoreFunc::sigmoid, ExpertSelect::noaux_tc, 16, 4, 16, 6,
                  true, true, false, 1.0f},
        RouteCase{"softmax_greedy_ties", ScoreFunc::softmax, ExpertSelect::greedy, 32, 8, 1, 1, false, false, true,
                  1.0f},
        RouteCase{"sigmoid_noaux_tc_ties", ScoreFunc::sigmoid, ExpertSelect::noaux_tc, 32, 8, 4, 2, true, false, true,
                  1.0f}),
    [](const auto& info) { return std::string(info.param.name); });

TEST_F(VkOps, ExpertsEveryDtypeAcrossDispatchesBothKernelShapes) {
  std::unique_ptr<Backend> lanes16;
  {
    LanesGuard g("16");
    std::string why;
    lanes16 = make_vulkan(why);
  }
  for (DType t : kAllWeightTypes) {
    const bool k_quant = t == DType::q4_k || t == DType::q6_k;
    const int64_t E = 40, K = 4, H = k_quant ? 256 : 96, I = k_quant ? 256 : 64;  // 40: more than one array
    std::deque<HostTensor> host;  // the CPU backend uses host weights in place: keep them
    std::vector<Pair> gate, up, down;
    for (int64_t e = 0; e < E; ++e) {
      std::vector<float> a = random_floats(I * H, rng, 0.1f), b = random_floats(I * H, rng, 0.1f),
                         d = random_floats(H * I, rng, 0.1f);
      gate.push_back(upload_both(*cpu, *vk, host.emplace_back(encode(t, I, H, a))));
      up.push_back(upload_both(*cpu, *vk, host.emplace_back(encode(t, I, H, b))));
      down.push_back(upload_both(*cpu, *vk, host.emplace_back(encode(t, H, I, d))));
    }
    backend::ExpertWeights w[2];
    for (int s = 0; s < 2; ++s)
      for (int64_t e = 0; e < E; ++e) {
        w[s].gate.push_back(&side(gate[e], s));
        w[s].up.push_back(&side(up[e], s));
        w[s].down.push_back(&side(down[e], s));
      }
    for (int64_t n : {1, 6}) {
      std::vector<int32_t> id(static_cast<size_t>(n * K));
      std::vector<float> wt = random_floats(n * K, rng);
      for (int64_t i = 0; i < n; ++i) {  // distinct experts per token, spread over the arrays
        std::vector<int32_t> all(E);
        for (int32_t e = 0; e < E; ++e) all[e] = e;
        std::shuffle(all.begin(), all.end(), rng);
        std::copy_n(all.begin(), K, id.begin() + i * K);
      }
      Pair ids = i32_both(*cpu, *vk, n, K, id), wts = f32_both(*cpu, *vk, n, K, wt);
      Pair x = f32_both(*cpu, *vk, n, H, random_floats(n * H, rng)), out = alloc_both(*cpu, *vk, DType::f32, n, H);
      both([&](Backend& b, int s) { b.moe_experts(side(out, s), side(x, s), side(ids, s), side(wts, s), w[s]); });
      const std::vector<float> want = read_f32(*cpu, *out.cpu);
      const double err = rel_error(read_f32(*vk, *out.vk), want);
      std::printf("moe_experts %-8s n=%lld max relative error %.3g\n", engine::dtype_name(t),
                  static_cast<long long>(n), err);
      EXPECT_LT(err, 1e-5) << engine::dtype_name(t) << " n=" << n;
      if (n != 1) continue;
      // The same experts with 16 invocations per output row (the GPU shape), weights re-uploaded.
      std::vector<TensorPtr> keep;
      backend::ExpertWeights w16;
      for (int64_t e = 0; e < E; ++e)
        for (auto [list, src] : {std::pair{&w16.gate, &host[3 * e]}, std::pair{&w16.up, &host[3 * e + 1]},
                                 std::pair{&w16.down, &host[3 * e + 2]}}) {
          keep.push_back(lanes16->upload(src->weight()));
          list->push_back(keep.back().get());
        }
      TensorPtr ids16 = lanes16->alloc(DType::i32, n, K), wts16 = lanes16->alloc(DType::f32, n, K),
                x16 = lanes16->alloc(DType::f32, n, H), out16 = lanes16->alloc(DType::f32, n, H);
      std::vector<float> xv = read_f32(*cpu, *x.cpu);
      lanes16->write(*ids16, id.data(), id.size() * 4);
      lanes16->write(*wts16, wt.data(), wt.size() * 4);
      lanes16->write(*x16, xv.data(), xv.size() * 4);
      lanes16->begin_step();
      lanes16->moe_experts(*out16, *x16, *ids16, *wts16, w16);
      lanes16->end_step();
      EXPECT_LT(rel_error(read_f32(*lanes16, *out16), want), 1e-5) << engine::dtype_name(t) << " lanes=16";
    }
  }
}

}  // namespace
}  // namespace sibyl::vktest
