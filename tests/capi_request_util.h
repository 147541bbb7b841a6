// Helpers for the tests of the non-blocking C ABI (sibyl_session_submit_*, sibyl_request_*,
// sibyl_model_step): loading with scheduler options, draining a request's events, driving
// steps, and lone-session references computed with append/sample only.
#pragma once
#include <sibyl/sibyl.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace sibyl_capi_test {

struct LoadOptions {
    int32_t worker_threads = -1;  // -1: the library's default (1)
    uint32_t step_tokens = 0;
    uint64_t kv_cache_bytes = 0;
    uint32_t kv_page_tokens = 0;
    int32_t n_threads = 0;
};

// Loads `dir`; null (with a gtest failure) when it cannot.
inline sibyl_model* load_model(const std::string& dir, const LoadOptions& lo = {}) {
    sibyl_model_options o;
    sibyl_model_options_init(&o);
    o.backend = SIBYL_BACKEND_CPU;
    o.worker_threads = lo.worker_threads;
    o.step_tokens = lo.step_tokens;
    o.kv_cache_bytes = lo.kv_cache_bytes;
    o.kv_page_tokens = lo.kv_page_tokens;
    o.n_threads = lo.n_threads;
    sibyl_model* m = nullptr;
    const sibyl_status st = sibyl_model_load(dir.c_str(), &o, &m);
    EXPECT_EQ(st, SIBYL_OK) << dir << ": " << sibyl_last_error_message();
    return st == SIBYL_OK ? m : nullptr;
}

inline sibyl_session* new_session(sibyl_model* m, uint32_t max_context = 0) {
    sibyl_session_options o;
    sibyl_session_options_init(&o);
    o.max_context = max_context;
    sibyl_session* s = nullptr;
    const sibyl_status st = sibyl_session_create(m, &o, &s);
    EXPECT_EQ(st, SIBYL_OK) << sibyl_last_error_message();
    return st == SIBYL_OK ? s : nullptr;
}

inline sibyl_generate_options gen_options(uint32_t max_new_tokens, bool stop_at_eos) {
    sibyl_generate_options g;
    sibyl_generate_options_init(&g);
    g.max_new_tokens = max_new_tokens;
    g.stop_at_eos = stop_at_eos ? 1 : 0;
    return g;
}

inline size_t position_of(sibyl_session* s) {
    size_t p = static_cast<size_t>(-1);
    const sibyl_status st = sibyl_session_position(s, &p);
    EXPECT_EQ(st, SIBYL_OK) << sibyl_last_error_message();
    return p;
}

// The last logits row of a session, copied; empty when there is none.
inline std::vector<float> last_logits(sibyl_session* s) {
    const float* l = nullptr;
    size_t rows = 0, vocab = 0;
    if (sibyl_session_logits(s, &l, &rows, &vocab) != SIBYL_OK || rows == 0) return {};
    return std::vector<float>(l + (rows - 1) * vocab, l + rows * vocab);
}

