// The multi-token-prediction layer: loading, and its logits against the reference
// (tests/data/tiny-reasoner-mtp: three sequences of shared/models/tiny-reasoner's
// mtp.reference.safetensors, row j = the MTP prediction of token j + 2).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "fixture_util.h"
#include "mtp_logits.h"
#include "engine/formats/file_util.h"
#include "engine/runtime/job.h"
#include "engine/runtime/scheduler.h"
#include "engine/model/session.h"

namespace sibyl::engine::test {
namespace {

std::string reasoner_dir() { return data_dir() + "/../../models/tiny-reasoner"; }

std::shared_ptr<Model> load_reasoner(bool mtp, backend::Precision precision = backend::Precision::exact) {
  ModelLoadOptions o;
  o.scheduler.mtp_max_batch = 64;  // draft in batches too (the default pauses beyond one request)
  o.backend = backend::BackendKind::cpu;
  o.backend_options.precision = precision;
  o.mtp = mtp;
  return Model::load(reasoner_dir(), o);
}

TEST(Mtp, LogitsMatchTheReference) {
  auto m = load_reasoner(true);
  SafetensorsFile ref(data_dir() + "/tiny-reasoner-mtp/mtp.reference.safetensors");
  int sequences = 0;
  for (int i = 0; i < 32; ++i) {
    const TensorView* tokens = ref.find("seq" + std::to_string(i) + ".tokens");
    if (!tokens) continue;
    ++sequences;
    const std::vector<float> want = f32_of(ref.at("seq" + std::to_string(i) + ".mtp_logits"));
    const std::vector<int32_t> t = i32_of(*tokens);
    for (int64_t chunk : {int64_t{1}, int64_t{7}, int64_t{1000}}) {  // decode rows, uneven chunks, one prefill
      EXPECT_LT(max_abs_diff(mtp_logits_of(m, t, chunk), want), 1e-4) << "seq" << i << " chunk " << chunk;
    }
  }
  EXPECT_EQ(sequences, 3);
}

TEST(Mtp, LoadsOnlyWhenAsked) {
  auto with = load_reasoner(true), without = load_reasoner(false);
  EXPECT_TRUE(with->has_mtp());
  EXPECT_FALSE(without->has_mtp());
  EXPECT_EQ(with->weights().n_parameters, without->weights().n_parameters);  // the main model's
  const MtpWeights& w = *with->weights().mtp;
  // The tiny-reasoner's MTP copies of the embedding and the head equal the main ones: shared.
  EXPECT_EQ(w.embed, with->weights().embed);
  EXPECT_EQ(w.head, with->weights().lm_head);
  EXPECT_EQ(w.eh_embed->cols(), with->config().hidden_size);
  EXPECT_EQ(w.eh_hidden->cols(), with->config().hidden_size);
  EXPECT_TRUE(w.block.moe);
}

}  // namespace
}  // namespace sibyl::engine::test

namespace sibyl::engine::test {
namespace {

std::vector<int32_t> eval_prompt(int i, std::vector<int32_t>* output = nullptr) {
  const nlohmann::json eval = nlohmann::json::parse(read_text_file(reasoner_dir() + "/eval.public.json"));
  const auto& r = eval["results"][static_cast<size_t>(i)];
  if (output) *output = r["output_ids"].get<std::vector<int32_t>>();
  return r["prompt_ids"].get<std::vector<int32_t>>();
}

TEST(Mtp, GreedyGenerateDraftsAndMatchesTheReference) {
  auto m = load_reasoner(true, backend::Precision::fast);
  std::vector<int32_t> want;
  const std::vector<int32_t> prompt = eval_prompt(0, &want);
  Session s(m, {});
  GenerateParams g;
  g.max_new_tokens = 400;
  std::vector<int32_t> got;
  int64_t generated = 0;
  s.generate(prompt.data(), static_cast<int64_t>(prompt.size()), g, [&](int32_t t) { got.push_back(t); return false; },
             generated);
  EXPECT_EQ(got, want);
  EXPECT_GT(s.drafted(), want.size() / 3);
  EXPECT_GT(s.accepted(), s.drafted() * 9 / 10);
}

}  // namespace
}  // namespace sibyl::engine::test

