// Whole models on the CUDA backend: every fixture (Hugging Face bf16, FP8, llama.cpp GGUF Q8_0 /
// Q6_K / Q4_K_M) against its reference through all five ways of feeding a sequence, within 1e-4
// (the float32 path), the tiny-reasoner's 160 public eval problems reproduced token for token,
// and a leak check: many sessions and generate calls leave the device memory where it was.
#include <gtest/gtest.h>

#include <cctype>
#include <map>
#include <nlohmann/json.hpp>
#include <tuple>

#include "backends/cuda/cuda_backend.h"
#include "cuda_test_util.h"
#include "engine/formats/file_util.h"
#include "fixture_runner.h"
#include "engine/chat/reasoning.h"
#include "engine/model/session.h"

namespace sibyl::engine::test {
namespace {

using cuda_test::cuda_unavailable;

std::shared_ptr<Model> load_on_cuda(const std::string& path) {
  ModelLoadOptions o;
  o.backend = backend::BackendKind::cuda;
  return Model::load(path, o);
}

// ---------------------------------------------------------------- fixtures

const Fixture& fixture(const std::string& name) {
  return cached_fixture("cuda:" + name, name, [&] { return load_on_cuda(data_dir() + "/" + name); });
}

class CudaFixtureLogits : public ::testing::TestWithParam<FixtureCase> {};

TEST_P(CudaFixtureLogits, MatchReferenceForEverySequence) {
  SKIP_WITHOUT_CUDA();
  const Fixture& f = fixture(GetParam().fixture);
  for (int seq = 0; seq < 4; ++seq) {
    const double err = relative_error(run_feed(f, f.tokens(seq), GetParam().feed), f.logits(seq));
    EXPECT_LT(err, 1e-4) << GetParam().fixture << " seq" << seq;
  }
}

INSTANTIATE_TEST_SUITE_P(AllFixtures, CudaFixtureLogits, ::testing::ValuesIn(fixture_cases({SIBYL_BACKEND_FIXTURES})),
                         fixture_case_name);

// Hidden states and router choices along the way (read back mid-step: the observer path).
TEST(CudaFixtureInternals, HiddenStatesOfSeq1) {
  SKIP_WITHOUT_CUDA();
  struct Capture : StepObserver {
    std::map<int64_t, std::vector<float>> rows;
    void hidden(int64_t index, const std::vector<float>& r) override { rows[index] = r; }
    void route(int64_t, const std::vector<int32_t>&, const std::vector<float>&, const std::vector<float>&) override {}
  };
  for (const char* name : {"tiny-v3", "tiny-v2-lite", "tiny-v2"}) {
    const Fixture& f = fixture(name);
    Session s(f.model, {});
    Capture cap;
    std::vector<int32_t> toks = f.tokens(1);
    s.append(toks.data(), static_cast<int64_t>(toks.size()), LogitsMode::all, AttentionPath::automatic, &cap);
    for (int64_t l = 0; l <= f.model->config().n_layers; ++l)
      EXPECT_LT(relative_error(cap.rows[l], f32_of(f.ref->at("seq1.hidden." + std::to_string(l)))), 1e-4)
          << name << " hidden." << l;
  }
}

// ---------------------------------------------------------------- the tiny-reasoner

std::string reasoner_dir() { return data_dir() + "/../../models/tiny-reasoner"; }

class CudaReasonerEval : public ::testing::TestWithParam<std::tuple<std::string, int>> {};

TEST_P(CudaReasonerEval, GreedyRepliesEqualReference) {
  SKIP_WITHOUT_CUDA();
  const auto& [file, shard] = GetParam();
  static std::map<std::string, std::shared_ptr<Model>> models;
  const std::string path = file == "hf" ? reasoner_dir() : data_dir() + "/" + file;
  auto& model = models[path];
  if (!model) model = load_on_cuda(path);
  static const nlohmann::json results =
      nlohmann::json::parse(read_text_file(reasoner_dir() + "/eval.public.json"))["results"];
  for (size_t i = static_cast<size_t>(shard); i < results.size(); i += 4) {
    const nlohmann::json& r = results[i];
    Session s(model, {});
    const std::vector<ChatMessage> msgs = {{"user", r["question"].get<std::string>(), {}}};
    ChatResult res = run_chat(s, model->tokenizer(), model->chat_format(), msgs, {},
                              [](Channel, std::string_view) { return false; });
    const std::vector<int32_t> reply(s.tokens().begin() + res.reused_tokens + res.prompt_tokens, s.tokens().end());
    ASSERT_EQ(reply, r["output_ids"].get<std::vector<int32_t>>()) << r["question"];
    EXPECT_EQ(res.stop, StopReason::eos);
  }
}

INSTANTIATE_TEST_SUITE_P(TinyReasoner, CudaReasonerEval,
                         ::testing::Combine(::testing::Values("hf", "gguf/tiny-reasoner-bf16.gguf"), ::testing::Range(0, 4)),
                         [](const auto& info) {
                           std::string n = std::get<0>(info.param) + "_" + std::to_string(std::get<1>(info.param));
                           for (char& ch : n)
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return n;
                         });

// ---------------------------------------------------------------- leaks

TEST(CudaLeaks, ManySessionsAndGenerateCallsReturnToBaseline) {
  SKIP_WITHOUT_CUDA();
  auto model = load_on_cuda(reasoner_dir());
  const backend::Backend& be = *model->backend();
  auto generate_some = [&](int sessions, int calls_each) {
    for (int k = 0; k < sessions; ++k) {
      Session s(model, {});
      for (int c = 0; c < calls_each; ++c) {
        std::vector<int32_t> prompt = {0, 1280, 295, 260, 223, 697, 26, int32_t(300 + c)};
        GenerateParams gp;
        gp.max_new_tokens = 24;
        gp.stop_at_eos = false;
        int64_t generated = 0;
        s.generate(prompt.data(), static_cast<int64_t>(prompt.size()), gp, nullptr, generated);
        ASSERT_EQ(generated, 24);
      }
    }
  };
  generate_some(1, 2);  // warm-up: the arena's chunks, cuBLAS, graphs
  const auto base = backend::cuda::backend_stats(be);
  size_t free_before = 0, total = 0;
  ASSERT_EQ(cudaMemGetInfo(&free_before, &total), cudaSuccess);
  generate_some(20, 5);  // 100 generate calls over 20 sessions
  const auto after = backend::cuda::backend_stats(be);
  EXPECT_EQ(after.persistent_bytes, base.persistent_bytes) << "KV caches or weights leaked";
  EXPECT_EQ(after.arena_live, base.arena_live) << "activation tensors leaked";
  EXPECT_LE(after.arena_reserved, base.arena_reserved + (size_t(64) << 20));
  size_t free_after = 0;
  ASSERT_EQ(cudaMemGetInfo(&free_after, &total), cudaSuccess);
  EXPECT_GE(free_after + (size_t(80) << 20), free_before) << "device memory did not come back";
}

// A memory budget too small for the model fails cleanly with out_of_memory, naming the budget.
TEST(CudaBudget, TooSmallBudgetIsOutOfMemory) {
  SKIP_WITHOUT_CUDA();
  ModelLoadOptions o;
  o.backend = backend::BackendKind::cuda;
  o.backend_options.memory_budget = 40 << 20;  // under the cuBLAS workspace + weights
  std::string msg;
  EXPECT_EQ(error_of([&] { Model::load(reasoner_dir(), o); }, &msg), Errc::out_of_memory);
  EXPECT_NE(msg.find("budget"), std::string::npos) << msg;
}

}  // namespace
}  // namespace sibyl::engine::test
