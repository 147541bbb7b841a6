// Tests of the header-only C++ SDK (sdk/include/sibyl/sibyl.hpp) on the tiny-v3
// fixture ($SIBYL_TEST_DATA/tiny-v3).
#include <sibyl/sibyl.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "test_files.h"

namespace {

using sibyl_test::tiny_v3_dir;

const std::vector<int32_t> kPrompt = {0, 17, 42, 311, 5};

// Loads tiny-v3 once per test.
class SdkTest : public ::testing::Test {
protected:
    void SetUp() override {
        const std::string dir = tiny_v3_dir();
        ASSERT_FALSE(dir.empty()) << "set SIBYL_TEST_DATA to the tests/data directory";
        sibyl::Result<sibyl::Model> loaded = sibyl::Model::load(dir);
        ASSERT_TRUE(loaded.ok()) << loaded.error().message;
        model_ = std::move(loaded).value();
    }

    sibyl::Session new_session(const sibyl::SessionOptions& options = {}) {
        sibyl::Result<sibyl::Session> session = model_.create_session(options);
        EXPECT_TRUE(session.ok()) << session.error().message;
        return session.ok() ? std::move(session).value() : sibyl::Session();
    }

    // Appends `prompt`, then samples and appends `n` tokens one at a time.
    static std::vector<int32_t> sample_n(sibyl::Session& session, const std::vector<int32_t>& prompt, int n,
                                         const sibyl::SamplerOptions& sampler) {
        std::vector<int32_t> out;
        sibyl::Error err = session.append(prompt);
        EXPECT_TRUE(err.ok()) << err.message;
        for (int i = 0; i < n && err.ok(); ++i) {
            sibyl::Result<int32_t> token = session.sample(sampler);
            EXPECT_TRUE(token.ok()) << token.error().message;
            if (!token) break;
            out.push_back(*token);
            err = session.append({*token});
            EXPECT_TRUE(err.ok()) << err.message;
        }
        return out;
    }

