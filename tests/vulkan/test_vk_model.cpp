// The whole model on the Vulkan backend: logits of every reference sequence of every fixture
// (safetensors bf16 / FP8, llama.cpp's GGUF quantizations) through every way of feeding it,
// hidden states and router choices captured mid-step, greedy continuations, sessions on
// several threads, and the memory budget.
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <map>
#include <thread>

#include "engine/formats/safetensors.h"
#include "engine/model/session.h"
#include "fixture_runner.h"
#include "vk_test_util.h"

namespace sibyl::vktest {
namespace {

using engine::AttentionPath;
using engine::LogitsMode;
using engine::Model;
using engine::Session;
using engine::test::cached_fixture;
using engine::test::Feed;
using engine::test::Fixture;
using engine::test::fixture_cache;
using engine::test::fixture_case_name;
using engine::test::fixture_cases;
using engine::test::FixtureCase;
using engine::test::run_feed;

constexpr double kTolerance = 1e-3;  // against the float32 reference (the CPU backend reaches 1e-4)

std::shared_ptr<Model> load_vulkan(const std::string& path, uint64_t budget = 0) {
  engine::ModelLoadOptions o;
  o.backend = backend::BackendKind::vulkan;
  o.backend_options.memory_budget = budget;
  return Model::load(path, o);
}

// A fixture on the Vulkan backend, loaded once (released before the device at teardown).
const Fixture& fixture(const std::string& name) {
  if (fixture_cache().empty()) at_teardown([] { fixture_cache().clear(); });
  return cached_fixture("vulkan:" + name, name, [&] { return load_vulkan(data_dir() + "/" + name); });
}

class VkFixtureLogits : public ::testing::TestWithParam<FixtureCase> {};

TEST_P(VkFixtureLogits, MatchReferenceForEverySequence) {
  SIBYL_REQUIRE_VULKAN();
  const Fixture& f = fixture(GetParam().fixture);
  double worst = 0;
  for (int seq = 0; seq < 4; ++seq) {
    const double err = rel_error(run_feed(f, f.tokens(seq), GetParam().feed), f.logits(seq));
    worst = std::max(worst, err);
    EXPECT_LT(err, kTolerance) << GetParam().fixture << " seq" << seq;
  }
  std::printf("%s: max relative error of the logits %.3g\n", GetParam().fixture.c_str(), worst);
}

INSTANTIATE_TEST_SUITE_P(AllFixtures, VkFixtureLogits, ::testing::ValuesIn(fixture_cases({SIBYL_BACKEND_FIXTURES})),
                         fixture_case_name);

// Reads in the middle of a step (the observer's captures) see exactly the work recorded so far.
struct Capture : engine::StepObserver {
  std::map<int64_t, std::vector<float>> hidden_rows, weights, raw;
  std::map<int64_t, std::vector<int32_t>> ids;
  void hidden(int64_t index, const std::vector<float>& rows) override { hidden_rows[index] = rows; }
  void route(int64_t layer, const std::vector<int32_t>& i, const std::vector<float>& w,
             const std::vector<float>& r) override {
    ids[layer] = i;
    weights[layer] = w;
    raw[layer] = r;
  }
};

TEST(VkModel, HiddenStatesAndRoutesCapturedMidStep) {
  SIBYL_REQUIRE_VULKAN();
  for (const char* name : {"tiny-v3", "tiny-v2-lite", "tiny-v2"}) {
    const Fixture& f = fixture(name);
    const engine::ModelConfig& c = f.model->config();
    Session s(f.model, {});
    Capture cap;
    const std::vector<int32_t> toks = f.tokens(1);
    s.append(toks.data(), static_cast<int64_t>(toks.size()), LogitsMode::all, AttentionPath::automatic, &cap);
    for (int64_t l = 0; l <= c.n_layers; ++l)
      EXPECT_LT(rel_error(cap.hidden_rows[l], f.tensor("seq1.hidden." + std::to_string(l))), kTolerance)
          << name << " hidden." << l;
    const int64_t K = c.n_experts_per_tok, n = static_cast<int64_t>(toks.size());
    for (int64_t l = 0; l < c.n_layers; ++l) {
      if (!f.model->weights().layers[l].moe) continue;
      const std::string p = "seq1.route." + std::to_string(l) + ".";
      EXPECT_LT(rel_error(cap.raw[l], f.tensor(p + "values0")), kTolerance) << name << " router logits " << l;
      const auto& ref_ids_t = f.ref->at(p + "experts");
      std::vector<int32_t> ref_ids(static_cast<size_t>(ref_ids_t.numel()));
      std::memcpy(ref_ids.data(), ref_ids_t.data, ref_ids.size() * 4);
      const std::vector<float> ref_w = f.tensor(p + "values1");
      for (int64_t i = 0; i < n; ++i) {
        std::map<int32_t, float> got, want;
        for (int64_t k = 0; k < K; ++k) {
          got[cap.ids[l][i * K + k]] = cap.weights[l][i * K + k];
          want[ref_ids[i * K + k]] = ref_w[i * K + k];
        }
        for (const auto& [e, w] : want) {
          ASSERT_TRUE(got.count(e)) << name << " layer " << l << " token " << i << " misses expert " << e;
          EXPECT_NEAR(got[e], w, 1e-4 * std::max(1.0f, std::fabs(w)));
        }
      }
    }
  }
}

TEST(VkModel, GreedyContinuationEqualsReference) {
  SIBYL_REQUIRE_VULKAN();
  for (const char* name : {"tiny-v3", "tiny-v2-lite", "tiny-v2"}) {
    const Fixture& f = fixture(name);
    const int64_t vocab = f.model->config().vocab_size;
    for (int seq = 0; seq < 4; ++seq) {
      const std::vector<int32_t> toks = f.tokens(seq);
      const std::vector<float> ref = f.tensor("seq" + std::to_string(seq) + ".logits");
      const int64_t prompt = static_cast<int64_t>(toks.size()) - 16;
      Session s(f.model, {});
      engine::GenerateParams gp;
      gp.max_new_tokens = 16;
      gp.stop_at_eos = false;
      std::vector<int32_t> out;
      int64_t generated = 0;
      s.generate(toks.data(), prompt, gp, [&](int32_t t) { out.push_back(t); return false; }, generated);
      ASSERT_EQ(generated, 16);
      for (int64_t k = 0; k < 16; ++k) {
        const float* row = ref.data() + (prompt - 1 + k) * vocab;
        std::vector<float> sorted(row, row + vocab);
        std::partial_sort(sorted.begin(), sorted.begin() + 2, sorted.end(), std::greater<float>());
        if (sorted[0] - sorted[1] <= 1e-3f) break;
        ASSERT_EQ(out[k], toks[prompt + k]) << name << " seq" << seq << " token " << k;
      }
    }
  }
}

// The kernels' GPU shape (16 invocations per matmul output row, shared-memory reductions) on
// whatever device runs the suite.
TEST(VkModel, GpuKernelShapeMatchesReference) {
  SIBYL_REQUIRE_VULKAN();
  std::shared_ptr<Model> m;
  setenv("SIBYL_VULKAN_LANES", "16", 1);
  try {
    m = load_vulkan(data_dir() + "/tiny-v3");
  } catch (...) {
    unsetenv("SIBYL_VULKAN_LANES");
    throw;
  }
  unsetenv("SIBYL_VULKAN_LANES");
  const Fixture& f = fixture("tiny-v3");
  for (int seq : {1, 3}) {
    Session s(m, {});
    const std::vector<int32_t> toks = f.tokens(seq);
    std::vector<float> all;
    const int64_t half = static_cast<int64_t>(toks.size()) / 2;
    s.append(toks.data(), half, LogitsMode::all);  // prefill
    all = s.logits();
    for (int64_t i = half; i < static_cast<int64_t>(toks.size()); ++i) {  // decode
      s.append(toks.data() + i, 1, LogitsMode::all);
      all.insert(all.end(), s.logits().begin(), s.logits().end());
    }
    EXPECT_LT(rel_error(all, f.tensor("seq" + std::to_string(seq) + ".logits")), kTolerance) << "seq" << seq;
  }
}

// Sessions on several threads share the backend: each step is recorded by one thread at a time.
TEST(VkModel, SessionsOnThreadsMatchSequentialRuns) {
  SIBYL_REQUIRE_VULKAN();
  const Fixture& f = fixture("tiny-v3");
  std::vector<std::vector<float>> want(4), got(4);
  for (int seq = 0; seq < 4; ++seq) want[seq] = run_feed(f, f.tokens(seq), seq % 2 ? Feed::decode_absorbed : Feed::chunks);
  std::vector<std::thread> threads;
  for (int seq = 0; seq < 4; ++seq)
    threads.emplace_back([&, seq] { got[seq] = run_feed(f, f.tokens(seq), seq % 2 ? Feed::decode_absorbed : Feed::chunks); });
  for (auto& t : threads) t.join();
  for (int seq = 0; seq < 4; ++seq) EXPECT_EQ(got[seq], want[seq]) << "seq" << seq;
}

TEST(VkModel, MemoryBudgetTooSmallIsOutOfMemory) {
  SIBYL_REQUIRE_VULKAN();
  std::string msg;
  try {
    load_vulkan(data_dir() + "/tiny-v3", 1 << 20);
    FAIL() << "a 1 MiB budget cannot hold tiny-v3";
  } catch (const engine::Failure& e) {
    EXPECT_EQ(e.code(), engine::Errc::out_of_memory) << e.what();
    msg = e.what();
  }
  EXPECT_NE(msg.find("budget"), std::string::npos) << msg;
  // A budget that fits runs.
  auto m = load_vulkan(data_dir() + "/tiny-v3", 64u << 20);
  Session s(m, {});
  const std::vector<int32_t> toks = {1, 2, 3, 4, 5};
  s.append(toks.data(), 5, LogitsMode::last);
  EXPECT_EQ(s.logits_rows(), 1);
}

}  // namespace
}  // namespace sibyl::vktest
