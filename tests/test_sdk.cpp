// Tests of the header-only C++ SDK (sdk/include/sibyl/sibyl.hpp) on the tiny-v3
// fixture ($SIBYL_TEST_DATA/tiny-v3).
#include <sibyl/sibyl.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "test_files.h"

namespace {

using sibyl_test::reasoner_dir;
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
static_assert(!std::is_copy_constructible_v<sibyl::Request>, "Request is move-only");
static_assert(!std::is_copy_assignable_v<sibyl::Request>, "Request is move-only");
static_assert(std::is_nothrow_move_constructible_v<sibyl::Request>, "Request moves without throwing");
static_assert(std::is_nothrow_move_assignable_v<sibyl::Request>, "Request moves without throwing");
static_assert(static_cast<int>(sibyl::EventType::Done) == SIBYL_EVENT_DONE, "event types equal the C ones");

TEST(SdkOptions, DefaultsMatchTheCInitFunctions) {
    sibyl_model_options m;
    sibyl_model_options_init(&m);
    const sibyl::ModelOptions mo;
    EXPECT_EQ(static_cast<int>(mo.backend), static_cast<int>(m.backend));
    EXPECT_EQ(mo.n_threads, m.n_threads);
    EXPECT_EQ(mo.device_index, m.device_index);
    EXPECT_EQ(mo.memory_budget, m.memory_budget);
    EXPECT_EQ(mo.vulkan_device, m.vulkan_device);
    EXPECT_EQ(mo.kv_cache_bytes, m.kv_cache_bytes);
    EXPECT_EQ(mo.kv_page_tokens, m.kv_page_tokens);
    EXPECT_EQ(mo.worker_threads, m.worker_threads);
    EXPECT_EQ(mo.worker_nice, m.worker_nice);
    EXPECT_EQ(mo.worker_cpu_mask, m.worker_cpu_mask);
    EXPECT_EQ(mo.step_tokens, m.step_tokens);
    EXPECT_EQ(static_cast<int>(mo.precision), static_cast<int>(m.precision));
    EXPECT_EQ(mo.to_c().struct_size, sizeof(sibyl_model_options));
    sibyl::ModelOptions set;
    set.device_index = 2;
    set.memory_budget = 3;
    set.kv_cache_bytes = 4;
    set.kv_page_tokens = 5;
    set.worker_threads = 6;
    set.worker_nice = 7;
    set.worker_cpu_mask = 8;
    set.step_tokens = 9;
    set.precision = sibyl::Precision::Exact;
    const sibyl_model_options sc = set.to_c();
    EXPECT_EQ(sc.precision, SIBYL_PRECISION_EXACT);
    EXPECT_EQ(sc.device_index, 2);
    EXPECT_EQ(sc.memory_budget, 3u);
    EXPECT_EQ(sc.kv_cache_bytes, 4u);
    EXPECT_EQ(sc.kv_page_tokens, 5u);
    EXPECT_EQ(sc.worker_threads, 6);
    EXPECT_EQ(sc.worker_nice, 7);
    EXPECT_EQ(sc.worker_cpu_mask, 8u);
    EXPECT_EQ(sc.step_tokens, 9u);

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
    EXPECT_EQ(sibyl::status_string(SIBYL_ERR_BUSY), std::string(sibyl_status_string(SIBYL_ERR_BUSY)));
    EXPECT_NE(sibyl::status_string(SIBYL_ERR_BUSY), sibyl::status_string(SIBYL_STATUS_MAX_ENUM));
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
    // The defaults: a 1 GiB pool of 64-token pages (whole pages), one worker thread.
    EXPECT_EQ(info->kv_page_tokens, 64u);
    const uint64_t page = info->kv_bytes_per_token * 64;
    EXPECT_EQ(info->kv_cache_bytes, (uint64_t{1} << 30) / page * page);
    EXPECT_EQ(info->worker_threads, 1);
}

TEST_F(SdkTest, CacheAndWorkerOptionsReachTheModel) {
    sibyl::ModelOptions options;
    options.kv_cache_bytes = uint64_t{1} << 20;
    options.kv_page_tokens = 32;
    options.worker_threads = 0;
    options.step_tokens = 16;
    sibyl::Result<sibyl::Model> model = sibyl::Model::load(tiny_v3_dir(), options);
    ASSERT_TRUE(model.ok()) << model.error().message;
    sibyl::Result<sibyl::ModelInfo> info = model->info();
    ASSERT_TRUE(info.ok()) << info.error().message;
    EXPECT_EQ(info->kv_page_tokens, 32u);
    const uint64_t page = info->kv_bytes_per_token * 32;
    EXPECT_EQ(info->kv_cache_bytes, (uint64_t{1} << 20) / page * page);
    EXPECT_EQ(info->worker_threads, 0);
    EXPECT_EQ(info->precision, sibyl::Precision::Fast);
    EXPECT_FALSE(info->cpu_simd.empty());
    EXPECT_GT(info->decode_weight_bytes, 0u);
    options.precision = sibyl::Precision::Exact;
    sibyl::Result<sibyl::Model> exact = sibyl::Model::load(tiny_v3_dir(), options);
    ASSERT_TRUE(exact.ok()) << exact.error().message;
    EXPECT_EQ(exact->info()->precision, sibyl::Precision::Exact);

    sibyl::ModelOptions bad;
    bad.worker_threads = -2;
    EXPECT_EQ(sibyl::Model::load(tiny_v3_dir(), bad).error().code, SIBYL_ERR_INVALID_ARGUMENT);
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

// The default model (ABI 0.8): found in the source tree by a build-tree library, loaded with no path.
TEST(SdkLoad, DefaultModelIsFoundAndLoads) {
    unsetenv("SIBYL_DEFAULT_MODEL");
    sibyl::Result<std::string> path = sibyl::Model::default_model_path();
    ASSERT_TRUE(path.ok()) << path.error().message;
    EXPECT_NE(path->find("tiny-reasoner"), std::string::npos) << *path;
    size_t n = 0;
    char small[4];
    EXPECT_EQ(sibyl_default_model_path(small, sizeof small, &n), SIBYL_ERR_BUFFER_TOO_SMALL);
    EXPECT_EQ(n, path->size());
    EXPECT_EQ(sibyl_default_model_path(nullptr, 0, nullptr), SIBYL_ERR_INVALID_ARGUMENT);
    sibyl::ModelOptions options;
    options.backend = sibyl::Backend::Cpu;
    sibyl::Result<sibyl::Model> model = sibyl::Model::load_default(options);
    ASSERT_TRUE(model.ok()) << model.error().message;
    EXPECT_GT(model->info()->n_parameters, 6000000u);  // the 6.8 M tiny-reasoner
}

// SIBYL_DEFAULT_MODEL names the default model; when it holds none, loading without a path is an
// I/O error naming it, never another model.
TEST(SdkLoad, DefaultModelFromTheEnvironment) {
    setenv("SIBYL_DEFAULT_MODEL", tiny_v3_dir().c_str(), 1);
    sibyl::Result<std::string> path = sibyl::Model::default_model_path();
    ASSERT_TRUE(path.ok()) << path.error().message;
    EXPECT_EQ(*path, tiny_v3_dir());
    setenv("SIBYL_DEFAULT_MODEL", "/nonexistent/sibyl-default", 1);
    EXPECT_EQ(sibyl::Model::default_model_path().error().code, SIBYL_ERR_IO);
    sibyl::Result<sibyl::Model> model = sibyl::Model::load_default();
    ASSERT_FALSE(model.ok());
    EXPECT_EQ(model.error().code, SIBYL_ERR_IO);
    EXPECT_NE(model.error().message.find("/nonexistent/sibyl-default"), std::string::npos) << model.error().message;
    unsetenv("SIBYL_DEFAULT_MODEL");
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

// ------------------------------------------------------------------ requests (non-blocking, since 0.3)

// What a request delivered, in order.
struct Drained {
    std::vector<int32_t> tokens;
    std::string reasoning;
    std::string answer;
    int done_events = 0;
    int events_after_done = 0;
    sibyl::Event done;  // the Done event

    void add(const sibyl::Event& e) {
        if (done_events > 0) ++events_after_done;
        switch (e.type) {
            case sibyl::EventType::Token: tokens.push_back(e.token); break;
            case sibyl::EventType::Text:
                (e.channel == sibyl::Channel::Reasoning ? reasoning : answer) += e.text;
                break;
            case sibyl::EventType::Done:
                ++done_events;
                done = e;
                break;
            case sibyl::EventType::None: ADD_FAILURE() << "an Event of type None was delivered"; break;
            case sibyl::EventType::ToolCall: ADD_FAILURE() << "a tool call without tools"; break;
        }
    }
};

// Polls `request` until its Done event: between polls it waits (library workers) or,
// with `stepper`, runs the model's steps on this thread (worker_threads = 0).
Drained drain(sibyl::Request& request, const sibyl::Model* stepper = nullptr) {
    Drained out;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    while (out.done_events == 0) {
        if (std::chrono::steady_clock::now() > deadline) {
            ADD_FAILURE() << "the request did not end";
            break;
        }
        sibyl::Result<sibyl::Event> event = request.poll();
        if (!event.ok()) {
            ADD_FAILURE() << event.error().message;
            break;
        }
        if (*event) {
            out.add(*event);
            continue;
        }
        if (stepper) {
            sibyl::Result<sibyl::StepReport> report = stepper->step();
            if (!report.ok()) {
                ADD_FAILURE() << report.error().message;
                break;
            }
        } else {
            sibyl::Result<bool> ready = request.wait(1000000);
            if (!ready.ok()) {
                ADD_FAILURE() << ready.error().message;
                break;
            }
        }
    }
    // Nothing follows the end.
    sibyl::Result<sibyl::Event> after = request.poll();
    EXPECT_TRUE(after.ok());
    if (after.ok()) {
        EXPECT_FALSE(*after);
    }
    return out;
}

// A callback's view of a request, filled on the library thread.
struct Collector {
    std::mutex mutex;
    Drained drained;
    std::atomic<int> calls{0};

    sibyl::EventCallback callback() {
        return [this](const sibyl::Event& e) {
            std::lock_guard<std::mutex> lock(mutex);
            drained.add(e);
            ++calls;
        };
    }
};

sibyl::GenerateOptions fixed_length(uint32_t n) {
    sibyl::GenerateOptions gen;
    gen.max_new_tokens = n;
    gen.stop_at_eos = false;
    return gen;
}

TEST(SdkEvent, FromCOwnsItsText) {
    char piece[] = "caf\xc3\xa9";
    sibyl_event c{};
    c.struct_size = sizeof c;
    c.type = SIBYL_EVENT_TEXT;
    c.channel = SIBYL_CHANNEL_REASONING;
    c.text = piece;
    c.text_len = std::strlen(piece);
    const sibyl::Event e = sibyl::Event::from_c(c);
    std::memset(piece, 'x', sizeof piece - 1);  // the C pointer's bytes change (as at the next poll)
    EXPECT_TRUE(e);
    EXPECT_EQ(e.type, sibyl::EventType::Text);
    EXPECT_EQ(e.channel, sibyl::Channel::Reasoning);
    EXPECT_EQ(e.text, "caf\xc3\xa9");
    EXPECT_FALSE(e.is_done());
    EXPECT_TRUE(e.error().ok());

    sibyl_event none{};
    none.struct_size = sizeof none;
    EXPECT_FALSE(sibyl::Event::from_c(none));
    EXPECT_FALSE(sibyl::Event::from_c(none).has_value());

    sibyl_event done{};
    done.struct_size = sizeof done;
    done.type = SIBYL_EVENT_DONE;
    done.stop_reason = SIBYL_STOP_ERROR;
    done.status = SIBYL_ERR_OUT_OF_MEMORY;
    done.text = "pool full";
    done.text_len = 9;
    const sibyl::Event d = sibyl::Event::from_c(done);
    EXPECT_TRUE(d.is_done());
    EXPECT_EQ(d.stop_reason, SIBYL_STOP_ERROR);
    EXPECT_EQ(d.error().code, SIBYL_ERR_OUT_OF_MEMORY);
    EXPECT_EQ(d.error().message, "pool full");
}

TEST(SdkRequest, EmptyRequestFailsCleanly) {
    sibyl::Request request;
    EXPECT_FALSE(request);
    EXPECT_FALSE(request.done());
    EXPECT_FALSE(request.has_callback());
    EXPECT_EQ(request.poll().error().code, SIBYL_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(request.wait(0).error().code, SIBYL_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(request.cancel().code, SIBYL_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(request.result().error().code, SIBYL_ERR_INVALID_ARGUMENT);
    sibyl::Session session;
    EXPECT_EQ(session.submit_generate({1}).error().code, SIBYL_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(session.submit_chat({{"user", "hi"}}).error().code, SIBYL_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(session.fork().error().code, SIBYL_ERR_INVALID_ARGUMENT);
    sibyl::Model model;
    EXPECT_EQ(model.step().error().code, SIBYL_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(model.token_bytes(0).error().code, SIBYL_ERR_INVALID_ARGUMENT);
}

TEST_F(SdkTest, SubmitGenerateMatchesGenerate) {
    sibyl::Session blocking = new_session();
    sibyl::Result<std::vector<int32_t>> expected = blocking.generate(kPrompt, fixed_length(12));
    ASSERT_TRUE(expected.ok()) << expected.error().message;
    ASSERT_EQ(expected->size(), 12u);

    sibyl::Session session = new_session();
    sibyl::Result<sibyl::Request> request = session.submit_generate(kPrompt, fixed_length(12));
    ASSERT_TRUE(request.ok()) << request.error().message;
    EXPECT_FALSE(request->has_callback());
    sibyl::Result<bool> ready = request->wait(std::numeric_limits<int64_t>::max());  // "forever" waits
    ASSERT_TRUE(ready.ok()) << ready.error().message;
    EXPECT_TRUE(*ready);
    const Drained got = drain(*request);
    EXPECT_EQ(got.tokens, *expected);
    EXPECT_EQ(got.done_events, 1);
    EXPECT_EQ(got.done.stop_reason, SIBYL_STOP_MAX_TOKENS);
    EXPECT_EQ(got.done.status, SIBYL_OK);
    EXPECT_TRUE(got.done.error().ok());
    EXPECT_TRUE(request->done());

    sibyl::Result<sibyl::RequestResult> result = request->result();
    ASSERT_TRUE(result.ok()) << result.error().message;
    EXPECT_EQ(result->stop_reason, SIBYL_STOP_MAX_TOKENS);
    EXPECT_EQ(result->generated_tokens, 12u);
    EXPECT_EQ(result->prompt_tokens + result->reused_tokens, kPrompt.size());
    EXPECT_GT(result->first_token_us, 0u);
    EXPECT_GE(result->total_us, result->first_token_us);

    // The tokens are in the session, which is free again: it continues like the blocking one.
    EXPECT_EQ(*session.position(), kPrompt.size() + 12);
    sibyl::Result<std::vector<int32_t>> more_blocking = blocking.generate({}, fixed_length(4));
    sibyl::Result<std::vector<int32_t>> more = session.generate({}, fixed_length(4));
    ASSERT_TRUE(more_blocking.ok() && more.ok());
    EXPECT_EQ(*more, *more_blocking);
}

TEST_F(SdkTest, SubmitGenerateWithACallbackMatchesGenerate) {
    sibyl::Session blocking = new_session();
    sibyl::Result<std::vector<int32_t>> expected = blocking.generate(kPrompt, fixed_length(10));
    ASSERT_TRUE(expected.ok()) << expected.error().message;

    Collector collector;
    auto alive = std::make_shared<int>(7);
    std::weak_ptr<int> watch = alive;
    sibyl::Session session = new_session();
    sibyl::EventCallback cb = collector.callback();
    sibyl::Result<sibyl::Request> request =
        session.submit_generate(kPrompt, fixed_length(10), [cb, alive](const sibyl::Event& e) { cb(e); });
    alive.reset();
    ASSERT_TRUE(request.ok()) << request.error().message;
    EXPECT_TRUE(request->has_callback());
    EXPECT_FALSE(watch.expired());  // the Request keeps the callback (and what it captured) alive
    sibyl::Result<bool> finished = request->wait(-1);
    ASSERT_TRUE(finished.ok()) << finished.error().message;
    EXPECT_TRUE(*finished);
    EXPECT_TRUE(request->done());
    {
        std::lock_guard<std::mutex> lock(collector.mutex);
        EXPECT_EQ(collector.drained.tokens, *expected);
        EXPECT_EQ(collector.drained.done_events, 1);
        EXPECT_EQ(collector.drained.events_after_done, 0);
        EXPECT_EQ(collector.drained.done.stop_reason, SIBYL_STOP_MAX_TOKENS);
    }
    sibyl::Result<sibyl::Event> polled = request->poll();  // events went to the callback
    ASSERT_TRUE(polled.ok());
    EXPECT_FALSE(*polled);
    EXPECT_EQ(request->result()->generated_tokens, 10u);
    *request = sibyl::Request();  // destroying the Request frees its callback
    EXPECT_TRUE(watch.expired());
}

TEST_F(SdkTest, SessionIsBusyWhileARequestRuns) {
    sibyl::ModelOptions options;
    options.worker_threads = 0;  // nothing runs until this thread steps: deterministic
    sibyl::Model model = std::move(sibyl::Model::load(tiny_v3_dir(), options)).value();
    sibyl::Session session = std::move(model.create_session()).value();
    sibyl::Result<sibyl::Request> request = session.submit_generate(kPrompt, fixed_length(4));
    ASSERT_TRUE(request.ok()) << request.error().message;

    EXPECT_EQ(session.append({3}).code, SIBYL_ERR_BUSY);
    EXPECT_EQ(session.generate({3}).error().code, SIBYL_ERR_BUSY);
    EXPECT_EQ(session.fork().error().code, SIBYL_ERR_BUSY);
    sibyl::Result<sibyl::Request> second = session.submit_generate({3}, fixed_length(4));
    ASSERT_FALSE(second.ok());
    EXPECT_EQ(second.error().code, SIBYL_ERR_BUSY);
    EXPECT_FALSE(second.error().message.empty());
    EXPECT_FALSE(request->done());

    const Drained got = drain(*request, &model);
    EXPECT_EQ(got.tokens.size(), 4u);
    EXPECT_TRUE(session.append({3}).ok());  // free again
}

TEST_F(SdkTest, CancelGivesTheCancelledStopReason) {
    // Application-driven: the cancel lands between two steps.
    {
        sibyl::ModelOptions options;
        options.worker_threads = 0;
        sibyl::Model model = std::move(sibyl::Model::load(tiny_v3_dir(), options)).value();
        sibyl::Session session = std::move(model.create_session()).value();
        sibyl::Result<sibyl::Request> request = session.submit_generate(kPrompt, fixed_length(50));
        ASSERT_TRUE(request.ok()) << request.error().message;
        for (int i = 0; i < 3; ++i) ASSERT_TRUE(model.step().ok());
        ASSERT_TRUE(request->cancel().ok());
        const Drained got = drain(*request, &model);
        EXPECT_EQ(got.done.stop_reason, SIBYL_STOP_CANCELLED);
        EXPECT_EQ(got.done.status, SIBYL_OK);
        EXPECT_LT(got.tokens.size(), 50u);
        EXPECT_EQ(request->result()->stop_reason, SIBYL_STOP_CANCELLED);
        EXPECT_EQ(request->result()->generated_tokens, got.tokens.size());
        EXPECT_EQ(*session.position(), kPrompt.size() + got.tokens.size());  // what was reported stays
    }
    // On the library's worker, through Request::cancel and through Session::cancel.
    for (bool through_session : {false, true}) {
        sibyl::Session session = new_session();
        sibyl::Result<sibyl::Request> request = session.submit_generate(kPrompt, fixed_length(4000));
        ASSERT_TRUE(request.ok()) << request.error().message;
        sibyl::Event first;
        while (!first) {  // wait for the first token, so the cancel hits a running request
            ASSERT_TRUE(request->wait(1000000).ok());
            sibyl::Result<sibyl::Event> polled = request->poll();
            ASSERT_TRUE(polled.ok());
            first = std::move(*polled);
        }
        ASSERT_EQ(first.type, sibyl::EventType::Token);
        ASSERT_TRUE((through_session ? session.cancel() : request->cancel()).ok());
        const Drained got = drain(*request);
        EXPECT_EQ(got.done.stop_reason, SIBYL_STOP_CANCELLED) << "through_session " << through_session;
        EXPECT_LT(got.tokens.size() + 1, 4000u);
        EXPECT_EQ(request->result()->stop_reason, SIBYL_STOP_CANCELLED);
    }
}

TEST_F(SdkTest, DestroyingARunningRequestStopsItsCallback) {
    Collector collector;
    auto alive = std::make_shared<int>(1);
    std::weak_ptr<int> watch = alive;
    sibyl::Session session = new_session();
    {
        sibyl::EventCallback cb = collector.callback();
        sibyl::Result<sibyl::Request> request =
            session.submit_generate(kPrompt, fixed_length(4000), [cb, keep = std::move(alive)](const sibyl::Event& e) {
                cb(e);
                std::this_thread::sleep_for(std::chrono::microseconds(200));  // a slow consumer
            });
        ASSERT_TRUE(request.ok()) << request.error().message;
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
        while (collector.calls.load() < 3 && std::chrono::steady_clock::now() < deadline)
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        ASSERT_GE(collector.calls.load(), 3);
    }  // ~Request: cancels, waits for a callback in progress, frees the callback
    EXPECT_TRUE(watch.expired());
    const int calls = collector.calls.load();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    EXPECT_EQ(collector.calls.load(), calls);  // never called after the destructor returned
    std::lock_guard<std::mutex> lock(collector.mutex);
    EXPECT_LT(collector.drained.tokens.size(), 4000u);
}

TEST_F(SdkTest, ForkContinuesIdentically) {
    sibyl::Session reference = new_session();
    sibyl::Result<std::vector<int32_t>> all = reference.generate(kPrompt, fixed_length(14));
    ASSERT_TRUE(all.ok()) << all.error().message;

    sibyl::Session original = new_session();
    ASSERT_TRUE(original.generate(kPrompt, fixed_length(6)).ok());
    sibyl::Result<sibyl::Session> forked = original.fork();
    ASSERT_TRUE(forked.ok()) << forked.error().message;
    EXPECT_EQ(*forked->position(), kPrompt.size() + 6);
    EXPECT_TRUE(forked->sample().ok());  // the logits came along

    sibyl::Result<std::vector<int32_t>> a = original.generate({}, fixed_length(8));
    sibyl::Result<std::vector<int32_t>> b = forked->generate({}, fixed_length(8));
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_EQ(*a, *b);
    EXPECT_EQ(*a, std::vector<int32_t>(all->begin() + 6, all->end()));

    // The RNG state comes along too: sampled continuations agree.
    sibyl::SessionOptions seeded;
    seeded.seed = 4321;
    sibyl::Session s = new_session(seeded);
    sibyl::GenerateOptions sampled = fixed_length(5);
    sampled.sampler.temperature = 0.9f;
    sampled.sampler.top_k = 50;
    ASSERT_TRUE(s.generate(kPrompt, sampled).ok());
    sibyl::Session t = std::move(s.fork()).value();
    sibyl::Result<std::vector<int32_t>> sa = s.generate({}, sampled);
    sibyl::Result<std::vector<int32_t>> ta = t.generate({}, sampled);
    ASSERT_TRUE(sa.ok() && ta.ok());
    EXPECT_EQ(*sa, *ta);

    // Overwriting the shared pages in one (copy-on-write) leaves the other as it was.
    sibyl::Session again = std::move(original.fork()).value();
    ASSERT_TRUE(original.rewind(2).ok());
    ASSERT_TRUE(original.append({9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20}).ok());
    sibyl::Result<std::vector<int32_t>> after = again.generate({}, fixed_length(3));
    sibyl::Result<std::vector<int32_t>> after_reference = reference.generate({}, fixed_length(3));
    ASSERT_TRUE(after.ok() && after_reference.ok());
    EXPECT_EQ(*after, *after_reference);
}

TEST_F(SdkTest, StepDrivesRequestsWithoutWorkerThreads) {
    sibyl::ModelOptions options;
    options.worker_threads = 0;
    sibyl::Model model = std::move(sibyl::Model::load(tiny_v3_dir(), options)).value();
    ASSERT_EQ(model.info()->worker_threads, 0);

    // The reference, on the default (worker thread) model.
    sibyl::Session blocking = new_session();
    sibyl::Result<std::vector<int32_t>> expected = blocking.generate(kPrompt, fixed_length(10));
    ASSERT_TRUE(expected.ok()) << expected.error().message;

    sibyl::Session session = std::move(model.create_session()).value();
    sibyl::Result<sibyl::Request> request = session.submit_generate(kPrompt, fixed_length(10));
    ASSERT_TRUE(request.ok()) << request.error().message;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    sibyl::Result<sibyl::Event> nothing = request->poll();  // no thread runs it but ours
    ASSERT_TRUE(nothing.ok());
    EXPECT_FALSE(*nothing);
    EXPECT_EQ(*request->wait(0), false);

    Drained got;
    int steps = 0;
    uint32_t rows = 0;
    for (; steps < 1000 && !request->done(); ++steps) {
        sibyl::Result<sibyl::StepReport> report = model.step(2000);  // about 2 ms per step
        ASSERT_TRUE(report.ok()) << report.error().message;
        rows += report->rows;
        EXPECT_LE(report->sequences, 1u);
        for (;;) {
            sibyl::Result<sibyl::Event> e = request->poll();
            ASSERT_TRUE(e.ok());
            if (!*e) break;
            got.add(*e);
        }
        if (report->pending == 0) {
            EXPECT_TRUE(request->done());  // the step that ended it queued the Done event
        }
    }
    EXPECT_TRUE(request->done());
    EXPECT_GE(steps, 2);
    EXPECT_EQ(got.tokens, *expected);
    EXPECT_EQ(got.done.stop_reason, SIBYL_STOP_MAX_TOKENS);
    EXPECT_GE(rows, kPrompt.size() + 9);  // the prompt and every token but the last went through the model
    sibyl::Result<sibyl::StepReport> idle = model.step();
    ASSERT_TRUE(idle.ok());
    EXPECT_EQ(idle->rows, 0u);
    EXPECT_EQ(idle->pending, 0u);

    // With a callback: it runs inside step(), on this thread.
    sibyl::Session second = std::move(model.create_session()).value();
    std::vector<int32_t> seen;
    const std::thread::id self = std::this_thread::get_id();
    bool other_thread = false;
    bool ended = false;
    sibyl::Result<sibyl::Request> with_cb =
        second.submit_generate(kPrompt, fixed_length(10), [&](const sibyl::Event& e) {
            if (std::this_thread::get_id() != self) other_thread = true;
            if (e.type == sibyl::EventType::Token) seen.push_back(e.token);
            if (e.is_done()) ended = true;
        });
    ASSERT_TRUE(with_cb.ok()) << with_cb.error().message;
    for (int i = 0; i < 1000 && !with_cb->done(); ++i) ASSERT_TRUE(model.step().ok());
    EXPECT_TRUE(ended);
    EXPECT_FALSE(other_thread);
    EXPECT_EQ(seen, *expected);
    EXPECT_EQ(*with_cb->wait(0), true);
}

#if SIBYL_HPP_EXCEPTIONS
TEST_F(SdkTest, AnExceptionFromAnEventCallbackCancelsAndIsRethrown) {
    sibyl::Session session = new_session();
    std::atomic<int> tokens{0};
    sibyl::Result<sibyl::Request> request =
        session.submit_generate(kPrompt, fixed_length(4000), [&](const sibyl::Event& e) {
            if (e.type == sibyl::EventType::Token && ++tokens == 2) throw std::runtime_error("callback failed");
        });
    ASSERT_TRUE(request.ok()) << request.error().message;
    EXPECT_THROW((void)request->wait(-1), std::runtime_error);
    EXPECT_TRUE(request->done());
    EXPECT_THROW((void)request->result(), std::runtime_error);
    EXPECT_LT(tokens.load(), 4000);
    sibyl_chat_result c{};
    c.struct_size = sizeof c;
    ASSERT_EQ(sibyl_request_result(request->get(), &c), SIBYL_OK);
    EXPECT_EQ(c.stop_reason, SIBYL_STOP_CANCELLED);
}
#endif

// ------------------------------------------------------------------ the reasoning model: chat requests, token bytes

class SdkReasonerTest : public ::testing::Test {
protected:
    void SetUp() override {
        sibyl::Result<sibyl::Model> loaded = sibyl::Model::load(reasoner_dir());
        ASSERT_TRUE(loaded.ok()) << loaded.error().message;
        model_ = std::move(loaded).value();
    }
    sibyl::Session new_session() { return std::move(model_.create_session()).value(); }

    sibyl::Model model_;
};

TEST_F(SdkReasonerTest, SubmitChatMatchesChat) {
    const std::vector<sibyl::ChatMessage> conversation = {{"user", "What is 6238 + 76?"}};
    sibyl::Session blocking = new_session();
    sibyl::Result<sibyl::ChatReply> expected = blocking.chat(conversation);
    ASSERT_TRUE(expected.ok()) << expected.error().message;
    ASSERT_FALSE(expected->answer.empty());
    EXPECT_EQ(expected->stop_reason, SIBYL_STOP_EOS);
    EXPECT_GT(expected->generated_tokens, 0u);
    EXPECT_GE(expected->total_us, expected->first_token_us);

    sibyl::Session session = new_session();
    sibyl::Result<sibyl::Request> request = session.submit_chat(conversation);
    ASSERT_TRUE(request.ok()) << request.error().message;
    const Drained got = drain(*request);
    EXPECT_EQ(got.answer, expected->answer);
    EXPECT_EQ(got.reasoning, expected->reasoning);
    EXPECT_EQ(got.done.stop_reason, SIBYL_STOP_EOS);
    sibyl::Result<sibyl::RequestResult> result = request->result();
    ASSERT_TRUE(result.ok()) << result.error().message;
    EXPECT_EQ(result->stop_reason, expected->stop_reason);
    EXPECT_EQ(result->reasoning_tokens, expected->reasoning_tokens);
    EXPECT_EQ(result->answer_tokens, expected->answer_tokens);
    EXPECT_EQ(result->generated_tokens, expected->generated_tokens);
    EXPECT_EQ(result->prompt_tokens + result->reused_tokens, expected->prompt_tokens + expected->reused_tokens);

    // Through a callback, and with options (a think budget) passed through.
    sibyl::ChatOptions budget;
    budget.think_budget = 4;
    sibyl::Session blocking_budget = new_session();
    sibyl::Result<sibyl::ChatReply> expected_budget = blocking_budget.chat(conversation, budget);
    ASSERT_TRUE(expected_budget.ok()) << expected_budget.error().message;
    Collector collector;
    sibyl::Session third = new_session();
    sibyl::Result<sibyl::Request> with_cb = third.submit_chat(conversation, budget, collector.callback());
    ASSERT_TRUE(with_cb.ok()) << with_cb.error().message;
    ASSERT_TRUE(*with_cb->wait(-1));
    std::lock_guard<std::mutex> lock(collector.mutex);
    EXPECT_EQ(collector.drained.answer, expected_budget->answer);
    EXPECT_EQ(collector.drained.reasoning, expected_budget->reasoning);
    EXPECT_EQ(with_cb->result()->reasoning_tokens, expected_budget->reasoning_tokens);
}

TEST_F(SdkReasonerTest, GrammarsShapeTheAnswer) {
    sibyl::Result<sibyl::Grammar> schema =
        sibyl::Grammar::from_json_schema(R"({"type": "object", "properties": {"sum": {"type": "integer"}},
                                             "required": ["sum"]})");
    ASSERT_TRUE(schema.ok()) << schema.error().message;
    EXPECT_EQ(schema->prepare(model_).code, SIBYL_OK);
    sibyl::ChatOptions options;
    options.grammar = &*schema;
    const std::vector<sibyl::ChatMessage> conversation = {{"user", "What is 6238 + 76?"}};
    sibyl::Session session = new_session();
    sibyl::Result<sibyl::ChatReply> reply = session.chat(conversation, options);
    ASSERT_TRUE(reply.ok()) << reply.error().message;
    EXPECT_EQ(reply->stop_reason, SIBYL_STOP_EOS);
    const std::string compact = [&] {  // the schema allows a space or an indented line between tokens
        std::string out;
        for (char c : reply->answer)
            if (c != ' ' && c != '\n' && c != '\t') out += c;
        return out;
    }();
    EXPECT_EQ(compact.rfind("{\"sum\":", 0), 0u) << reply->answer;
    EXPECT_EQ(compact.back(), '}') << reply->answer;
    sibyl::Session other = new_session();
    sibyl::Result<sibyl::Request> request = other.submit_chat(conversation, options);
    ASSERT_TRUE(request.ok()) << request.error().message;
    EXPECT_EQ(drain(*request).answer, reply->answer);

    sibyl::Result<std::string> gbnf = sibyl::Grammar::json_schema_to_gbnf(R"({"enum": ["yes", "no"]})");
    ASSERT_TRUE(gbnf.ok()) << gbnf.error().message;
    EXPECT_NE(gbnf->find("root ::= "), std::string::npos);
    sibyl::Result<sibyl::Grammar> bad = sibyl::Grammar::from_gbnf("root ::= (", "root");
    ASSERT_FALSE(bad.ok());
    EXPECT_EQ(bad.error().code, SIBYL_ERR_INVALID_ARGUMENT);
    EXPECT_NE(bad.error().message.find("line 1"), std::string::npos) << bad.error().message;
}

TEST_F(SdkReasonerTest, SubmitChatReportsUnusableConversationsAtOnce) {
    sibyl::Session session = new_session();
    sibyl::Result<sibyl::Request> empty = session.submit_chat({});
    ASSERT_FALSE(empty.ok());
    EXPECT_EQ(empty.error().code, SIBYL_ERR_INVALID_ARGUMENT);
    sibyl::Result<sibyl::Request> assistant_last = session.submit_chat({{"user", "hi"}, {"assistant", "hello"}});
    ASSERT_FALSE(assistant_last.ok());
    EXPECT_EQ(assistant_last.error().code, SIBYL_ERR_INVALID_ARGUMENT);
    EXPECT_TRUE(session.chat({{"user", "What is 2 + 3?"}}).ok());  // the session was left free
}

TEST_F(SdkReasonerTest, TokenBytesReproduceMultiByteText) {
    const std::string text = "na\xc3\xafve caf\xc3\xa9 \xe2\x80\x94 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x99\x82 12 + 30";
    sibyl::Result<std::vector<int32_t>> ids = model_.tokenize(text);
    ASSERT_TRUE(ids.ok()) << ids.error().message;
    std::string joined;
    bool some_token_is_partial = false;
    for (int32_t id : *ids) {
        sibyl::Result<std::string> bytes = model_.token_bytes(id);
        ASSERT_TRUE(bytes.ok()) << bytes.error().message;
        if (!bytes->empty()) {
            // A character continues in the next token, or began in the previous one.
            const auto last = static_cast<unsigned char>(bytes->back());
            const auto first = static_cast<unsigned char>(bytes->front());
            if (last >= 0xC0 || (first >= 0x80 && first < 0xC0)) some_token_is_partial = true;
        }
        joined += *bytes;
    }
    EXPECT_EQ(joined, text);
    EXPECT_TRUE(some_token_is_partial) << "the text should split a character across tokens";
    // detokenize() agrees on the whole sequence.
    EXPECT_EQ(*model_.detokenize(*ids), text);

    const int32_t vocab = model_.info()->vocab_size;
    EXPECT_EQ(model_.token_bytes(-1).error().code, SIBYL_ERR_INVALID_TOKEN);
    EXPECT_EQ(model_.token_bytes(vocab).error().code, SIBYL_ERR_INVALID_TOKEN);
}

}  // namespace