namespace sibyl::engine::test {
namespace {

std::vector<int32_t> generate(Session& s, const std::vector<int32_t>& prompt, int64_t n, float temperature = 0.0f) {
  GenerateParams g;
  g.max_new_tokens = n;
  g.stop_at_eos = false;
  g.sampler.temperature = temperature;
  std::vector<int32_t> out;
  int64_t generated = 0;
  s.generate(prompt.data(), static_cast<int64_t>(prompt.size()), g, [&](int32_t t) { out.push_back(t); return false; },
             generated);
  return out;
}

// Save/load, fork and rewind continue exactly as the session would have, with MTP drafting
// after each (its cache rows travel with the state and the pages).
TEST(Mtp, SaveLoadForkRewindContinueExactly) {
  auto m = load_reasoner(true, backend::Precision::fast);
  const std::vector<int32_t> prompt = eval_prompt(3);
  for (float temperature : {0.0f, 0.7f}) {
    Session a(m, {.max_context = 0, .seed = 11});
    generate(a, prompt, 20, temperature);
    const std::vector<uint8_t> state = a.save_state();
    Session forked(m, {});
    forked.fork_from(a);
    const std::vector<int32_t> want = generate(a, {}, 30, temperature);

    Session loaded(m, {});
    loaded.load_state(state.data(), state.size());
    EXPECT_EQ(generate(loaded, {}, 30, temperature), want) << "loaded, T " << temperature;
    EXPECT_GT(loaded.drafted(), 5u);
    EXPECT_EQ(generate(forked, {}, 30, temperature), want) << "forked, T " << temperature;
    EXPECT_GT(forked.drafted(), 5u);

    // Rewound to one before where the state was saved, that token fed again, the RNG put back:
    // the same 30 tokens.
    Session r(m, {});
    r.load_state(state.data(), state.size());
    generate(r, {}, 25, temperature);
    const int64_t at = static_cast<int64_t>(prompt.size()) + 20;
    const int32_t last = r.tokens()[static_cast<size_t>(at - 1)];
    r.rewind(at - 1);
    Session rng_source(m, {});
    rng_source.load_state(state.data(), state.size());
    r.rng() = rng_source.rng();
    const uint64_t before = r.drafted();
    EXPECT_EQ(generate(r, {last}, 30, temperature), want) << "rewound, T " << temperature;
    EXPECT_GT(r.drafted(), before + 5);
  }
}

// Greedy output is the same with and without MTP, also for many sessions batched at once.
TEST(Mtp, BatchedGreedyEqualsPlainDecoding) {
  auto with = load_reasoner(true, backend::Precision::fast), without = load_reasoner(false, backend::Precision::fast);
  std::vector<std::unique_ptr<Session>> sessions;
  std::vector<std::shared_ptr<Request>> requests;
  for (int i = 0; i < 6; ++i) {
    sessions.push_back(std::make_unique<Session>(with, SessionOptions{}));
    GenerateJobParams p;
    p.prompt = eval_prompt(10 + i);
    p.max_new_tokens = 60;
    p.stop_at_eos = false;
    requests.push_back(std::make_shared<Request>());
    with->scheduler().submit(make_generate_job(*sessions.back(), nullptr, requests.back(), p));
  }
  for (int i = 0; i < 6; ++i) {
    std::vector<int32_t> got;
    for (Event e;;) {
      if (!requests[i]->poll(e)) {
        requests[i]->wait(100000);
        continue;
      }
      if (e.kind == EventKind::done) break;
      if (e.kind == EventKind::token) got.push_back(e.token);
    }
    Session plain(without, {});
    EXPECT_EQ(got, generate(plain, eval_prompt(10 + i), 60)) << "session " << i;
    EXPECT_GT(sessions[i]->drafted(), 10u);
  }
}

}  // namespace
}  // namespace sibyl::engine::test

namespace sibyl::engine::test {
namespace {

// States cross between MTP on and off: the tokens continue the same (greedy).
TEST(Mtp, StatesLoadAcrossMtpOnAndOff) {
  auto with = load_reasoner(true, backend::Precision::fast), without = load_reasoner(false, backend::Precision::fast);
  const std::vector<int32_t> prompt = eval_prompt(8);
  Session a(with, {}), b(without, {});
  generate(a, prompt, 10);
  generate(b, prompt, 10);
  const std::vector<uint8_t> sa = a.save_state(), sb = b.save_state();
  EXPECT_EQ(sa.size(), sb.size() + a.tokens().size() * 80 * 4);  // the MTP layer's rows
  const std::vector<int32_t> want = generate(b, {}, 20);
  Session into_without(without, {}), into_with(with, {});
  into_without.load_state(sa.data(), sa.size());
  into_with.load_state(sb.data(), sb.size());
  EXPECT_EQ(generate(into_without, {}, 20), want);
  EXPECT_EQ(generate(into_with, {}, 20), want);
  EXPECT_EQ(into_with.drafted(), 0u);  // no MTP rows for its history: it does not draft
}

}  // namespace
}  // namespace sibyl::engine::test