inline bool bitwise_equal(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

// Everything a request delivered through polling.
struct Drained {
    std::vector<int32_t> tokens;
    std::string text[2];           // per channel
    int text_events = 0;
    bool done = false;
    int events_after_done = 0;     // must stay 0
    sibyl_stop_reason stop = SIBYL_STOP_MAX_ENUM;
    sibyl_status status = SIBYL_STATUS_MAX_ENUM;
    std::string message;
};

// Polls every queued event of `r` into `d`.
inline void drain(sibyl_request* r, Drained& d) {
    for (;;) {
        sibyl_event e;
        std::memset(&e, 0, sizeof e);
        e.struct_size = sizeof e;
        const sibyl_status st = sibyl_request_poll(r, &e);
        EXPECT_EQ(st, SIBYL_OK) << sibyl_last_error_message();
        if (st != SIBYL_OK || e.type == SIBYL_EVENT_NONE) return;
        if (d.done) ++d.events_after_done;
        switch (e.type) {
            case SIBYL_EVENT_TOKEN: d.tokens.push_back(e.token); break;
            case SIBYL_EVENT_TEXT:
                ++d.text_events;
                d.text[e.channel == SIBYL_CHANNEL_REASONING ? 0 : 1].append(e.text, e.text_len);
                break;
            case SIBYL_EVENT_DONE:
                d.done = true;
                d.stop = e.stop_reason;
                d.status = e.status;
                if (e.text) d.message.assign(e.text, e.text_len);
                break;
            default: ADD_FAILURE() << "unknown event type " << static_cast<int>(e.type); return;
        }
    }
}

// Waits (library workers run the steps) until `r` is done, with a generous deadline.
inline Drained wait_done(sibyl_request* r, Drained d = {}, double deadline_s = 300) {
    const auto t0 = std::chrono::steady_clock::now();
    while (!d.done) {
        int ready = 0;
        EXPECT_EQ(sibyl_request_wait(r, 100000, &ready), SIBYL_OK);
        drain(r, d);
        if (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() > deadline_s) {
            ADD_FAILURE() << "request not done after " << deadline_s << " s";
            break;
        }
    }
    drain(r, d);
    return d;
}

// worker_threads = 0: calls sibyl_model_step until `r` is done.
inline Drained step_until_done(sibyl_model* m, sibyl_request* r, Drained d = {}, int max_steps = 1000000) {
    for (int i = 0; i < max_steps && !d.done; ++i) {
        sibyl_step_report rep;
        std::memset(&rep, 0, sizeof rep);
        rep.struct_size = sizeof rep;
        EXPECT_EQ(sibyl_model_step(m, 0, &rep), SIBYL_OK) << sibyl_last_error_message();
        drain(r, d);
    }
    EXPECT_TRUE(d.done) << "request not done after " << max_steps << " steps";
    return d;
}

inline sibyl_chat_result chat_result_of(sibyl_request* r) {
    sibyl_chat_result res;
    std::memset(&res, 0, sizeof res);
    res.struct_size = sizeof res;
    EXPECT_EQ(sibyl_request_result(r, &res), SIBYL_OK) << sibyl_last_error_message();
    return res;
}

// A lone session, driven with append/sample only (no request, no batching): greedy decode of
// `steps` tokens after `prompt`. `logits` receives the last logits row after the last append.
inline std::vector<int32_t> greedy_alone(sibyl_model* m, const std::vector<int32_t>& prompt, int steps,
                                         std::vector<float>* logits = nullptr) {
    std::vector<int32_t> out;
    sibyl_session* s = new_session(m);
    if (!s) return out;
    sibyl_status st = sibyl_session_append(s, prompt.data(), prompt.size(), SIBYL_LOGITS_LAST);
    EXPECT_EQ(st, SIBYL_OK) << sibyl_last_error_message();
    for (int i = 0; i < steps && st == SIBYL_OK; ++i) {
        int32_t t = -1;
        st = sibyl_session_sample(s, nullptr, &t);
        EXPECT_EQ(st, SIBYL_OK) << sibyl_last_error_message();
        if (st != SIBYL_OK) break;
        out.push_back(t);
        st = sibyl_session_append(s, &t, 1, SIBYL_LOGITS_LAST);
        EXPECT_EQ(st, SIBYL_OK) << sibyl_last_error_message();
    }
    if (logits) *logits = last_logits(s);
    sibyl_session_destroy(s);
    return out;
}

inline int collect_token(int32_t token, void* user_data) {
    static_cast<std::vector<int32_t>*>(user_data)->push_back(token);
    return 0;
}

// Blocking sibyl_session_generate on a fresh session.
inline std::vector<int32_t> blocking_fresh(sibyl_model* m, const std::vector<int32_t>& prompt, uint32_t max_new,
                                           bool stop_at_eos, std::vector<float>* logits = nullptr,
                                           size_t* position = nullptr) {
    std::vector<int32_t> out;
    sibyl_session* s = new_session(m);
    if (!s) return out;
    const sibyl_generate_options g = gen_options(max_new, stop_at_eos);
    size_t n = 0;
    EXPECT_EQ(sibyl_session_generate(s, prompt.data(), prompt.size(), &g, collect_token, &out, &n), SIBYL_OK)
        << sibyl_last_error_message();
    EXPECT_EQ(n, out.size());
    if (logits) *logits = last_logits(s);
    if (position) *position = position_of(s);
    sibyl_session_destroy(s);
    return out;
}

// A prompt that starts with BOS and differs per `seed`, of `n` tokens below `vocab`.
inline std::vector<int32_t> make_prompt(int seed, size_t n, int32_t vocab = 1024) {
    std::vector<int32_t> p = {0};
    uint32_t x = 2654435761u * static_cast<uint32_t>(seed + 1);
    while (p.size() < n) {
        x = x * 1664525u + 1013904223u;
        p.push_back(static_cast<int32_t>(2 + (x >> 8) % static_cast<uint32_t>(vocab - 2)));
    }
    return p;
}

}  // namespace sibyl_capi_test