    sibyl::Model model_;
};

// ------------------------------------------------------------------ types

static_assert(!std::is_copy_constructible_v<sibyl::Model>, "Model is move-only");
static_assert(!std::is_copy_assignable_v<sibyl::Model>, "Model is move-only");
static_assert(std::is_nothrow_move_constructible_v<sibyl::Model>, "Model moves without throwing");
static_assert(std::is_nothrow_move_assignable_v<sibyl::Model>, "Model moves without throwing");
static_assert(!std::is_copy_constructible_v<sibyl::Session>, "Session is move-only");
static_assert(!std::is_copy_assignable_v<sibyl::Session>, "Session is move-only");
static_assert(std::is_nothrow_move_constructible_v<sibyl::Session>, "Session moves without throwing");
static_assert(std::is_nothrow_move_assignable_v<sibyl::Session>, "Session moves without throwing");

TEST(SdkOptions, DefaultsMatchTheCInitFunctions) {
    sibyl_model_options m;
    sibyl_model_options_init(&m);
    const sibyl::ModelOptions mo;
    EXPECT_EQ(static_cast<int>(mo.backend), static_cast<int>(m.backend));
    EXPECT_EQ(mo.n_threads, m.n_threads);
    EXPECT_EQ(mo.to_c().struct_size, sizeof(sibyl_model_options));

    sibyl_session_options s;
    sibyl_session_options_init(&s);
    const sibyl::SessionOptions so;
    EXPECT_EQ(so.max_context, s.max_context);
    EXPECT_EQ(so.seed, s.seed);
    EXPECT_EQ(so.to_c().struct_size, sizeof(sibyl_session_options));

    sibyl_sampler_options p;
    sibyl_sampler_options_init(&p);
    const sibyl::SamplerOptions po;
    EXPECT_EQ(po.temperature, p.temperature);
    EXPECT_EQ(po.top_k, p.top_k);
    EXPECT_EQ(po.top_p, p.top_p);
    EXPECT_EQ(po.min_p, p.min_p);
    EXPECT_EQ(po.repetition_penalty, p.repetition_penalty);
    EXPECT_EQ(po.repetition_last_n, p.repetition_last_n);
    EXPECT_EQ(po.to_c().struct_size, sizeof(sibyl_sampler_options));

    sibyl_generate_options g;
    sibyl_generate_options_init(&g);
    const sibyl::GenerateOptions go;
    const sibyl_sampler_options pc = go.sampler.to_c();
    const sibyl_generate_options gc = go.to_c(&pc);
    EXPECT_EQ(go.max_new_tokens, g.max_new_tokens);
    EXPECT_EQ(go.stop_at_eos, g.stop_at_eos != 0);
    EXPECT_EQ(go.seed.has_value(), g.reseed != 0);
    EXPECT_EQ(gc.struct_size, sizeof(sibyl_generate_options));
    EXPECT_EQ(gc.sampler, &pc);
}

TEST(SdkVersion, MatchesTheHeader) {
    EXPECT_EQ(sibyl::abi_version(), static_cast<uint32_t>(SIBYL_ABI_VERSION));
    EXPECT_TRUE(sibyl::abi_compatible());
    EXPECT_FALSE(sibyl::version().empty());
    EXPECT_EQ(sibyl::status_string(SIBYL_ERR_INVALID_TOKEN), std::string(sibyl_status_string(SIBYL_ERR_INVALID_TOKEN)));
}

TEST(SdkTokenSpan, BindsToVectorsListsArraysAndPointers) {
    const std::vector<int32_t> v = {1, 2, 3};
    const int32_t a[] = {4, 5};
    EXPECT_EQ(sibyl::TokenSpan(v).size(), 3u);
    EXPECT_EQ(sibyl::TokenSpan(v).data(), v.data());
    EXPECT_EQ(sibyl::TokenSpan(a).size(), 2u);
    EXPECT_EQ(sibyl::TokenSpan(a)[1], 5);
    EXPECT_EQ(sibyl::TokenSpan(v.data() + 1, 2)[0], 2);
    EXPECT_TRUE(sibyl::TokenSpan().empty());
    auto size_of = [](sibyl::TokenSpan s) { return s.size(); };
    EXPECT_EQ(size_of({7, 8, 9, 10}), 4u);
}

// ------------------------------------------------------------------ load and info

TEST_F(SdkTest, LoadsAndDescribesTinyV3) {
    ASSERT_TRUE(model_);
    sibyl::Result<sibyl::ModelInfo> info = model_.info();
    ASSERT_TRUE(info.ok()) << info.error().message;
    EXPECT_EQ(info->architecture, "deepseek_v3");
    EXPECT_FALSE(info->backend.empty());
    EXPECT_EQ(info->vocab_size, 1024);
    EXPECT_EQ(info->hidden_size, 256);
    EXPECT_EQ(info->n_layers, 3);
    EXPECT_EQ(info->n_dense_layers, 1);
    EXPECT_EQ(info->n_heads, 4);
    EXPECT_EQ(info->q_lora_rank, 96);
    EXPECT_EQ(info->kv_lora_rank, 64);
    EXPECT_EQ(info->qk_rope_head_dim, 16);
    EXPECT_EQ(info->n_routed_experts, 16);
    EXPECT_EQ(info->n_shared_experts, 1);
    EXPECT_EQ(info->n_experts_per_token, 4);
    EXPECT_EQ(info->max_position_embeddings, 4096);
    EXPECT_EQ(info->bos_token_id, 0);
    EXPECT_EQ(info->eos_token_id, 1);
    EXPECT_EQ(info->n_parameters, 2937088u);  // every tensor of model.safetensors
    // (kv_lora_rank + qk_rope_head_dim) values per layer per token, whatever the element size.
    EXPECT_GT(info->kv_bytes_per_token, 0u);
    EXPECT_EQ(info->kv_bytes_per_token % ((64 + 16) * 3), 0u);
}

TEST(SdkLoad, MissingPathIsAnIoErrorNamingThePath) {
    const std::string path = "/nonexistent/sibyl-sdk-test/no-such-model";
    sibyl::Result<sibyl::Model> loaded = sibyl::Model::load(path);
    ASSERT_FALSE(loaded.ok());
    EXPECT_FALSE(static_cast<bool>(loaded));
    EXPECT_EQ(loaded.error().code, SIBYL_ERR_IO);
    EXPECT_FALSE(loaded.error().ok());
    EXPECT_NE(loaded.error().message.find(path), std::string::npos) << loaded.error().message;
    EXPECT_EQ(loaded.error().status_name(), sibyl::status_string(SIBYL_ERR_IO));
}

TEST(SdkLoad, PathWithNulIsRejected) {
    const std::string path("tiny\0v3", 7);
    sibyl::Result<sibyl::Model> loaded = sibyl::Model::load(path);
    ASSERT_FALSE(loaded.ok());
    EXPECT_EQ(loaded.error().code, SIBYL_ERR_INVALID_ARGUMENT);
}

TEST(SdkLoad, EmptyHandlesFailCleanly) {
    sibyl::Model model;
    EXPECT_FALSE(model);
    EXPECT_EQ(model.info().error().code, SIBYL_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(model.create_session().error().code, SIBYL_ERR_INVALID_ARGUMENT);
    sibyl::Session session;
    EXPECT_FALSE(session);
    EXPECT_EQ(session.append({1}).code, SIBYL_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(session.position().error().code, SIBYL_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(session.sample().error().code, SIBYL_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(session.generate({1}).error().code, SIBYL_ERR_INVALID_ARGUMENT);
}

// ------------------------------------------------------------------ ownership

TEST_F(SdkTest, ModelAndSessionMove) {
    sibyl_model* raw = model_.get();
    sibyl::Model moved(std::move(model_));
    EXPECT_EQ(moved.get(), raw);
    EXPECT_EQ(model_.get(), nullptr);  // NOLINT(bugprone-use-after-move): moved-from is empty
    EXPECT_FALSE(model_);
    ASSERT_TRUE(moved.info().ok());

    sibyl::Model assigned;
    assigned = std::move(moved);
    EXPECT_EQ(assigned.get(), raw);
    EXPECT_EQ(moved.get(), nullptr);  // NOLINT(bugprone-use-after-move)

    sibyl::Result<sibyl::Session> made = assigned.create_session();
    ASSERT_TRUE(made.ok()) << made.error().message;
    sibyl::Session a = std::move(made).value();
    ASSERT_TRUE(a.append(kPrompt).ok());
    sibyl_session* raw_session = a.get();
    sibyl::Session b(std::move(a));
    EXPECT_EQ(b.get(), raw_session);
    EXPECT_FALSE(a);  // NOLINT(bugprone-use-after-move)
    ASSERT_TRUE(b.position().ok());
    EXPECT_EQ(*b.position(), kPrompt.size());

    // Move-assigning over a live session destroys the old one (ASan checks the leak).
    sibyl::Session c = std::move(assigned.create_session()).value();
    c = std::move(b);
    EXPECT_EQ(c.get(), raw_session);
    EXPECT_EQ(*c.position(), kPrompt.size());

    // release() hands the handle back to C.
    sibyl_session* released = c.release();
    EXPECT_FALSE(c);
    size_t position = 0;
    EXPECT_EQ(sibyl_session_position(released, &position), SIBYL_OK);
    EXPECT_EQ(position, kPrompt.size());
    sibyl_session_destroy(released);
    model_ = std::move(assigned);
}

TEST_F(SdkTest, SessionOutlivingItsModelReportsModelDestroyed) {
    sibyl::Session session = new_session();
    ASSERT_TRUE(session.append(kPrompt).ok());
    model_ = sibyl::Model();  // destroys the model
    EXPECT_EQ(session.append({3}).code, SIBYL_ERR_MODEL_DESTROYED);
    EXPECT_EQ(session.sample().error().code, SIBYL_ERR_MODEL_DESTROYED);
    EXPECT_EQ(session.generate({}).error().code, SIBYL_ERR_MODEL_DESTROYED);
    // The session's destructor still runs cleanly.
}

// ------------------------------------------------------------------ append, logits, sampling

TEST_F(SdkTest, AppendLogitsAndGreedySample) {
    sibyl::Session session = new_session();
    EXPECT_EQ(session.logits().error().code, SIBYL_ERR_NO_LOGITS);
    EXPECT_EQ(session.sample().error().code, SIBYL_ERR_NO_LOGITS);

    ASSERT_TRUE(session.append(kPrompt, sibyl::LogitsMode::All).ok());
    sibyl::Result<sibyl::LogitsView> all = session.logits();
    ASSERT_TRUE(all.ok()) << all.error().message;
    EXPECT_EQ(all->rows, kPrompt.size());
    EXPECT_EQ(all->vocab, 1024u);
    EXPECT_EQ(all->size(), kPrompt.size() * 1024u);
    ASSERT_NE(all->data, nullptr);
    EXPECT_EQ(all->last_row(), all->row(kPrompt.size() - 1));
    const std::vector<float> last(all->last_row(), all->last_row() + all->vocab);

    // Greedy sampling is the argmax of the last row.
    sibyl::Result<int32_t> greedy = session.sample();
    ASSERT_TRUE(greedy.ok()) << greedy.error().message;
    const auto argmax = static_cast<int32_t>(std::max_element(last.begin(), last.end()) - last.begin());
    EXPECT_EQ(*greedy, argmax);

    ASSERT_TRUE(session.append({*greedy}).ok());
    sibyl::Result<sibyl::LogitsView> one = session.logits();
    ASSERT_TRUE(one.ok());
    EXPECT_EQ(one->rows, 1u);
    EXPECT_EQ(*session.position(), kPrompt.size() + 1);

    ASSERT_TRUE(session.append({5, 6}, sibyl::LogitsMode::None).ok());
    EXPECT_EQ(session.logits().error().code, SIBYL_ERR_NO_LOGITS);
    EXPECT_EQ(*session.position(), kPrompt.size() + 3);
}

TEST_F(SdkTest, InvalidTokenIsReportedAndChangesNothing) {
    sibyl::Session session = new_session();
    ASSERT_TRUE(session.append(kPrompt).ok());
    for (int32_t bad : {-1, 1024}) {
        sibyl::Error err = session.append({7, bad});
        EXPECT_EQ(err.code, SIBYL_ERR_INVALID_TOKEN);
        EXPECT_FALSE(err.message.empty());
        EXPECT_EQ(*session.position(), kPrompt.size());
    }
    EXPECT_TRUE(session.sample().ok());  // the logits survived too
}

TEST_F(SdkTest, RewindAndReset) {
    sibyl::Session session = new_session();
    ASSERT_TRUE(session.append(kPrompt).ok());
    const int32_t first = *session.sample();
    ASSERT_TRUE(session.append({first, 9, 10}).ok());

    EXPECT_EQ(session.rewind(kPrompt.size() + 10).code, SIBYL_ERR_INVALID_ARGUMENT);
    ASSERT_TRUE(session.rewind(kPrompt.size() - 1).ok());
    EXPECT_EQ(*session.position(), kPrompt.size() - 1);
    EXPECT_EQ(session.sample().error().code, SIBYL_ERR_NO_LOGITS);  // rewind drops the logits
    ASSERT_TRUE(session.append({kPrompt.back()}).ok());
    EXPECT_EQ(*session.sample(), first);  // same context, same greedy token

    ASSERT_TRUE(session.reset().ok());
    EXPECT_EQ(*session.position(), 0u);
    EXPECT_EQ(session.sample().error().code, SIBYL_ERR_NO_LOGITS);
}

TEST_F(SdkTest, SameSeedSameSampledTokens) {
    sibyl::SamplerOptions sampler;
    sampler.temperature = 0.8f;
    sampler.top_k = 40;
    sibyl::SessionOptions options;
    options.seed = 1234;

    sibyl::Session a = new_session(options);
    sibyl::Session b = new_session(options);
    const std::vector<int32_t> ta = sample_n(a, kPrompt, 16, sampler);
    const std::vector<int32_t> tb = sample_n(b, kPrompt, 16, sampler);
    ASSERT_EQ(ta.size(), 16u);
    EXPECT_EQ(ta, tb);
    for (int32_t t : ta) {
        EXPECT_GE(t, 0);
        EXPECT_LT(t, 1024);
    }

    // reset() re-seeds with the creation seed; set_seed() re-seeds explicitly.
    ASSERT_TRUE(a.reset().ok());
    EXPECT_EQ(sample_n(a, kPrompt, 16, sampler), ta);
    sibyl::Session c = new_session();  // seed 0
    ASSERT_TRUE(c.set_seed(1234).ok());
    EXPECT_EQ(sample_n(c, kPrompt, 16, sampler), ta);

    // generate() with a seed re-seeds first: two runs from the same context agree.
    sibyl::GenerateOptions gen;
    gen.max_new_tokens = 12;
    gen.stop_at_eos = false;
    gen.seed = 99;
    gen.sampler = sampler;
    sibyl::Session d = new_session();
    sibyl::Session e = new_session();
    sibyl::Result<std::vector<int32_t>> gd = d.generate(kPrompt, gen);
    sibyl::Result<std::vector<int32_t>> ge = e.generate(kPrompt, gen);
    ASSERT_TRUE(gd.ok()) << gd.error().message;
    ASSERT_TRUE(ge.ok()) << ge.error().message;
    EXPECT_EQ(gd->size(), 12u);
    EXPECT_EQ(*gd, *ge);
}

// ------------------------------------------------------------------ generate

TEST_F(SdkTest, GenerateStopsWhenTheCallbackSaysSo) {
    sibyl::Session session = new_session();
    sibyl::GenerateOptions gen;
    gen.max_new_tokens = 50;
    gen.stop_at_eos = false;
    std::vector<int32_t> seen;
    sibyl::Result<std::vector<int32_t>> tokens = session.generate(kPrompt, gen, [&](int32_t token) {
        seen.push_back(token);
        return seen.size() == 3;  // stop after the third token
    });
    ASSERT_TRUE(tokens.ok()) << tokens.error().message;
    EXPECT_EQ(seen.size(), 3u);
    EXPECT_EQ(*tokens, seen);
    EXPECT_EQ(*session.position(), kPrompt.size() + 3);
}

TEST_F(SdkTest, GenerateMatchesManualGreedyDecoding) {
    sibyl::Session manual = new_session();
    const std::vector<int32_t> expected = sample_n(manual, kPrompt, 8, sibyl::SamplerOptions());

    sibyl::Session session = new_session();
    sibyl::GenerateOptions gen;
    gen.max_new_tokens = 8;
    gen.stop_at_eos = false;
    int calls = 0;
    sibyl::Result<std::vector<int32_t>> tokens = session.generate(kPrompt, gen, [&](int32_t) { ++calls; });
    ASSERT_TRUE(tokens.ok()) << tokens.error().message;
    EXPECT_EQ(*tokens, expected);
    EXPECT_EQ(calls, 8);
    EXPECT_EQ(*session.position(), kPrompt.size() + 8);

    // With an empty prompt generation continues from the current logits.
    sibyl::Result<std::vector<int32_t>> more = session.generate({}, gen);
    ASSERT_TRUE(more.ok()) << more.error().message;
    EXPECT_EQ(more->size(), 8u);
    EXPECT_EQ(*session.position(), kPrompt.size() + 16);
}

TEST_F(SdkTest, GenerateReportsErrors) {
    sibyl::Session session = new_session();
    int calls = 0;
    sibyl::Result<std::vector<int32_t>> bad = session.generate({0, 5000}, {}, [&](int32_t) {
        ++calls;
        return false;
    });
    ASSERT_FALSE(bad.ok());
    EXPECT_EQ(bad.error().code, SIBYL_ERR_INVALID_TOKEN);
    EXPECT_FALSE(bad.error().message.empty());
    EXPECT_EQ(calls, 0);
    EXPECT_EQ(session.generate({}).error().code, SIBYL_ERR_NO_LOGITS);
}

TEST_F(SdkTest, FunctionObjectsOfEveryKindAreAccepted) {
    sibyl::Session session = new_session();
    sibyl::GenerateOptions gen;
    gen.max_new_tokens = 2;
    gen.stop_at_eos = false;
    std::function<bool(int32_t)> fn = [](int32_t) { return false; };
    EXPECT_TRUE(session.generate(kPrompt, gen, fn).ok());
    const auto const_lambda = [](int32_t) { return 0; };  // int result: non-zero stops
    EXPECT_TRUE(session.generate({}, gen, const_lambda).ok());
    EXPECT_TRUE(session.generate({}, gen, +[](int32_t) { return false; }).ok());  // function pointer
    EXPECT_EQ(*session.position(), kPrompt.size() + 6);
}

#if SIBYL_HPP_EXCEPTIONS
TEST_F(SdkTest, ThrowingForms) {
    try {
        (void)sibyl::check(sibyl::Model::load("/nonexistent/sibyl-sdk-test"));
        FAIL() << "check() did not throw";
    } catch (const sibyl::Exception& e) {
        EXPECT_EQ(e.code(), SIBYL_ERR_IO);
        EXPECT_NE(std::string(e.what()).find("/nonexistent/sibyl-sdk-test"), std::string::npos);
    }
    sibyl::Session session = sibyl::check(model_.create_session());
    EXPECT_THROW(sibyl::check(session.append({-5})), sibyl::Exception);
    EXPECT_NO_THROW(sibyl::check(session.append(kPrompt)));
    EXPECT_THROW((void)sibyl::Result<int32_t>(sibyl::Error{SIBYL_ERR_IO, "x"}).value(), sibyl::Exception);
}

TEST_F(SdkTest, AnExceptionFromTheCallbackStopsAndPropagates) {
    sibyl::Session session = new_session();
    sibyl::GenerateOptions gen;
    gen.max_new_tokens = 50;
    gen.stop_at_eos = false;
    int calls = 0;
    EXPECT_THROW((void)session.generate(kPrompt, gen,
                                        [&](int32_t) -> bool {
                                            if (++calls == 2) throw std::runtime_error("stop here");
                                            return false;
                                        }),
                 std::runtime_error);
    EXPECT_EQ(calls, 2);
    // Every reported token is in the context; the session stays usable.
    EXPECT_EQ(*session.position(), kPrompt.size() + 2);
    EXPECT_TRUE(session.sample().ok());
}
#endif

// ------------------------------------------------------------------ logging

TEST_F(SdkTest, LogCallbackCanBeInstalledAndRemoved) {
    std::atomic<int> messages{0};
    sibyl::set_log_callback(
        [&](sibyl::LogLevel level, std::string_view text) {
            EXPECT_GE(level, SIBYL_LOG_DEBUG);
            EXPECT_LT(level, SIBYL_LOG_OFF);
            (void)text;
            ++messages;
        },
        SIBYL_LOG_DEBUG);
    // Whatever the library chooses to log while loading and failing goes to the lambda.
    EXPECT_FALSE(sibyl::Model::load("/nonexistent/sibyl-sdk-log-test").ok());
    sibyl::Result<sibyl::Model> again = sibyl::Model::load(tiny_v3_dir());
    EXPECT_TRUE(again.ok());
    sibyl::set_log_callback(nullptr);  // back to stderr, WARN and above
    const int seen = messages.load();
    EXPECT_FALSE(sibyl::Model::load("/nonexistent/sibyl-sdk-log-test").ok());
    EXPECT_EQ(messages.load(), seen);  // the removed callback is not called any more
}

}  // namespace
