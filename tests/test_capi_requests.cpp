// The non-blocking C ABI of 0.3 (sibyl_session_submit_*, sibyl_request_*, sibyl_model_step,
// sibyl_session_fork, SIBYL_ERR_BUSY, sibyl_model_token_bytes, the KV pool options and the
// versioned output structs), checked with numbers against blocking calls and lone sessions:
// tiny-v3 (random weights, 1024 tokens, no tokenizer) for tokens and bitwise logits, and the
// trained tiny-reasoner (models/tiny-reasoner) for chat and its eval reference.
// Every suite name contains "Capi", so the tsan preset's test filter runs them.
#include <sibyl/sibyl.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "capi_request_util.h"
#include "test_files.h"

namespace {

using namespace sibyl_capi_test;
using sibyl_test::reasoner_dir;
using sibyl_test::tiny_v3_dir;

// ================================================================== tiny-v3

class CapiRequests : public ::testing::Test {
protected:
    void TearDown() override { sibyl_model_destroy(model_); }
    void load(const LoadOptions& lo = {}) {
        model_ = load_model(tiny_v3_dir(), lo);
        ASSERT_NE(model_, nullptr);
    }
    sibyl_model* model_ = nullptr;
};

// 1. The same prompt, greedy: TOKEN events of a submitted generate equal the tokens of a
// blocking generate on a fresh session; DONE says MAX_TOKENS and OK; the result counts match.
TEST_F(CapiRequests, SubmitGenerateEqualsBlockingGenerate) {
    load();
    const std::vector<int32_t> prompt = make_prompt(1, 9);
    constexpr uint32_t kMax = 24;
    std::vector<float> blocking_logits;
    size_t blocking_pos = 0;
    const std::vector<int32_t> blocking = blocking_fresh(model_, prompt, kMax, false, &blocking_logits, &blocking_pos);
    ASSERT_EQ(blocking.size(), kMax);
    EXPECT_EQ(blocking_pos, prompt.size() + kMax);
    EXPECT_EQ(blocking, greedy_alone(model_, prompt, kMax)) << "blocking generate differs from append/sample";

    sibyl_session* s = new_session(model_);
    ASSERT_NE(s, nullptr);
    const sibyl_generate_options g = gen_options(kMax, false);
    sibyl_request* r = nullptr;
    ASSERT_EQ(sibyl_session_submit_generate(s, prompt.data(), prompt.size(), &g, nullptr, &r), SIBYL_OK)
        << sibyl_last_error_message();
    ASSERT_NE(r, nullptr);
    const Drained d = wait_done(r);
    EXPECT_EQ(d.tokens, blocking);
    EXPECT_EQ(d.stop, SIBYL_STOP_MAX_TOKENS);
    EXPECT_EQ(d.status, SIBYL_OK) << d.message;
    EXPECT_EQ(d.text_events, 0) << "generate requests send no text";
    EXPECT_EQ(d.events_after_done, 0);

    const sibyl_chat_result res = chat_result_of(r);
    EXPECT_EQ(res.stop_reason, SIBYL_STOP_MAX_TOKENS);
    EXPECT_EQ(res.generated_tokens, kMax);
    EXPECT_EQ(res.prompt_tokens + res.reused_tokens, prompt.size());
    EXPECT_EQ(res.reasoning_tokens, 0u);
    EXPECT_GT(res.first_token_us, 0u);
    EXPECT_GE(res.total_us, res.first_token_us);

    // After DONE the session is free again and holds prompt + every reported token.
    EXPECT_EQ(position_of(s), prompt.size() + kMax);
    EXPECT_TRUE(bitwise_equal(last_logits(s), blocking_logits)) << "logits after the request differ";

    // Polling after DONE: nothing more.
    sibyl_event e;
    e.struct_size = sizeof e;
    EXPECT_EQ(sibyl_request_poll(r, &e), SIBYL_OK);
    EXPECT_EQ(e.type, SIBYL_EVENT_NONE);
    int ready = -1;
    EXPECT_EQ(sibyl_request_wait(r, 0, &ready), SIBYL_OK);
    EXPECT_EQ(ready, 1) << "a done request is ready";
    sibyl_request_destroy(r);
    sibyl_session_destroy(s);
}

// on_event receives exactly what polling would have: same tokens, one DONE, nothing queued.
TEST_F(CapiRequests, OnEventCallbackSeesTheSameEventsAsPolling) {
    load();
    const std::vector<int32_t> prompt = make_prompt(2, 7);
    const std::vector<int32_t> expected = blocking_fresh(model_, prompt, 16, false);
    struct Seen {
        std::vector<int32_t> tokens;
        int done = 0;
        sibyl_stop_reason stop = SIBYL_STOP_MAX_ENUM;
        sibyl_status status = SIBYL_STATUS_MAX_ENUM;
        std::atomic<bool> finished{false};
    } seen;
    sibyl_request_options ro;
    sibyl_request_options_init(&ro);
    EXPECT_EQ(ro.struct_size, sizeof ro);
    EXPECT_EQ(ro.on_event, nullptr);
    ro.on_event = [](const sibyl_event* e, void* ud) {
        auto* s = static_cast<Seen*>(ud);
        if (e->type == SIBYL_EVENT_TOKEN) s->tokens.push_back(e->token);
        if (e->type == SIBYL_EVENT_DONE) {
            ++s->done;
            s->stop = e->stop_reason;
            s->status = e->status;
            s->finished.store(true, std::memory_order_release);
        }
    };
    ro.user_data = &seen;
    sibyl_session* s = new_session(model_);
    const sibyl_generate_options g = gen_options(16, false);
    sibyl_request* r = nullptr;
    ASSERT_EQ(sibyl_session_submit_generate(s, prompt.data(), prompt.size(), &g, &ro, &r), SIBYL_OK);
    const auto t0 = std::chrono::steady_clock::now();
    while (!seen.finished.load(std::memory_order_acquire) &&
           std::chrono::steady_clock::now() - t0 < std::chrono::seconds(120))
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    ASSERT_TRUE(seen.finished.load(std::memory_order_acquire));
    EXPECT_EQ(seen.tokens, expected);
    EXPECT_EQ(seen.done, 1);
    EXPECT_EQ(seen.stop, SIBYL_STOP_MAX_TOKENS);
    EXPECT_EQ(seen.status, SIBYL_OK);
    Drained d;
    drain(r, d);
    EXPECT_TRUE(d.tokens.empty() && !d.done) << "events went to the callback, none to the queue";
    sibyl_request_destroy(r);
    sibyl_session_destroy(s);
}

// 2. Eight sessions submitted at once: each result (tokens, then the logits the session
// holds) is bitwise what a lone session computes with append/sample.
TEST_F(CapiRequests, EightConcurrentRequestsMatchLoneSessionsBitwise) {
    load();
    constexpr int kSessions = 8;
    constexpr int kMax = 12;
    std::vector<std::vector<int32_t>> prompts, expected(kSessions);
    std::vector<std::vector<float>> expected_logits(kSessions);
    for (int i = 0; i < kSessions; ++i) {
        prompts.push_back(make_prompt(100 + i, 3 + 5 * static_cast<size_t>(i)));
        expected[i] = greedy_alone(model_, prompts[i], kMax, &expected_logits[i]);
        ASSERT_EQ(expected[i].size(), static_cast<size_t>(kMax));
        ASSERT_EQ(expected_logits[i].size(), 1024u);
    }
    for (int round = 0; round < 3; ++round) {
        std::vector<sibyl_session*> sessions(kSessions);
        std::vector<sibyl_request*> requests(kSessions);
        const sibyl_generate_options g = gen_options(kMax, false);
        for (int i = 0; i < kSessions; ++i) {
            sessions[i] = new_session(model_);
            ASSERT_NE(sessions[i], nullptr);
            ASSERT_EQ(sibyl_session_submit_generate(sessions[i], prompts[i].data(), prompts[i].size(), &g, nullptr,
                                                    &requests[i]),
                      SIBYL_OK)
                << sibyl_last_error_message();
        }
        for (int i = 0; i < kSessions; ++i) {
            const Drained d = wait_done(requests[i]);
            EXPECT_EQ(d.status, SIBYL_OK) << d.message;
            EXPECT_EQ(d.stop, SIBYL_STOP_MAX_TOKENS);
            EXPECT_EQ(d.tokens, expected[i]) << "round " << round << " session " << i;
        }
        for (int i = 0; i < kSessions; ++i) {
            EXPECT_EQ(position_of(sessions[i]), prompts[i].size() + kMax);
            EXPECT_TRUE(bitwise_equal(last_logits(sessions[i]), expected_logits[i]))
                << "round " << round << " session " << i << ": logits are not bitwise those of a lone session";
            sibyl_request_destroy(requests[i]);
            sibyl_session_destroy(sessions[i]);
        }
    }
}

// 2b. The same with the application stepping: one step really batches all eight sequences.
TEST_F(CapiRequests, EightRequestsShareOneStepAndStayBitwiseExact) {
    load({.worker_threads = 0});
    constexpr int kSessions = 8;
    constexpr int kMax = 10;
    std::vector<std::vector<int32_t>> prompts, expected(kSessions);
    std::vector<std::vector<float>> expected_logits(kSessions);
    for (int i = 0; i < kSessions; ++i) {
        prompts.push_back(make_prompt(200 + i, 4 + 3 * static_cast<size_t>(i)));
        expected[i] = greedy_alone(model_, prompts[i], kMax, &expected_logits[i]);
    }
    std::vector<sibyl_session*> sessions(kSessions);
    std::vector<sibyl_request*> requests(kSessions);
    const sibyl_generate_options g = gen_options(kMax, false);
    for (int i = 0; i < kSessions; ++i) {
        sessions[i] = new_session(model_);
        ASSERT_EQ(sibyl_session_submit_generate(sessions[i], prompts[i].data(), prompts[i].size(), &g, nullptr,
                                                &requests[i]),
                  SIBYL_OK);
    }
    std::vector<Drained> d(kSessions);
    uint32_t max_sequences = 0;
    for (int step = 0; step < 1000; ++step) {
        sibyl_step_report rep;
        rep.struct_size = sizeof rep;
        ASSERT_EQ(sibyl_model_step(model_, 0, &rep), SIBYL_OK);
        max_sequences = std::max(max_sequences, rep.sequences);
        bool all = true;
        for (int i = 0; i < kSessions; ++i) {
            drain(requests[i], d[i]);
            all = all && d[i].done;
        }
        if (all) break;
    }
    EXPECT_EQ(max_sequences, static_cast<uint32_t>(kSessions)) << "the eight requests never ran in one step";
    for (int i = 0; i < kSessions; ++i) {
        EXPECT_TRUE(d[i].done);
        EXPECT_EQ(d[i].tokens, expected[i]) << "session " << i;
        EXPECT_TRUE(bitwise_equal(last_logits(sessions[i]), expected_logits[i])) << "session " << i;
        sibyl_request_destroy(requests[i]);
        sibyl_session_destroy(sessions[i]);
    }
}

// 3. worker_threads = 0: nothing runs until the application steps; with a budget the reports
// are sane (rows > 0 while work exists, pending falls to 0, overrun agrees with elapsed_us).
TEST_F(CapiRequests, ApplicationDrivenStepsWithABudget) {
    load({.worker_threads = 0});
    sibyl_model_info info;
    info.struct_size = sizeof info;
    ASSERT_EQ(sibyl_model_get_info(model_, &info), SIBYL_OK);
    EXPECT_EQ(info.worker_threads, 0);

    constexpr int kRequests = 3;
    constexpr int kMax = 8;
    std::vector<std::vector<int32_t>> prompts, expected(kRequests);
    for (int i = 0; i < kRequests; ++i) {
        prompts.push_back(make_prompt(300 + i, 20 + 10 * static_cast<size_t>(i)));
        expected[i] = greedy_alone(model_, prompts[i], kMax);
    }
    std::vector<sibyl_session*> sessions(kRequests);
    std::vector<sibyl_request*> requests(kRequests);
    const sibyl_generate_options g = gen_options(kMax, false);
    for (int i = 0; i < kRequests; ++i) {
        sessions[i] = new_session(model_);
        ASSERT_EQ(sibyl_session_submit_generate(sessions[i], prompts[i].data(), prompts[i].size(), &g, nullptr,
                                                &requests[i]),
                  SIBYL_OK);
    }
    // Nothing has run: no worker exists.
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    for (int i = 0; i < kRequests; ++i) {
        Drained d;
        drain(requests[i], d);
        EXPECT_TRUE(d.tokens.empty() && !d.done) << "a request progressed without sibyl_model_step";
    }

    std::vector<Drained> d(kRequests);
    uint32_t last_pending = std::numeric_limits<uint32_t>::max();
    uint64_t total_rows = 0;
    int steps = 0;
    const uint64_t kBudget = 2000;
    for (; steps < 10000; ++steps) {
        sibyl_step_report rep;
        std::memset(&rep, 0xCD, sizeof rep);
        rep.struct_size = sizeof rep;
        ASSERT_EQ(sibyl_model_step(model_, kBudget, &rep), SIBYL_OK) << sibyl_last_error_message();
        EXPECT_GT(rep.rows, 0u) << "step " << steps << ": work exists but nothing ran";
        EXPECT_GE(rep.sequences, 1u);
        EXPECT_LE(rep.sequences, static_cast<uint32_t>(kRequests));
        EXPECT_LE(rep.sequences, rep.rows);
        EXPECT_LE(rep.rows, 256u) << "at most step_tokens rows";
        EXPECT_LE(rep.pending, last_pending) << "pending must not grow";
        EXPECT_EQ(rep.overrun, rep.elapsed_us > kBudget ? 1 : 0) << "elapsed " << rep.elapsed_us;
        last_pending = rep.pending;
        total_rows += rep.rows;
        bool all = true;
        for (int i = 0; i < kRequests; ++i) {
            drain(requests[i], d[i]);
            all = all && d[i].done;
        }
        if (all) {
            EXPECT_EQ(rep.pending, 0u);
            break;
        }
        EXPECT_GT(rep.pending, 0u) << "requests remain but pending is 0";
    }
    EXPECT_EQ(last_pending, 0u);
    // Every token ran exactly once: the prompts plus kMax sampled tokens each.
    uint64_t expected_rows = 0;
    for (auto& p : prompts) expected_rows += p.size() + kMax;
    EXPECT_EQ(total_rows, expected_rows);
    for (int i = 0; i < kRequests; ++i) {
        EXPECT_EQ(d[i].tokens, expected[i]) << "request " << i;
        EXPECT_EQ(d[i].stop, SIBYL_STOP_MAX_TOKENS);
    }
    // Idle: a step does nothing.
    sibyl_step_report rep;
    rep.struct_size = sizeof rep;
    ASSERT_EQ(sibyl_model_step(model_, kBudget, &rep), SIBYL_OK);
    EXPECT_EQ(rep.rows, 0u);
    EXPECT_EQ(rep.sequences, 0u);
    EXPECT_EQ(rep.pending, 0u);
    EXPECT_EQ(sibyl_model_step(model_, 0, nullptr), SIBYL_OK);
    rep.struct_size = sizeof rep - 1;
    EXPECT_EQ(sibyl_model_step(model_, 0, &rep), SIBYL_ERR_STRUCT_SIZE);
    EXPECT_EQ(sibyl_model_step(nullptr, 0, nullptr), SIBYL_ERR_INVALID_ARGUMENT);
    for (int i = 0; i < kRequests; ++i) {
        sibyl_request_destroy(requests[i]);
        sibyl_session_destroy(sessions[i]);
    }
}

// With no worker, a blocking generate drives the steps itself (also other sessions' requests).
TEST_F(CapiRequests, BlockingGenerateWorksWithoutWorkers) {
    load({.worker_threads = 0});
    const std::vector<int32_t> prompt = make_prompt(3, 11);
    const std::vector<int32_t> expected = greedy_alone(model_, prompt, 9);
    EXPECT_EQ(blocking_fresh(model_, prompt, 9, false), expected);
}

// 4a. Cancel before any step: DONE cancelled, no tokens, nothing ran.
TEST_F(CapiRequests, CancelBeforeAnyStep) {
    load({.worker_threads = 0});
    sibyl_session* s = new_session(model_);
    const std::vector<int32_t> prompt = make_prompt(4, 30);
    const sibyl_generate_options g = gen_options(8, false);
    sibyl_request* r = nullptr;
    ASSERT_EQ(sibyl_session_submit_generate(s, prompt.data(), prompt.size(), &g, nullptr, &r), SIBYL_OK);
    ASSERT_EQ(sibyl_request_cancel(r), SIBYL_OK);
    sibyl_step_report rep;
    rep.struct_size = sizeof rep;
    ASSERT_EQ(sibyl_model_step(model_, 0, &rep), SIBYL_OK);
    EXPECT_EQ(rep.rows, 0u) << "a cancelled request ran";
    Drained d;
    drain(r, d);
    ASSERT_TRUE(d.done);
    EXPECT_EQ(d.stop, SIBYL_STOP_CANCELLED);
    EXPECT_EQ(d.status, SIBYL_OK);
    EXPECT_TRUE(d.tokens.empty());
    const sibyl_chat_result res = chat_result_of(r);
    EXPECT_EQ(res.stop_reason, SIBYL_STOP_CANCELLED);
    EXPECT_EQ(res.generated_tokens, 0u);
    EXPECT_EQ(res.prompt_tokens, 0u);
    EXPECT_EQ(position_of(s), 0u);
    EXPECT_EQ(sibyl_request_cancel(r), SIBYL_OK) << "cancelling a finished request is harmless";
    sibyl_request_destroy(r);
    sibyl_session_destroy(s);
}

// 4c. A cancel while nothing runs does not cancel the next call (regression of 0.2).
TEST_F(CapiRequests, SessionCancelWhileIdleDoesNotCancelTheNextCall) {
    load();
    const std::vector<int32_t> prompt = make_prompt(5, 6);
    const std::vector<int32_t> expected = greedy_alone(model_, prompt, 8);
    sibyl_session* s = new_session(model_);
    const sibyl_generate_options g = gen_options(8, false);

    ASSERT_EQ(sibyl_session_cancel(s), SIBYL_OK);  // never used yet
    std::vector<int32_t> got;
    size_t n = 0;
    ASSERT_EQ(sibyl_session_generate(s, prompt.data(), prompt.size(), &g, collect_token, &got, &n), SIBYL_OK);
    EXPECT_EQ(n, 8u) << "the cancel before the call stopped it";
    EXPECT_EQ(got, expected);

    // After a finished blocking call.
    ASSERT_EQ(sibyl_session_reset(s), SIBYL_OK);
    ASSERT_EQ(sibyl_session_cancel(s), SIBYL_OK);
    got.clear();
    ASSERT_EQ(sibyl_session_generate(s, prompt.data(), prompt.size(), &g, collect_token, &got, &n), SIBYL_OK);
    EXPECT_EQ(n, 8u) << "a cancel after a finished call stopped the next one";
    EXPECT_EQ(got, expected);

    // After a finished submitted request.
    ASSERT_EQ(sibyl_session_reset(s), SIBYL_OK);
    sibyl_request* r = nullptr;
    ASSERT_EQ(sibyl_session_submit_generate(s, prompt.data(), prompt.size(), &g, nullptr, &r), SIBYL_OK);
    EXPECT_EQ(wait_done(r).tokens, expected);
    sibyl_request_destroy(r);
    ASSERT_EQ(sibyl_session_reset(s), SIBYL_OK);
    ASSERT_EQ(sibyl_session_cancel(s), SIBYL_OK);
    got.clear();
    ASSERT_EQ(sibyl_session_generate(s, prompt.data(), prompt.size(), &g, collect_token, &got, &n), SIBYL_OK);
    EXPECT_EQ(n, 8u);
    ASSERT_EQ(sibyl_session_reset(s), SIBYL_OK);
    ASSERT_EQ(sibyl_session_cancel(s), SIBYL_OK);
    ASSERT_EQ(sibyl_session_submit_generate(s, prompt.data(), prompt.size(), &g, nullptr, &r), SIBYL_OK);
    const Drained d = wait_done(r);
    EXPECT_EQ(d.stop, SIBYL_STOP_MAX_TOKENS) << "an idle cancel stopped the next request";
    EXPECT_EQ(d.tokens, expected);
    sibyl_request_destroy(r);
    sibyl_session_destroy(s);
}

// 4d. sibyl_session_cancel from another thread stops a running blocking generate: OK, fewer
// tokens than asked, and every reported token is in the session.
TEST_F(CapiRequests, SessionCancelFromAnotherThreadStopsBlockingGenerate) {
    load();
    sibyl_session* s = new_session(model_);
    const std::vector<int32_t> prompt = make_prompt(6, 5);
    constexpr uint32_t kMax = 3000;
    const sibyl_generate_options g = gen_options(kMax, false);
    struct State {
        std::atomic<int> tokens{0};
    } state;
    std::thread canceller([&] {
        const auto t0 = std::chrono::steady_clock::now();
        while (state.tokens.load() < 3 && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(60))
            std::this_thread::sleep_for(std::chrono::microseconds(200));
        EXPECT_EQ(sibyl_session_cancel(s), SIBYL_OK);
    });
    size_t n = 0;
    const sibyl_status st = sibyl_session_generate(
        s, prompt.data(), prompt.size(), &g,
        [](int32_t, void* ud) {
            static_cast<State*>(ud)->tokens.fetch_add(1);
            return 0;
        },
        &state, &n);
    canceller.join();
    EXPECT_EQ(st, SIBYL_OK) << sibyl_last_error_message();
    EXPECT_GE(n, 3u);
    EXPECT_LT(n, kMax) << "the cancel did not stop the generate";
    EXPECT_EQ(n, static_cast<size_t>(state.tokens.load()));
    EXPECT_EQ(position_of(s), prompt.size() + n);
    sibyl_session_destroy(s);
}

// sibyl_session_cancel also stops a submitted request — also after another call on the session
// was refused with BUSY (that call must not replace what the cancel reaches).
TEST_F(CapiRequests, SessionCancelStopsASubmittedRequest) {
    load({.worker_threads = 0});
    const std::vector<int32_t> prompt = make_prompt(15, 6);
    for (int variant = 0; variant < 3; ++variant) {
        SCOPED_TRACE(variant == 0 ? "cancel only"
                     : variant == 1 ? "after a BUSY blocking generate"
                                    : "after a BUSY submit");
        sibyl_session* s = new_session(model_);
        const sibyl_generate_options g = gen_options(50, false);
        sibyl_request* r = nullptr;
        ASSERT_EQ(sibyl_session_submit_generate(s, prompt.data(), prompt.size(), &g, nullptr, &r), SIBYL_OK);
        Drained d;
        for (int i = 0; i < 4; ++i) ASSERT_EQ(sibyl_model_step(model_, 0, nullptr), SIBYL_OK);
        drain(r, d);
        const size_t before = d.tokens.size();
        ASSERT_EQ(before, 4u);  // a token per step (the first after the prompt's step)
        const int32_t t = 5;
        const sibyl_generate_options g1 = gen_options(1, false);
        if (variant == 1) {
            EXPECT_EQ(sibyl_session_generate(s, &t, 1, &g1, nullptr, nullptr, nullptr), SIBYL_ERR_BUSY);
        } else if (variant == 2) {
            sibyl_request* r2 = nullptr;
            EXPECT_EQ(sibyl_session_submit_generate(s, &t, 1, &g1, nullptr, &r2), SIBYL_ERR_BUSY);
        }
        ASSERT_EQ(sibyl_session_cancel(s), SIBYL_OK);
        d = step_until_done(model_, r, d, 200);
        EXPECT_EQ(d.stop, SIBYL_STOP_CANCELLED) << "sibyl_session_cancel did not reach the submitted request ("
                                                << d.tokens.size() << " tokens)";
        EXPECT_LE(d.tokens.size(), before + 1);
        EXPECT_EQ(position_of(s), prompt.size() + d.tokens.size());
        sibyl_request_destroy(r);
        sibyl_session_destroy(s);
    }
}

// 5a. Calls on the session from inside its own generate's on_token are SIBYL_ERR_BUSY, and the
// outer generate still completes exactly.
TEST_F(CapiRequests, CallsFromInsideOnTokenAreBusy) {
    load();
    const std::vector<int32_t> prompt = make_prompt(7, 8);
    constexpr uint32_t kMax = 12;
    const std::vector<int32_t> expected = greedy_alone(model_, prompt, kMax);
    struct Inner {
        sibyl_session* s;
        std::vector<int32_t> tokens;
        std::vector<std::pair<std::string, sibyl_status>> statuses;
    } in;
    in.s = new_session(model_);
    const sibyl_generate_options g = gen_options(kMax, false);
    size_t n = 0;
    ASSERT_EQ(sibyl_session_generate(
                  in.s, prompt.data(), prompt.size(), &g,
                  [](int32_t token, void* ud) {
                      auto* c = static_cast<Inner*>(ud);
                      c->tokens.push_back(token);
                      if (c->tokens.size() != 2) return 0;
                      const int32_t t = 5;
                      size_t pos = 0, n2 = 0;
                      const float* l = nullptr;
                      size_t rows = 0, vocab = 0;
                      int32_t sampled = 0;
                      sibyl_session* fork = nullptr;
                      sibyl_request* r = nullptr;
                      const sibyl_generate_options g2 = gen_options(2, false);
                      c->statuses = {
                          {"append", sibyl_session_append(c->s, &t, 1, SIBYL_LOGITS_LAST)},
                          {"generate", sibyl_session_generate(c->s, &t, 1, &g2, nullptr, nullptr, &n2)},
                          {"rewind", sibyl_session_rewind(c->s, 1)},
                          {"reset", sibyl_session_reset(c->s)},
                          {"set_seed", sibyl_session_set_seed(c->s, 3)},
                          {"sample", sibyl_session_sample(c->s, nullptr, &sampled)},
                          {"logits", sibyl_session_logits(c->s, &l, &rows, &vocab)},
                          {"position", sibyl_session_position(c->s, &pos)},
                          {"fork", sibyl_session_fork(c->s, &fork)},
                          {"submit_generate", sibyl_session_submit_generate(c->s, &t, 1, &g2, nullptr, &r)},
                      };
                      sibyl_session_destroy(fork);
                      sibyl_request_destroy(r);
                      return 0;
                  },
                  &in, &n),
              SIBYL_OK)
        << sibyl_last_error_message();
    ASSERT_FALSE(in.statuses.empty());
    for (const auto& [what, st] : in.statuses) EXPECT_EQ(st, SIBYL_ERR_BUSY) << what << " from inside on_token";
    EXPECT_EQ(n, kMax);
    EXPECT_EQ(in.tokens, expected);
    EXPECT_EQ(position_of(in.s), prompt.size() + kMax);
    // The session is usable again afterwards.
    const int32_t t = 9;
    EXPECT_EQ(sibyl_session_append(in.s, &t, 1, SIBYL_LOGITS_LAST), SIBYL_OK);
    sibyl_session_destroy(in.s);
}

// 5a'. A BUSY call from inside the callback must not take over what sibyl_session_cancel
// stops: cancelling afterwards still stops the running generate.
TEST_F(CapiRequests, CancelStillStopsTheRunningGenerateAfterABusyInnerCall) {
    load();
    const std::vector<int32_t> prompt = make_prompt(8, 5);
    constexpr uint32_t kMax = 120;
    for (int variant = 0; variant < 2; ++variant) {
        SCOPED_TRACE(variant == 0 ? "cancel only" : "a busy inner generate, then cancel");
        struct C {
            sibyl_session* s;
            int variant;
            int tokens = 0;
            sibyl_status inner = SIBYL_OK;
        } c{new_session(model_), variant};
        const sibyl_generate_options g = gen_options(kMax, false);
        size_t n = 0;
        const sibyl_status st = sibyl_session_generate(
            c.s, prompt.data(), prompt.size(), &g,
            [](int32_t, void* ud) {
                auto* c = static_cast<C*>(ud);
                if (++c->tokens == 3) {
                    if (c->variant == 1) {
                        const int32_t t = 5;
                        const sibyl_generate_options g2 = gen_options(1, false);
                        c->inner = sibyl_session_generate(c->s, &t, 1, &g2, nullptr, nullptr, nullptr);
                    }
                    sibyl_session_cancel(c->s);
                }
                return 0;
            },
            &c, &n);
        EXPECT_EQ(st, SIBYL_OK) << sibyl_last_error_message();
        if (variant == 1) {
            EXPECT_EQ(c.inner, SIBYL_ERR_BUSY);
        }
        EXPECT_LE(n, 4u) << "sibyl_session_cancel did not stop the running generate (it ran to " << n << " tokens)";
        EXPECT_EQ(position_of(c.s), prompt.size() + n);
        sibyl_session_destroy(c.s);
    }
}

// 5b. Two threads call generate on one session at once: each call is OK or BUSY, never both
// running; the session holds exactly the tokens of the calls that ran.
TEST_F(CapiRequests, TwoThreadsGenerateOnOneSession) {
    load();
    sibyl_session* s = new_session(model_);
    const std::vector<int32_t> prompt = make_prompt(9, 4);
    ASSERT_EQ(sibyl_session_append(s, prompt.data(), prompt.size(), SIBYL_LOGITS_LAST), SIBYL_OK);
    constexpr int kCalls = 25;
    constexpr uint32_t kMax = 3;
    std::atomic<int> ok{0}, busy{0}, other{0};
    std::atomic<bool> go{false};
    auto body = [&](int32_t seed) {
        while (!go.load()) std::this_thread::yield();
        const sibyl_generate_options g = gen_options(kMax, false);
        for (int i = 0; i < kCalls; ++i) {
            const int32_t t = 10 + seed * 100 + i;
            size_t n = 0;
            const sibyl_status st = sibyl_session_generate(s, &t, 1, &g, nullptr, nullptr, &n);
            if (st == SIBYL_OK) {
                ++ok;
                if (n != kMax) ++other;
            } else if (st == SIBYL_ERR_BUSY) {
                ++busy;
                if (n != 0) ++other;
            } else {
                ++other;
            }
        }
    };
    std::thread a(body, 1), b(body, 2);
    go = true;
    a.join();
    b.join();
    EXPECT_EQ(other.load(), 0) << "a call returned neither OK nor BUSY, or a wrong count";
    EXPECT_EQ(ok.load() + busy.load(), 2 * kCalls);
    EXPECT_GT(ok.load(), 0);
    EXPECT_EQ(position_of(s), prompt.size() + static_cast<size_t>(ok.load()) * (1 + kMax));
    std::printf("[ info ] two threads, one session: %d OK, %d BUSY\n", ok.load(), busy.load());
    sibyl_session_destroy(s);
}

// 5c. A submitted, unfinished request makes every other call on its session BUSY until DONE.
TEST_F(CapiRequests, SubmittedRequestKeepsTheSessionBusyUntilDone) {
    load({.worker_threads = 0});
    const std::vector<int32_t> prompt = make_prompt(10, 10);
    sibyl_session* s = new_session(model_);
    const sibyl_generate_options g = gen_options(5, false);
    sibyl_request* r = nullptr;
    ASSERT_EQ(sibyl_session_submit_generate(s, prompt.data(), prompt.size(), &g, nullptr, &r), SIBYL_OK);
    auto expect_busy = [&](const char* when) {
        SCOPED_TRACE(when);
        const int32_t t = 5;
        size_t pos = 0, n = 0;
        int32_t sampled = 0;
        const float* l = nullptr;
        size_t rows = 0, vocab = 0;
        sibyl_session* fork = nullptr;
        sibyl_request* r2 = nullptr;
        EXPECT_EQ(sibyl_session_append(s, &t, 1, SIBYL_LOGITS_LAST), SIBYL_ERR_BUSY);
        EXPECT_EQ(sibyl_session_generate(s, &t, 1, &g, nullptr, nullptr, &n), SIBYL_ERR_BUSY);
        EXPECT_EQ(n, 0u);
        EXPECT_EQ(sibyl_session_rewind(s, 0), SIBYL_ERR_BUSY);
        EXPECT_EQ(sibyl_session_reset(s), SIBYL_ERR_BUSY);
        EXPECT_EQ(sibyl_session_sample(s, nullptr, &sampled), SIBYL_ERR_BUSY);
        EXPECT_EQ(sibyl_session_logits(s, &l, &rows, &vocab), SIBYL_ERR_BUSY);
        EXPECT_EQ(sibyl_session_position(s, &pos), SIBYL_ERR_BUSY);
        EXPECT_EQ(sibyl_session_set_seed(s, 1), SIBYL_ERR_BUSY);
        EXPECT_EQ(sibyl_session_fork(s, &fork), SIBYL_ERR_BUSY);
        EXPECT_EQ(fork, nullptr);
        EXPECT_EQ(sibyl_session_submit_generate(s, &t, 1, &g, nullptr, &r2), SIBYL_ERR_BUSY);
        EXPECT_EQ(r2, nullptr);
    };
    expect_busy("before any step");
    Drained d;
    sibyl_step_report rep;
    rep.struct_size = sizeof rep;
    ASSERT_EQ(sibyl_model_step(model_, 0, &rep), SIBYL_OK);
    drain(r, d);
    ASSERT_FALSE(d.done);
    expect_busy("after the first step");
    d = step_until_done(model_, r, d);
    EXPECT_EQ(d.stop, SIBYL_STOP_MAX_TOKENS);
    EXPECT_EQ(d.tokens.size(), 5u);
    EXPECT_EQ(position_of(s), prompt.size() + 5) << "free again after DONE";
    const int32_t t = 5;
    EXPECT_EQ(sibyl_session_append(s, &t, 1, SIBYL_LOGITS_LAST), SIBYL_OK);
    sibyl_request_destroy(r);
    sibyl_session_destroy(s);
}

// 7. Struct versions and the ABI version.
TEST_F(CapiRequests, ModelInfoAcceptsTheVersion01Size) {
    load({.kv_page_tokens = 32});
    constexpr size_t kV01 = offsetof(sibyl_model_info, kv_cache_bytes);
    static_assert(kV01 < sizeof(sibyl_model_info), "0.3 added fields");
    alignas(sibyl_model_info) unsigned char buf[sizeof(sibyl_model_info) + 32];
    std::memset(buf, 0xAB, sizeof buf);
    auto* info = reinterpret_cast<sibyl_model_info*>(buf);
    info->struct_size = static_cast<uint32_t>(kV01);
    ASSERT_EQ(sibyl_model_get_info(model_, info), SIBYL_OK) << sibyl_last_error_message();
    EXPECT_EQ(info->struct_size, kV01) << "struct_size is left as the caller set it";
    EXPECT_EQ(info->vocab_size, 1024);
    EXPECT_EQ(info->n_layers, 3);
    EXPECT_EQ(info->max_position_embeddings, 4096);
    EXPECT_EQ(info->kv_bytes_per_token, 960u) << "(kv_lora_rank 64 + rope 16) x 3 layers x 4 bytes";
    for (size_t i = kV01; i < sizeof buf; ++i)
        ASSERT_EQ(buf[i], 0xAB) << "byte " << i << " past the 0.1 struct was written";

    // The full struct: the new fields.
    sibyl_model_info full;
    std::memset(&full, 0, sizeof full);
    full.struct_size = sizeof full;
    ASSERT_EQ(sibyl_model_get_info(model_, &full), SIBYL_OK);
    EXPECT_EQ(full.kv_page_tokens, 32u);
    EXPECT_EQ(full.worker_threads, 1);
    EXPECT_GT(full.kv_cache_bytes, 0u);
    EXPECT_EQ(full.kv_cache_bytes % (full.kv_bytes_per_token * 32), 0u) << "whole pages";
    EXPECT_LE(full.kv_cache_bytes, (uint64_t{1} << 30)) << "default 1 GiB";

    for (uint32_t small : {0u, 4u, static_cast<uint32_t>(kV01 - 1)}) {
        std::memset(buf, 0xAB, sizeof buf);
        info->struct_size = small;
        EXPECT_EQ(sibyl_model_get_info(model_, info), SIBYL_ERR_STRUCT_SIZE) << small;
        for (size_t i = sizeof(uint32_t); i < sizeof buf; ++i) ASSERT_EQ(buf[i], 0xAB) << "written on failure";
    }
}

TEST(CapiVersion, AbiIsZeroPointEight) {
    EXPECT_EQ(sibyl_abi_version(), static_cast<uint32_t>(SIBYL_ABI_VERSION));
    EXPECT_EQ(sibyl_abi_version() / 10000, 0u);
    EXPECT_EQ(sibyl_abi_version() / 100 % 100, 8u);
    EXPECT_EQ(SIBYL_ABI_VERSION_MINOR, 8);
    EXPECT_STREQ(sibyl_version_string(), "0.8.0");
    EXPECT_STREQ(sibyl_status_string(SIBYL_ERR_BUSY), "the session is busy with another call or request");
}

// 8. Argument rules: max_context above the model's limit, an infinite temperature.
TEST_F(CapiRequests, MaxContextAboveTheModelIsInvalid) {
    load();
    sibyl_session_options o;
    sibyl_session_options_init(&o);
    o.max_context = 4097;
    sibyl_session* s = nullptr;
    EXPECT_EQ(sibyl_session_create(model_, &o, &s), SIBYL_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(s, nullptr);
    EXPECT_NE(std::string(sibyl_last_error_message()).find("4097"), std::string::npos) << sibyl_last_error_message();
    o.max_context = 4096;
    ASSERT_EQ(sibyl_session_create(model_, &o, &s), SIBYL_OK);
    sibyl_session_destroy(s);
}

TEST_F(CapiRequests, InfiniteTemperatureIsInvalid) {
    load();
    sibyl_session* s = new_session(model_);
    const std::vector<int32_t> prompt = make_prompt(11, 4);
    ASSERT_EQ(sibyl_session_append(s, prompt.data(), prompt.size(), SIBYL_LOGITS_LAST), SIBYL_OK);
    sibyl_sampler_options so;
    sibyl_sampler_options_init(&so);
    so.temperature = std::numeric_limits<float>::infinity();
    int32_t t = -1;
    EXPECT_EQ(sibyl_session_sample(s, &so, &t), SIBYL_ERR_INVALID_ARGUMENT)
        << "sample with temperature +INF returned token " << t;
    sibyl_generate_options g = gen_options(2, false);
    g.sampler = &so;
    size_t n = 0;
    EXPECT_EQ(sibyl_session_generate(s, prompt.data(), 1, &g, nullptr, nullptr, &n), SIBYL_ERR_INVALID_ARGUMENT);
    sibyl_request* r = nullptr;
    const sibyl_status st = sibyl_session_submit_generate(s, prompt.data(), 1, &g, nullptr, &r);
    EXPECT_EQ(st, SIBYL_ERR_INVALID_ARGUMENT);
    if (r) {
        wait_done(r);
        sibyl_request_destroy(r);
    }
    // NaN is rejected already; -INF (<= 0) means greedy and stays valid.
    so.temperature = std::numeric_limits<float>::quiet_NaN();
    EXPECT_EQ(sibyl_session_sample(s, &so, &t), SIBYL_ERR_INVALID_ARGUMENT);
    sibyl_session_destroy(s);
}

// 10. Fork: both continue like a fresh session with the prompt; writes after a rewind of the
// fork (into pages it shares with the original) do not change the original (copy-on-write).
TEST_F(CapiRequests, ForkContinuesLikeAFreshSessionAndIsCopyOnWrite) {
    load({.kv_page_tokens = 16});
    const std::vector<int32_t> prompt = make_prompt(12, 41);  // 2 full pages and part of a third
    constexpr uint32_t kMax = 10;
    std::vector<float> fresh_logits;
    const std::vector<int32_t> fresh = greedy_alone(model_, prompt, kMax, &fresh_logits);

    sibyl_session* original = new_session(model_);
    ASSERT_EQ(sibyl_session_append(original, prompt.data(), prompt.size(), SIBYL_LOGITS_LAST), SIBYL_OK);
    const std::vector<float> prompt_logits = last_logits(original);
    sibyl_session* fork = nullptr;
    ASSERT_EQ(sibyl_session_fork(original, &fork), SIBYL_OK) << sibyl_last_error_message();
    ASSERT_NE(fork, nullptr);
    EXPECT_EQ(position_of(fork), prompt.size());
    EXPECT_TRUE(bitwise_equal(last_logits(fork), prompt_logits)) << "the fork has the original's logits";

    const sibyl_generate_options g = gen_options(kMax, false);
    std::vector<int32_t> from_fork, from_original;
    ASSERT_EQ(sibyl_session_generate(fork, nullptr, 0, &g, collect_token, &from_fork, nullptr), SIBYL_OK)
        << sibyl_last_error_message();
    EXPECT_EQ(from_fork, fresh);
    EXPECT_TRUE(bitwise_equal(last_logits(fork), fresh_logits));

    // Rewind the fork into the shared pages and write different tokens there.
    ASSERT_EQ(sibyl_session_rewind(fork, 7), SIBYL_OK);
    const std::vector<int32_t> other = make_prompt(13, 40);
    ASSERT_EQ(sibyl_session_append(fork, other.data() + 1, other.size() - 1, SIBYL_LOGITS_LAST), SIBYL_OK);
    EXPECT_EQ(position_of(fork), 7 + other.size() - 1);

    // The original is untouched: its logits, and its continuation equals a fresh session's.
    EXPECT_EQ(position_of(original), prompt.size());
    EXPECT_TRUE(bitwise_equal(last_logits(original), prompt_logits));
    ASSERT_EQ(sibyl_session_generate(original, nullptr, 0, &g, collect_token, &from_original, nullptr), SIBYL_OK);
    EXPECT_EQ(from_original, fresh) << "the fork's writes reached the original's pages";
    EXPECT_TRUE(bitwise_equal(last_logits(original), fresh_logits));

    // And the fork computes what a fresh session with its own history computes.
    std::vector<int32_t> fork_history(prompt.begin(), prompt.begin() + 7);
    fork_history.insert(fork_history.end(), other.begin() + 1, other.end());
    std::vector<float> expected_fork_logits;
    const std::vector<int32_t> expected_fork = greedy_alone(model_, fork_history, 6, &expected_fork_logits);
    std::vector<int32_t> fork_more;
    const sibyl_generate_options g6 = gen_options(6, false);
    ASSERT_EQ(sibyl_session_generate(fork, nullptr, 0, &g6, collect_token, &fork_more, nullptr), SIBYL_OK);
    EXPECT_EQ(fork_more, expected_fork);
    EXPECT_TRUE(bitwise_equal(last_logits(fork), expected_fork_logits));

    // A fork outlives its original.
    sibyl_session_destroy(original);
    EXPECT_EQ(position_of(fork), fork_history.size() + 6);
    sibyl_session_destroy(fork);
}

// A destroyed request handle must not be called back afterwards, and a destroy during a
// callback must not return while the callback (and its user_data) is still in use.
TEST_F(CapiRequests, RequestDestroyDoesNotReturnDuringItsCallback) {
    load();
    struct Cb {
        std::atomic<int> entered{0};
        std::atomic<bool> destroyed{false};
        std::atomic<int> calls_after_destroy{0};
        std::atomic<int> running_when_destroy_returned{0};
        std::atomic<bool> in_callback{false};
    } cb;
    sibyl_request_options ro;
    sibyl_request_options_init(&ro);
    ro.user_data = &cb;
    ro.on_event = [](const sibyl_event*, void* ud) {
        auto* c = static_cast<Cb*>(ud);
        if (c->destroyed.load()) ++c->calls_after_destroy;
        c->in_callback.store(true);
        ++c->entered;
        std::this_thread::sleep_for(std::chrono::milliseconds(30));
        c->in_callback.store(false);
    };
    sibyl_session* s = new_session(model_);
    const std::vector<int32_t> prompt = make_prompt(14, 4);
    const sibyl_generate_options g = gen_options(50, false);
    sibyl_request* r = nullptr;
    ASSERT_EQ(sibyl_session_submit_generate(s, prompt.data(), prompt.size(), &g, &ro, &r), SIBYL_OK);
    const auto t0 = std::chrono::steady_clock::now();
    while (!cb.in_callback.load() && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(60))
        std::this_thread::yield();
    sibyl_request_destroy(r);
    if (cb.in_callback.load()) ++cb.running_when_destroy_returned;
    cb.destroyed.store(true);
    sibyl_session_destroy(s);  // waits for nothing; give the worker time to misbehave
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    EXPECT_GE(cb.entered.load(), 1);
    EXPECT_EQ(cb.running_when_destroy_returned.load(), 0)
        << "sibyl_request_destroy returned while on_event was still running on the worker";
    EXPECT_EQ(cb.calls_after_destroy.load(), 0) << "on_event was called after sibyl_request_destroy returned";
}

// What on_event may do (sibyl.h): submit on other sessions and use them, but its own session,
// a blocking generate and sibyl_model_step of the same model are BUSY; destroying its own
// request from inside the callback neither deadlocks nor calls it again.
TEST_F(CapiRequests, OnEventCallbackRules) {
    load({.worker_threads = 0});
    struct Ctx {
        sibyl_model* model = nullptr;
        sibyl_session* own = nullptr;
        sibyl_session* other = nullptr;
        sibyl_request* self = nullptr;
        sibyl_request* submitted = nullptr;
        int calls = 0, calls_after_self_destroy = 0;
        bool destroyed = false;
        std::vector<std::pair<std::string, sibyl_status>> statuses;
    } c;
    c.model = model_;
    c.own = new_session(model_);
    c.other = new_session(model_);
    sibyl_request_options ro;
    sibyl_request_options_init(&ro);
    ro.user_data = &c;
    ro.on_event = [](const sibyl_event* e, void* ud) {
        auto* c = static_cast<Ctx*>(ud);
        if (c->destroyed) ++c->calls_after_self_destroy;
        ++c->calls;
        const int32_t t = 7;
        if (c->calls == 1) {
            size_t pos = 0;
            const sibyl_generate_options g = gen_options(2, false);
            c->statuses = {
                {"own position", sibyl_session_position(c->own, &pos)},
                {"model step", sibyl_model_step(c->model, 0, nullptr)},
                {"blocking generate on another session",
                 sibyl_session_generate(c->other, &t, 1, &g, nullptr, nullptr, nullptr)},
                {"submit on another session", sibyl_session_submit_generate(c->other, &t, 1, &g, nullptr, &c->submitted)},
            };
        }
        if (e->type == SIBYL_EVENT_DONE) {
            sibyl_request_destroy(c->self);  // from inside its own callback
            c->destroyed = true;
        }
    };
    const std::vector<int32_t> prompt = make_prompt(16, 5);
    const sibyl_generate_options g = gen_options(3, false);
    ASSERT_EQ(sibyl_session_submit_generate(c.own, prompt.data(), prompt.size(), &g, &ro, &c.self), SIBYL_OK);
    for (int i = 0; i < 100 && !c.destroyed; ++i) ASSERT_EQ(sibyl_model_step(model_, 0, nullptr), SIBYL_OK);
    EXPECT_TRUE(c.destroyed);
    EXPECT_EQ(c.calls, 4) << "3 tokens and DONE";
    EXPECT_EQ(c.calls_after_self_destroy, 0);
    ASSERT_EQ(c.statuses.size(), 4u);
    EXPECT_EQ(c.statuses[0].second, SIBYL_ERR_BUSY) << c.statuses[0].first;
    EXPECT_EQ(c.statuses[1].second, SIBYL_ERR_BUSY) << c.statuses[1].first;
    EXPECT_EQ(c.statuses[2].second, SIBYL_ERR_BUSY) << c.statuses[2].first;
    EXPECT_EQ(c.statuses[3].second, SIBYL_OK) << c.statuses[3].first << ": " << sibyl_last_error_message();
    if (c.submitted) {
        const Drained d = step_until_done(model_, c.submitted);
        EXPECT_EQ(d.stop, SIBYL_STOP_MAX_TOKENS);
        EXPECT_EQ(d.tokens, greedy_alone(model_, {7}, 2));
        sibyl_request_destroy(c.submitted);
    }
    sibyl_session_destroy(c.own);
    sibyl_session_destroy(c.other);
}

// ================================================================== tiny-reasoner

class CapiReasonerRequests : public ::testing::Test {
protected:
    void TearDown() override { sibyl_model_destroy(model_); }
    void load(const LoadOptions& lo = {}) {
        model_ = load_model(reasoner_dir(), lo);
        ASSERT_NE(model_, nullptr);
    }
    sibyl_model* model_ = nullptr;
};

const nlohmann::json& eval_results() {
    static const nlohmann::json j =
        nlohmann::json::parse(sibyl_test::read_file(reasoner_dir() + "/eval.public.json"))["results"];
    return j;
}

sibyl_chat_message user(const char* text) { return {"user", text, std::strlen(text)}; }

// 1b. Generation that ends at end-of-sequence: a submitted generate of an eval prompt gives the
// reference reply ids (ending with EOS), like the blocking generate.
TEST_F(CapiReasonerRequests, SubmitGenerateEndsAtEosLikeTheEvalReference) {
    load();
    for (size_t k = 0; k < 3; ++k) {
        const nlohmann::json& ref = eval_results().at(k);
        const std::vector<int32_t> prompt = ref["prompt_ids"].get<std::vector<int32_t>>();
        const std::vector<int32_t> output = ref["output_ids"].get<std::vector<int32_t>>();
        ASSERT_EQ(output.back(), 1) << "the reference ends with EOS";
        const std::vector<int32_t> blocking = blocking_fresh(model_, prompt, 400, true);
        EXPECT_EQ(blocking, output) << ref["question"];
        sibyl_session* s = new_session(model_);
        const sibyl_generate_options g = gen_options(400, true);
        sibyl_request* r = nullptr;
        ASSERT_EQ(sibyl_session_submit_generate(s, prompt.data(), prompt.size(), &g, nullptr, &r), SIBYL_OK);
        const Drained d = wait_done(r);
        EXPECT_EQ(d.tokens, output) << ref["question"];
        EXPECT_EQ(d.stop, SIBYL_STOP_EOS);
        EXPECT_EQ(d.status, SIBYL_OK);
        const sibyl_chat_result res = chat_result_of(r);
        EXPECT_EQ(res.stop_reason, SIBYL_STOP_EOS);
        EXPECT_EQ(res.generated_tokens, output.size());
        EXPECT_EQ(res.prompt_tokens + res.reused_tokens, prompt.size());
        EXPECT_EQ(position_of(s), prompt.size() + output.size());
        sibyl_request_destroy(r);
        sibyl_session_destroy(s);
    }
}

// A submitted chat streams the same text as the blocking chat, with matching counts.
TEST_F(CapiReasonerRequests, SubmitChatEqualsBlockingChat) {
    load();
    const sibyl_chat_message m = user("What is 347 + 589?");
    std::string blocking_text[2];
    sibyl_chat_result blocking;
    blocking.struct_size = sizeof blocking;
    sibyl_session* s1 = new_session(model_);
    ASSERT_EQ(sibyl_session_chat(
                  s1, &m, 1, nullptr,
                  [](sibyl_channel c, const char* p, size_t n, void* ud) {
                      static_cast<std::string*>(ud)[c == SIBYL_CHANNEL_REASONING ? 0 : 1].append(p, n);
                      return 0;
                  },
                  blocking_text, &blocking),
              SIBYL_OK);
    EXPECT_EQ(blocking_text[1], "347 + 589 = 936.");
    EXPECT_EQ(blocking.generated_tokens, blocking.reasoning_tokens + blocking.answer_tokens);

    sibyl_session* s2 = new_session(model_);
    sibyl_request* r = nullptr;
    ASSERT_EQ(sibyl_session_submit_chat(s2, &m, 1, nullptr, nullptr, &r), SIBYL_OK);
    const Drained d = wait_done(r);
    EXPECT_EQ(d.status, SIBYL_OK);
    EXPECT_EQ(d.stop, SIBYL_STOP_EOS);
    EXPECT_EQ(d.text[0], blocking_text[0]);
    EXPECT_EQ(d.text[1], blocking_text[1]);
    const sibyl_chat_result res = chat_result_of(r);
    EXPECT_EQ(res.reasoning_tokens, blocking.reasoning_tokens);
    EXPECT_EQ(res.answer_tokens, blocking.answer_tokens);
    EXPECT_EQ(res.prompt_tokens, blocking.prompt_tokens);
    EXPECT_EQ(d.tokens.size(), res.reasoning_tokens + res.answer_tokens);
    EXPECT_EQ(position_of(s2), position_of(s1));
    sibyl_request_destroy(r);
    sibyl_session_destroy(s1);
    sibyl_session_destroy(s2);
}

// 4b. Cancel in the middle of a long prompt: it stops between chunks; the session keeps the
// chunks that ran (a multiple of the chunk size, less than the prompt).
TEST_F(CapiReasonerRequests, CancelInTheMiddleOfALongPrompt) {
    constexpr uint32_t kChunk = 16;
    load({.worker_threads = 0, .step_tokens = kChunk});
    const std::vector<int32_t> prompt = make_prompt(20, 1000, 1280);
    sibyl_session* s = new_session(model_);
    const sibyl_generate_options g = gen_options(8, false);
    sibyl_request* r = nullptr;
    ASSERT_EQ(sibyl_session_submit_generate(s, prompt.data(), prompt.size(), &g, nullptr, &r), SIBYL_OK);
    Drained d;
    for (int i = 0; i < 3; ++i) {
        sibyl_step_report rep;
        rep.struct_size = sizeof rep;
        ASSERT_EQ(sibyl_model_step(model_, 0, &rep), SIBYL_OK);
        EXPECT_EQ(rep.rows, kChunk) << "step " << i;
        EXPECT_EQ(rep.sequences, 1u);
        EXPECT_EQ(rep.pending, 1u);
    }
    drain(r, d);
    ASSERT_FALSE(d.done);
    ASSERT_EQ(sibyl_request_cancel(r), SIBYL_OK);
    sibyl_step_report rep;
    rep.struct_size = sizeof rep;
    ASSERT_EQ(sibyl_model_step(model_, 0, &rep), SIBYL_OK);
    EXPECT_EQ(rep.rows, 0u) << "a chunk ran after the cancel";
    EXPECT_EQ(rep.pending, 0u);
    drain(r, d);
    ASSERT_TRUE(d.done);
    EXPECT_EQ(d.stop, SIBYL_STOP_CANCELLED);
    EXPECT_EQ(d.status, SIBYL_OK);
    EXPECT_TRUE(d.tokens.empty());
    const size_t pos = position_of(s);
    EXPECT_EQ(pos % kChunk, 0u) << pos;
    EXPECT_LT(pos, prompt.size());
    EXPECT_EQ(pos, 3 * kChunk);
    EXPECT_EQ(chat_result_of(r).prompt_tokens, pos);
    sibyl_request_destroy(r);

    // The kept chunks are good: continuing the prompt from there gives the lone result.
    sibyl_request* r2 = nullptr;
    const sibyl_generate_options g4 = gen_options(4, false);
    ASSERT_EQ(sibyl_session_submit_generate(s, prompt.data() + pos, prompt.size() - pos, &g4, nullptr, &r2), SIBYL_OK);
    const Drained d2 = step_until_done(model_, r2);
    EXPECT_EQ(d2.tokens, greedy_alone(model_, prompt, 4));
    sibyl_request_destroy(r2);
    sibyl_session_destroy(s);
}

// 4c'. A chat after an idle cancel completes normally.
TEST_F(CapiReasonerRequests, ChatAfterAnIdleCancelCompletes) {
    load();
    sibyl_session* s = new_session(model_);
    ASSERT_EQ(sibyl_session_cancel(s), SIBYL_OK);
    const sibyl_chat_message m = user("What is 12 + 30?");
    sibyl_chat_result res;
    res.struct_size = sizeof res;
    ASSERT_EQ(sibyl_session_chat(s, &m, 1, nullptr, nullptr, nullptr, &res), SIBYL_OK);
    EXPECT_EQ(res.stop_reason, SIBYL_STOP_EOS);
    EXPECT_GT(res.answer_tokens, 0u);
    sibyl_session_destroy(s);
}

// 5a'' (chat). After a BUSY inner chat in on_text, sibyl_session_cancel still stops the chat.
TEST_F(CapiReasonerRequests, CancelStillStopsTheRunningChatAfterABusyInnerCall) {
    load();
    for (int variant = 0; variant < 2; ++variant) {
        SCOPED_TRACE(variant == 0 ? "cancel only" : "a busy inner chat, then cancel");
        struct C {
            sibyl_session* s;
            int variant;
            int pieces = 0;
            sibyl_status inner = SIBYL_OK;
        } c{new_session(model_), variant};
        const sibyl_chat_message m = user("What is 6238 + 76?");
        sibyl_chat_result res;
        res.struct_size = sizeof res;
        const sibyl_status st = sibyl_session_chat(
            c.s, &m, 1, nullptr,
            [](sibyl_channel, const char*, size_t, void* ud) {
                auto* c = static_cast<C*>(ud);
                if (++c->pieces == 2) {
                    if (c->variant == 1) {
                        const sibyl_chat_message m2 = user("hi");
                        c->inner = sibyl_session_chat(c->s, &m2, 1, nullptr, nullptr, nullptr, nullptr);
                    }
                    sibyl_session_cancel(c->s);
                }
                return 0;
            },
            &c, &res);
        EXPECT_EQ(st, SIBYL_OK) << sibyl_last_error_message();
        if (variant == 1) {
            EXPECT_EQ(c.inner, SIBYL_ERR_BUSY);
        }
        EXPECT_EQ(res.stop_reason, SIBYL_STOP_CANCELLED) << "sibyl_session_cancel did not stop the chat (it made "
                                                         << res.reasoning_tokens + res.answer_tokens << " tokens)";
        sibyl_session_destroy(c.s);
    }
}

// 6. Chat argument rules, blocking and submitted.
TEST_F(CapiReasonerRequests, ChatNeedsAConversationEndingWithAUserTurn) {
    load();
    sibyl_session* s = new_session(model_);
    const sibyl_chat_message ends_assistant[] = {user("What is 1 + 1?"), {"assistant", "2", 1}};
    const sibyl_chat_message ends_system[] = {{"system", "Be brief.", 9}};
    const sibyl_chat_message ends_tool[] = {user("What is 1 + 1?"), {"tool", "2", 1}};
    struct Case {
        const char* what;
        const sibyl_chat_message* m;
        size_t n;
    };
    const sibyl_chat_message one = user("x");
    for (const Case& c : {Case{"empty", &one, 0}, Case{"empty, NULL", nullptr, 0},
                          Case{"ends with assistant", ends_assistant, 2}, Case{"ends with system", ends_system, 1}}) {
        SCOPED_TRACE(c.what);
        sibyl_chat_result res;
        std::memset(&res, 0x5A, sizeof res);
        res.struct_size = sizeof res;
        EXPECT_EQ(sibyl_session_chat(s, c.m, c.n, nullptr, nullptr, nullptr, &res), SIBYL_ERR_INVALID_ARGUMENT);
        EXPECT_FALSE(std::string(sibyl_last_error_message()).empty());
        EXPECT_EQ(res.reasoning_tokens + res.answer_tokens, 0u) << "nothing ran";
        sibyl_request* r = nullptr;
        EXPECT_EQ(sibyl_session_submit_chat(s, c.m, c.n, nullptr, nullptr, &r), SIBYL_ERR_INVALID_ARGUMENT);
        EXPECT_EQ(r, nullptr);
        EXPECT_EQ(position_of(s), 0u);
    }
    // A tool turn may end it.
    sibyl_chat_options o;
    sibyl_chat_options_init(&o);
    o.max_new_tokens = 4;
    sibyl_chat_result res;
    res.struct_size = sizeof res;
    const sibyl_status st = sibyl_session_chat(s, ends_tool, 2, &o, nullptr, nullptr, &res);
    EXPECT_TRUE(st == SIBYL_OK || st == SIBYL_ERR_UNSUPPORTED) << sibyl_status_string(st) << ": "
                                                                << sibyl_last_error_message();
    sibyl_session_destroy(s);
}

// 6b. A cancelled submitted chat fills the result with what it streamed: the TOKEN events seen
// equal reasoning_tokens + answer_tokens.
TEST_F(CapiReasonerRequests, CancelledChatResultCountsTheStreamedTokens) {
    load({.worker_threads = 0});
    sibyl_session* s = new_session(model_);
    const sibyl_chat_message m = user("What is 6238 + 76?");
    sibyl_request* r = nullptr;
    ASSERT_EQ(sibyl_session_submit_chat(s, &m, 1, nullptr, nullptr, &r), SIBYL_OK);
    Drained d;
    for (int i = 0; i < 1000 && d.tokens.size() < 6 && !d.done; ++i) {
        ASSERT_EQ(sibyl_model_step(model_, 0, nullptr), SIBYL_OK);
        drain(r, d);
    }
    ASSERT_GE(d.tokens.size(), 6u);
    ASSERT_FALSE(d.done);
    ASSERT_EQ(sibyl_request_cancel(r), SIBYL_OK);
    d = step_until_done(model_, r, d);
    EXPECT_EQ(d.stop, SIBYL_STOP_CANCELLED);
    EXPECT_EQ(d.status, SIBYL_OK);
    const sibyl_chat_result res = chat_result_of(r);
    EXPECT_EQ(res.stop_reason, SIBYL_STOP_CANCELLED);
    EXPECT_GT(res.reasoning_tokens + res.answer_tokens, 0u);
    EXPECT_EQ(res.reasoning_tokens + res.answer_tokens, d.tokens.size());
    EXPECT_EQ(res.generated_tokens, d.tokens.size());
    EXPECT_EQ(res.prompt_tokens, 14u) << "the eval prompt";
    // Every streamed token is in the session.
    EXPECT_EQ(position_of(s), res.prompt_tokens + d.tokens.size());
    sibyl_request_destroy(r);
    sibyl_session_destroy(s);
}

// 6c. The blocking chat: cancelled from its callback, and failed (context full), the result still
// counts what was streamed and kept.
TEST_F(CapiReasonerRequests, CancelledAndFailedBlockingChatStillFillTheResult) {
    load();
    const sibyl_chat_message m = user("What is 6238 + 76?");  // 14 prompt tokens
    {
        sibyl_session* s = new_session(model_);
        struct C {
            sibyl_session* s;
            int pieces = 0;
        } c{s};
        sibyl_chat_result res;
        std::memset(&res, 0, sizeof res);
        res.struct_size = sizeof res;
        ASSERT_EQ(sibyl_session_chat(
                      s, &m, 1, nullptr,
                      [](sibyl_channel, const char*, size_t, void* ud) {
                          auto* c = static_cast<C*>(ud);
                          if (++c->pieces == 3) sibyl_session_cancel(c->s);
                          return 0;
                      },
                      &c, &res),
                  SIBYL_OK);
        EXPECT_EQ(res.stop_reason, SIBYL_STOP_CANCELLED);
        EXPECT_GT(res.reasoning_tokens + res.answer_tokens, 0u);
        EXPECT_EQ(res.generated_tokens, res.reasoning_tokens + res.answer_tokens);
        EXPECT_EQ(position_of(s), res.prompt_tokens + res.reasoning_tokens + res.answer_tokens);
        sibyl_session_destroy(s);
    }
    {
        constexpr uint32_t kContext = 40;
        sibyl_session* s = new_session(model_, kContext);
        sibyl_chat_result res;
        std::memset(&res, 0, sizeof res);
        res.struct_size = sizeof res;
        EXPECT_EQ(sibyl_session_chat(s, &m, 1, nullptr, nullptr, nullptr, &res), SIBYL_ERR_CONTEXT_FULL);
        EXPECT_EQ(res.stop_reason, SIBYL_STOP_ERROR);
        EXPECT_EQ(res.prompt_tokens, 14u);
        EXPECT_EQ(res.reasoning_tokens + res.answer_tokens, kContext - 14) << "every token that fit is counted";
        EXPECT_EQ(position_of(s), kContext);
        sibyl_session_destroy(s);
    }
    {
        constexpr uint32_t kContext = 40;
        sibyl_session* s = new_session(model_, kContext);
        sibyl_request* r = nullptr;
        ASSERT_EQ(sibyl_session_submit_chat(s, &m, 1, nullptr, nullptr, &r), SIBYL_OK);
        const Drained d = wait_done(r);
        EXPECT_EQ(d.status, SIBYL_ERR_CONTEXT_FULL);
        EXPECT_EQ(d.stop, SIBYL_STOP_ERROR);
        EXPECT_FALSE(d.message.empty());
        const sibyl_chat_result res = chat_result_of(r);
        EXPECT_EQ(res.reasoning_tokens + res.answer_tokens, d.tokens.size());
        EXPECT_EQ(d.tokens.size(), kContext - 14u);
        sibyl_request_destroy(r);
        sibyl_session_destroy(s);
    }
}

// 7b. sibyl_chat_result at its 0.1 size: accepted, nothing written past it; smaller fails.
TEST_F(CapiReasonerRequests, ChatResultAcceptsTheVersion01Size) {
    load();
    constexpr size_t kV01 = offsetof(sibyl_chat_result, generated_tokens);
    const sibyl_chat_message m = user("What is 12 + 30?");
    alignas(sibyl_chat_result) unsigned char buf[sizeof(sibyl_chat_result) + 32];
    auto* res = reinterpret_cast<sibyl_chat_result*>(buf);

    sibyl_session* s = new_session(model_);
    std::memset(buf, 0xAB, sizeof buf);
    res->struct_size = static_cast<uint32_t>(kV01);
    ASSERT_EQ(sibyl_session_chat(s, &m, 1, nullptr, nullptr, nullptr, res), SIBYL_OK) << sibyl_last_error_message();
    EXPECT_EQ(res->struct_size, kV01);
    EXPECT_EQ(res->stop_reason, SIBYL_STOP_EOS);
    EXPECT_GT(res->answer_tokens, 0u);
    for (size_t i = kV01; i < sizeof buf; ++i) ASSERT_EQ(buf[i], 0xAB) << "chat wrote byte " << i;

    // sibyl_request_result too.
    sibyl_session* s2 = new_session(model_);
    sibyl_request* r = nullptr;
    ASSERT_EQ(sibyl_session_submit_chat(s2, &m, 1, nullptr, nullptr, &r), SIBYL_OK);
    wait_done(r);
    std::memset(buf, 0xAB, sizeof buf);
    res->struct_size = static_cast<uint32_t>(kV01);
    ASSERT_EQ(sibyl_request_result(r, res), SIBYL_OK);
    EXPECT_EQ(res->struct_size, kV01);
    EXPECT_EQ(res->stop_reason, SIBYL_STOP_EOS);
    EXPECT_GT(res->reasoning_tokens + res->answer_tokens, 0u);
    for (size_t i = kV01; i < sizeof buf; ++i) ASSERT_EQ(buf[i], 0xAB) << "request_result wrote byte " << i;

    for (uint32_t small : {0u, static_cast<uint32_t>(kV01 - 1)}) {
        std::memset(buf, 0xAB, sizeof buf);
        res->struct_size = small;
        EXPECT_EQ(sibyl_request_result(r, res), SIBYL_ERR_STRUCT_SIZE) << small;
        for (size_t i = sizeof(uint32_t); i < sizeof buf; ++i) ASSERT_EQ(buf[i], 0xAB) << "written on failure";
        std::memset(buf, 0xAB, sizeof buf);
        res->struct_size = small;
        sibyl_session* s3 = new_session(model_);
        EXPECT_EQ(sibyl_session_chat(s3, &m, 1, nullptr, nullptr, nullptr, res), SIBYL_ERR_STRUCT_SIZE) << small;
        for (size_t i = sizeof(uint32_t); i < sizeof buf; ++i) ASSERT_EQ(buf[i], 0xAB) << "written on failure";
        EXPECT_EQ(position_of(s3), 0u) << "nothing ran";
        sibyl_session_destroy(s3);
    }
    sibyl_request_destroy(r);
    sibyl_session_destroy(s);
    sibyl_session_destroy(s2);
}

// 9. Token bytes: concatenated per-token bytes rebuild the text exactly; per-token detokenize
// does not always (characters split across tokens).
TEST_F(CapiReasonerRequests, TokenBytesRebuildMultiByteText) {
    load();
    const std::string text = "h\xC3\xA9llo w\xC3\xB6rld \xE6\x97\xA5\xE6\x9C\xAC";  // "héllo wörld 日本"
    size_t n = 0;
    ASSERT_EQ(sibyl_model_tokenize(model_, text.data(), text.size(), nullptr, 0, &n), SIBYL_ERR_BUFFER_TOO_SMALL);
    std::vector<int32_t> ids(n);
    ASSERT_EQ(sibyl_model_tokenize(model_, text.data(), text.size(), ids.data(), ids.size(), &n), SIBYL_OK);
    ASSERT_GT(n, 0u);

    std::string joined_bytes, joined_detok;
    int partial_tokens = 0;
    for (int32_t id : ids) {
        size_t len = 0;
        const sibyl_status probe = sibyl_model_token_bytes(model_, id, nullptr, 0, &len);
        EXPECT_EQ(probe, len > 0 ? SIBYL_ERR_BUFFER_TOO_SMALL : SIBYL_OK) << "token " << id;
        std::string bytes(len + 1, '\x7F');
        ASSERT_EQ(sibyl_model_token_bytes(model_, id, bytes.data(), bytes.size(), &len), SIBYL_OK);
        EXPECT_EQ(bytes[len], '\0') << "room for a terminator: written";
        bytes.resize(len);
        joined_bytes += bytes;
        // A token that is not whole UTF-8 characters on its own.
        const auto lead = static_cast<unsigned char>(bytes.empty() ? 0 : bytes[0]);
        if ((lead & 0xC0) == 0x80) ++partial_tokens;
        std::string piece(64, '\0');
        size_t plen = 0;
        ASSERT_EQ(sibyl_model_detokenize(model_, &id, 1, piece.data(), piece.size(), &plen), SIBYL_OK);
        piece.resize(plen);
        joined_detok += piece;
    }
    EXPECT_EQ(joined_bytes, text);
    std::string whole(128, '\0');
    size_t wlen = 0;
    ASSERT_EQ(sibyl_model_detokenize(model_, ids.data(), ids.size(), whole.data(), whole.size(), &wlen), SIBYL_OK);
    whole.resize(wlen);
    EXPECT_EQ(whole, text);
    std::printf("[ info ] %zu tokens, %d start inside a character; joined per-token detokenize %s the text\n", n,
                partial_tokens, joined_detok == text ? "equals" : "differs from");
    if (partial_tokens > 0) {
        EXPECT_NE(joined_detok, text) << "per-token detokenize cannot rebuild split characters";
    }

    // Errors.
    size_t len = 0;
    char small[1];
    EXPECT_EQ(sibyl_model_token_bytes(model_, -1, small, 1, &len), SIBYL_ERR_INVALID_TOKEN);
    EXPECT_EQ(sibyl_model_token_bytes(model_, 1344, small, 1, &len), SIBYL_ERR_INVALID_TOKEN);
    EXPECT_EQ(sibyl_model_token_bytes(model_, 0, small, 1, nullptr), SIBYL_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(sibyl_model_token_bytes(nullptr, 0, small, 1, &len), SIBYL_ERR_INVALID_ARGUMENT);
}

// ================================================================== the KV cache pool

class CapiKvPool : public ::testing::Test {
protected:
    static constexpr uint32_t kPageTokens = 16;
    static constexpr uint64_t kPages = 3;
    void SetUp() override {
        model_ = load_model(tiny_v3_dir(), {.worker_threads = 0, .kv_cache_bytes = 960 * kPageTokens * kPages,
                                            .kv_page_tokens = kPageTokens});
        ASSERT_NE(model_, nullptr);
        sibyl_model_info info;
        info.struct_size = sizeof info;
        ASSERT_EQ(sibyl_model_get_info(model_, &info), SIBYL_OK);
        ASSERT_EQ(info.kv_bytes_per_token, 960u);
        ASSERT_EQ(info.kv_page_tokens, kPageTokens);
        ASSERT_EQ(info.kv_cache_bytes, info.kv_bytes_per_token * kPageTokens * kPages);
    }
    void TearDown() override { sibyl_model_destroy(model_); }

    // A request that needs every page of the pool: 48 tokens (47 prompt + 1 generated).
    void expect_whole_pool_usable(const char* when) {
        SCOPED_TRACE(when);
        sibyl_session* s = new_session(model_);
        const std::vector<int32_t> p = make_prompt(99, kPageTokens * kPages - 1);
        const sibyl_generate_options g = gen_options(1, false);
        sibyl_request* r = nullptr;
        ASSERT_EQ(sibyl_session_submit_generate(s, p.data(), p.size(), &g, nullptr, &r), SIBYL_OK);
        const Drained d = step_until_done(model_, r);
        EXPECT_EQ(d.status, SIBYL_OK) << "the pool's pages did not all come back: " << d.message;
        EXPECT_EQ(d.tokens.size(), 1u);
        sibyl_request_destroy(r);
        sibyl_session_destroy(s);
    }
    sibyl_model* model_ = nullptr;
};

// 11a. A prompt that can never fit fails with OUT_OF_MEMORY naming the sizes.
TEST_F(CapiKvPool, RequestThatCanNeverFitFailsNamingSizes) {
    expect_whole_pool_usable("at the start");
    sibyl_session* s = new_session(model_);
    const std::vector<int32_t> p = make_prompt(30, 100);  // 7 pages of 16; the pool has 3
    const sibyl_generate_options g = gen_options(4, false);
    sibyl_request* r = nullptr;
    ASSERT_EQ(sibyl_session_submit_generate(s, p.data(), p.size(), &g, nullptr, &r), SIBYL_OK);
    const Drained d = step_until_done(model_, r);
    EXPECT_EQ(d.status, SIBYL_ERR_OUT_OF_MEMORY);
    EXPECT_EQ(d.stop, SIBYL_STOP_ERROR);
    EXPECT_TRUE(d.tokens.empty());
    std::printf("[ info ] never fits: %s\n", d.message.c_str());
    EXPECT_NE(d.message.find("7 pages"), std::string::npos) << d.message;
    EXPECT_NE(d.message.find("3 pages"), std::string::npos) << d.message;
    EXPECT_NE(d.message.find("16 tokens"), std::string::npos) << d.message;
    sibyl_request_destroy(r);
    // Blocking: the same status. The session is usable afterwards.
    size_t n = 0;
    EXPECT_EQ(sibyl_session_generate(s, p.data(), p.size(), &g, nullptr, nullptr, &n), SIBYL_ERR_OUT_OF_MEMORY);
    EXPECT_EQ(n, 0u);
    EXPECT_NE(std::string(sibyl_last_error_message()).find("pages"), std::string::npos) << sibyl_last_error_message();
    EXPECT_LE(position_of(s), 48u);
    sibyl_session_destroy(s);
    expect_whole_pool_usable("after the failures");
}

// 11b. Two sessions that each fit alone but not together: the second waits while the first
// runs, and completes once the first session gives its pages back (destroy, or rewind).
TEST_F(CapiKvPool, SecondSessionWaitsForPagesAndCompletesAfterTheFirstFreesThem) {
    for (int variant = 0; variant < 2; ++variant) {
        SCOPED_TRACE(variant == 0 ? "first session destroyed" : "first session rewound to 0");
        const std::vector<int32_t> pa = make_prompt(40 + variant, 20), pb = make_prompt(50 + variant, 20);
        constexpr uint32_t kMax = 8;  // 28 tokens: 2 pages each; 4 > 3 together
        const std::vector<int32_t> expected_b = greedy_alone(model_, pb, kMax);
        sibyl_session* a = new_session(model_);
        sibyl_session* b = new_session(model_);
        const sibyl_generate_options g = gen_options(kMax, false);
        sibyl_request *ra = nullptr, *rb = nullptr;
        ASSERT_EQ(sibyl_session_submit_generate(a, pa.data(), pa.size(), &g, nullptr, &ra), SIBYL_OK);
        sibyl_step_report rep;
        rep.struct_size = sizeof rep;
        ASSERT_EQ(sibyl_model_step(model_, 0, &rep), SIBYL_OK);  // A's prompt takes 2 of the 3 pages
        EXPECT_EQ(rep.rows, pa.size());
        ASSERT_EQ(sibyl_session_submit_generate(b, pb.data(), pb.size(), &g, nullptr, &rb), SIBYL_OK);
        Drained da = step_until_done(model_, ra), db;
        EXPECT_EQ(da.status, SIBYL_OK) << da.message;
        EXPECT_EQ(da.tokens.size(), kMax);
        drain(rb, db);
        EXPECT_FALSE(db.done) << "B ended while A ran: " << db.message;
        EXPECT_TRUE(db.tokens.empty()) << "B ran while A held the pages";
        if (variant == 0) {
            sibyl_session_destroy(a);
            a = nullptr;
        } else {
            ASSERT_EQ(sibyl_session_rewind(a, 0), SIBYL_OK);
        }
        db = step_until_done(model_, rb, db);
        EXPECT_EQ(db.status, SIBYL_OK) << db.message;
        EXPECT_EQ(db.tokens, expected_b);
        sibyl_request_destroy(ra);
        sibyl_request_destroy(rb);
        sibyl_session_destroy(a);
        sibyl_session_destroy(b);
        expect_whole_pool_usable("after both sessions are gone");
    }
}

// 11c. What happens when nothing can free pages: A is idle but keeps its pages, B cannot fit.
// Observed design (scheduler.cpp): when no work at all can run, the newest starved request
// fails with OUT_OF_MEMORY instead of waiting forever.
TEST_F(CapiKvPool, StarvedRequestFailsWhenNothingCanFreePages) {
    const std::vector<int32_t> pa = make_prompt(60, 20), pb = make_prompt(61, 20);
    const std::vector<int32_t> expected_b = greedy_alone(model_, pb, 8);
    sibyl_session* a = new_session(model_);
    sibyl_session* b = new_session(model_);
    const sibyl_generate_options g = gen_options(8, false);
    size_t n = 0;
    ASSERT_EQ(sibyl_session_generate(a, pa.data(), pa.size(), &g, nullptr, nullptr, &n), SIBYL_OK);
    ASSERT_EQ(position_of(a), 28u);  // A keeps 2 of 3 pages
    sibyl_request* rb = nullptr;
    ASSERT_EQ(sibyl_session_submit_generate(b, pb.data(), pb.size(), &g, nullptr, &rb), SIBYL_OK);
    const Drained db = step_until_done(model_, rb, {}, 100);
    EXPECT_EQ(db.status, SIBYL_ERR_OUT_OF_MEMORY);
    EXPECT_EQ(db.stop, SIBYL_STOP_ERROR);
    std::printf("[ info ] nothing can free pages: %s\n", db.message.c_str());
    EXPECT_NE(db.message.find("pages"), std::string::npos) << db.message;
    EXPECT_NE(db.message.find("in use"), std::string::npos) << db.message;
    sibyl_request_destroy(rb);
    // The blocking call says the same; once A is destroyed, B runs.
    EXPECT_EQ(sibyl_session_generate(b, pb.data(), pb.size(), &g, nullptr, nullptr, &n), SIBYL_ERR_OUT_OF_MEMORY);
    sibyl_session_destroy(a);
    std::vector<int32_t> got;
    EXPECT_EQ(sibyl_session_generate(b, pb.data() + position_of(b), pb.size() - position_of(b), &g, collect_token,
                                     &got, &n),
              SIBYL_OK)
        << sibyl_last_error_message();
    EXPECT_EQ(got, expected_b);
    sibyl_session_destroy(b);
    expect_whole_pool_usable("at the end");
}

}  // namespace

namespace {

// Shutdown in any order: requests and sessions may outlive their model, and a callback may
// destroy the model (the library then finishes it on another thread).
TEST(CapiShutdown, RequestsAndSessionsOutliveTheirModel) {
    sibyl_model* m = load_model(tiny_v3_dir());
    ASSERT_NE(m, nullptr);
    sibyl_session* s = new_session(m);
    const std::vector<int32_t> prompt = make_prompt(3, 6);
    const sibyl_generate_options g = gen_options(4, false);
    sibyl_request* done = nullptr;
    ASSERT_EQ(sibyl_session_submit_generate(s, prompt.data(), prompt.size(), &g, nullptr, &done), SIBYL_OK);
    EXPECT_EQ(wait_done(done).tokens.size(), 4u);
    sibyl_model_destroy(m);
    EXPECT_EQ(sibyl_request_cancel(done), SIBYL_OK);  // wakes nobody: the scheduler is gone
    EXPECT_EQ(sibyl_session_cancel(s), SIBYL_OK);
    sibyl_request_destroy(done);
    size_t pos = 0;
    EXPECT_EQ(sibyl_session_position(s, &pos), SIBYL_ERR_MODEL_DESTROYED);
    sibyl_session_destroy(s);
}

TEST(CapiShutdown, ACallbackMayDestroyTheModel) {
    LoadOptions lo;
    sibyl_model* m = load_model(tiny_v3_dir(), lo);
    ASSERT_NE(m, nullptr);
    sibyl_session* s = new_session(m);
    struct State {
        sibyl_model* model;
        std::atomic<bool> destroyed{false};
    } state{m};
    sibyl_request_options ro;
    sibyl_request_options_init(&ro);
    ro.user_data = &state;
    ro.on_event = [](const sibyl_event* e, void* ud) {
        auto* st = static_cast<State*>(ud);
        if (e->type == SIBYL_EVENT_DONE && !st->destroyed.exchange(true)) sibyl_model_destroy(st->model);
    };
    const std::vector<int32_t> prompt = make_prompt(4, 5);
    const sibyl_generate_options g = gen_options(3, false);
    sibyl_request* r = nullptr;
    ASSERT_EQ(sibyl_session_submit_generate(s, prompt.data(), prompt.size(), &g, &ro, &r), SIBYL_OK);
    for (int i = 0; i < 2000 && !state.destroyed; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    EXPECT_TRUE(state.destroyed);
    sibyl_request_destroy(r);
    const int32_t t = 1;
    EXPECT_EQ(sibyl_session_append(s, &t, 1, SIBYL_LOGITS_LAST), SIBYL_ERR_MODEL_DESTROYED);
    sibyl_session_destroy(s);
    // The model is finished on a thread of its own once the worker's step is over; give it
    // time so that leak checkers see it gone.
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
}

}  // namespace
