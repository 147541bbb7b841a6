// Stress of the non-blocking C ABI for the sanitizers: four threads create 1,000 sessions over
// time on one tiny-v3 model (one library worker) and do random submit / cancel / fork / rewind /
// destroy / blocking generate with short generations. Every result that can be predicted is
// checked against a lone session; at the end everything is destroyed, the model still answers
// sibyl_model_get_info, and exactly the pool's number of pages can be held at once (so no page
// leaked: the public API has no page counter). SIBYL_STRESS_SESSIONS scales the run.
#include <sibyl/sibyl.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "capi_request_util.h"
#include "test_files.h"

namespace {

using namespace sibyl_capi_test;
using sibyl_test::tiny_v3_dir;

constexpr int kThreads = 4;
constexpr int kPrompts = 8;
constexpr uint32_t kMaxNew = 4;
constexpr uint32_t kPageTokens = 16;
constexpr uint64_t kPoolPages = 128;
constexpr size_t kMaxSlots = 6;      // live sessions per thread
constexpr size_t kMaxPosition = 40;  // sessions longer than this are rewound

int total_sessions() {
    const char* e = std::getenv("SIBYL_STRESS_SESSIONS");
    const int n = e && *e ? std::atoi(e) : 1000;
    return std::max(n, kThreads);
}

struct Slot {
    sibyl_session* session = nullptr;
    sibyl_request* request = nullptr;  // submitted, not yet seen done
    Drained drained;
    int prompt = -1;       // the prompt the request ran on an empty session (-1: unpredictable)
    bool cancelled = false;
    uint32_t max_new = 0;
};

struct Stats {
    std::atomic<int> created{0}, submits{0}, cancels{0}, forks{0}, rewinds{0}, destroys{0}, destroys_running{0},
        blocking{0}, checked{0}, busy{0}, done_cancelled{0};
};

class Worker {
public:
    Worker(sibyl_model* m, int index, const std::vector<std::vector<int32_t>>& prompts,
           const std::vector<std::vector<int32_t>>& expected, std::atomic<int>& budget, Stats& stats)
        : m_(m), rng_(1234u + static_cast<unsigned>(index)), prompts_(prompts), expected_(expected),
          budget_(budget), stats_(stats) {}

    void run() {
        for (int iter = 0; iter < 1000000; ++iter) {
            const bool may_create = budget_.load() > 0;
            if (slots_.empty() && !may_create) break;
            const int op = pick(10);
            if (slots_.size() < kMaxSlots && may_create && (op == 0 || slots_.empty())) {
                create();
                continue;
            }
            if (slots_.empty()) continue;
            Slot& s = slots_[static_cast<size_t>(pick(static_cast<int>(slots_.size())))];
            poll(s);
            switch (op) {
                case 0:
                case 1: submit(s); break;
                case 2: if (s.request) { stats_.cancels++; EXPECT_EQ(sibyl_request_cancel(s.request), SIBYL_OK); s.cancelled = true; } break;
                case 3: if (s.request) { finish(s, false); } break;
                case 4: fork(s); break;
                case 5: rewind(s); break;
                case 6: blocking(s); break;
                case 7:
                case 8: destroy(s); break;
                case 9: busy_check(s); break;
            }
        }
        while (!slots_.empty()) destroy(slots_.back());
    }

    std::string first_error;
    int errors = 0;

private:
    int pick(int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng_); }

    void error(const std::string& what) {
        if (errors++ == 0) first_error = what;
    }

    bool take_budget() { return budget_.fetch_sub(1) > 0; }

    void create() {
        if (!take_budget()) return;
        sibyl_session* s = nullptr;
        const sibyl_status st = sibyl_session_create(m_, nullptr, &s);
        if (st != SIBYL_OK) return error(std::string("create: ") + sibyl_last_error_message());
        stats_.created++;
        Slot slot;
        slot.session = s;
        slots_.push_back(slot);
    }

    size_t position(Slot& s) {
        size_t p = 0;
        const sibyl_status st = sibyl_session_position(s.session, &p);
        if (st != SIBYL_OK) error(std::string("position: ") + sibyl_status_string(st));
        return p;
    }

    // Checks a finished request against the lone reference.
    void check_done(Slot& s) {
        const Drained& d = s.drained;
        if (d.events_after_done) error("events after DONE");
        if (d.status != SIBYL_OK) return error("request failed: " + std::string(sibyl_status_string(d.status)) + " " + d.message);
        if (d.stop == SIBYL_STOP_CANCELLED) stats_.done_cancelled++;
        else if (d.stop != SIBYL_STOP_MAX_TOKENS) error("unexpected stop reason " + std::to_string(d.stop));
        if (d.stop == SIBYL_STOP_MAX_TOKENS && d.tokens.size() != s.max_new) error("wrong token count");
        if (s.prompt >= 0) {
            const std::vector<int32_t>& e = expected_[static_cast<size_t>(s.prompt)];
            if (d.tokens.size() > s.max_new || !std::equal(d.tokens.begin(), d.tokens.end(), e.begin()))
                error("request tokens differ from a lone session's (prompt " + std::to_string(s.prompt) + ")");
            else
                stats_.checked++;
        }
        sibyl_chat_result r;
        r.struct_size = sizeof r;
        if (sibyl_request_result(s.request, &r) != SIBYL_OK) error("request_result failed");
        else if (r.generated_tokens != d.tokens.size()) error("result count differs from the TOKEN events");
    }

    void poll(Slot& s) {
        if (!s.request) return;
        drain(s.request, s.drained);
        if (s.drained.done) {
            check_done(s);
            sibyl_request_destroy(s.request);
            s.request = nullptr;
        }
    }

    // Waits for the request to end (optionally after cancelling it).
    void finish(Slot& s, bool cancel) {
        if (!s.request) return;
        if (cancel) sibyl_request_cancel(s.request);
        s.drained = wait_done(s.request, s.drained, 120);
        poll(s);
    }

    void submit(Slot& s) {
        if (s.request) return;
        if (position(s) > kMaxPosition) sibyl_session_reset(s.session);
        const size_t pos = position(s);
        const int k = pick(kPrompts);
        s.max_new = 1 + static_cast<uint32_t>(pick(kMaxNew));
        const sibyl_generate_options g = gen_options(s.max_new, false);
        s.drained = Drained{};
        s.prompt = pos == 0 ? k : -1;
        s.cancelled = false;
        const sibyl_status st = sibyl_session_submit_generate(s.session, prompts_[k].data(), prompts_[k].size(), &g,
                                                             nullptr, &s.request);
        if (st != SIBYL_OK) {
            s.request = nullptr;
            return error(std::string("submit: ") + sibyl_status_string(st) + " " + sibyl_last_error_message());
        }
        stats_.submits++;
    }

    void fork(Slot& s) {
        if (s.request || slots_.size() >= kMaxSlots || !take_budget()) return;
        sibyl_session* f = nullptr;
        const sibyl_status st = sibyl_session_fork(s.session, &f);
        if (st != SIBYL_OK) return error(std::string("fork: ") + sibyl_status_string(st));
        stats_.forks++;
        stats_.created++;
        // The fork continues like the original would: check on a predictable one.
        Slot copy;
        copy.session = f;
        const size_t pos = position(s);
        if (pos > 0 && pick(2) == 0) {
            std::vector<int32_t> a, b;
            const sibyl_generate_options g = gen_options(2, false);
            sibyl_status sa = sibyl_session_generate(s.session, nullptr, 0, &g, collect_token, &a, nullptr);
            sibyl_status sb = sibyl_session_generate(f, nullptr, 0, &g, collect_token, &b, nullptr);
            // A session rewound or fresh holds no logits: both then say NO_LOGITS.
            if (sa != sb) error("fork and original disagree on generate status");
            else if (sa == SIBYL_OK && a != b) error("fork continues differently from its original");
            else if (sa != SIBYL_OK && sa != SIBYL_ERR_NO_LOGITS) error(std::string("generate after fork: ") + sibyl_status_string(sa));
            else if (sa == SIBYL_OK) stats_.checked++;
        }
        slots_.push_back(copy);  // may invalidate `s`
    }

    void rewind(Slot& s) {
        if (s.request) return;
        const size_t pos = position(s);
        const size_t to = pos == 0 ? 0 : static_cast<size_t>(pick(static_cast<int>(pos) + 1));
        const sibyl_status st = sibyl_session_rewind(s.session, to);
        if (st != SIBYL_OK) return error(std::string("rewind: ") + sibyl_status_string(st));
        stats_.rewinds++;
    }

    void blocking(Slot& s) {
        if (s.request) return;
        if (position(s) > kMaxPosition) sibyl_session_reset(s.session);
        const bool fresh = position(s) == 0;
        const int k = pick(kPrompts);
        const uint32_t max_new = 1 + static_cast<uint32_t>(pick(kMaxNew));
        const sibyl_generate_options g = gen_options(max_new, false);
        std::vector<int32_t> got;
        size_t n = 0;
        const sibyl_status st = sibyl_session_generate(s.session, prompts_[k].data(), prompts_[k].size(), &g,
                                                       collect_token, &got, &n);
        stats_.blocking++;
        if (st != SIBYL_OK) return error(std::string("blocking generate: ") + sibyl_status_string(st) + " " +
                                         sibyl_last_error_message());
        if (n != max_new || got.size() != max_new) return error("blocking generate: wrong count");
        if (fresh) {
            if (!std::equal(got.begin(), got.end(), expected_[static_cast<size_t>(k)].begin()))
                error("blocking generate differs from a lone session");
            else
                stats_.checked++;
        }
    }

    // Calls on a session with an unfinished request are BUSY.
    void busy_check(Slot& s) {
        if (!s.request) return;
        size_t pos = 0;
        const sibyl_status st = sibyl_session_position(s.session, &pos);
        if (st == SIBYL_ERR_BUSY) {
            stats_.busy++;
            return;
        }
        // OK only when the request has just ended (its DONE follows at once).
        if (st != SIBYL_OK) return error(std::string("position while busy: ") + sibyl_status_string(st));
        int ready = 0;
        sibyl_request_wait(s.request, 1000000, &ready);
        if (!ready) error("position was OK while the request was still running");
    }

    void destroy(Slot& s) {
        sibyl_request* r = s.request;
        const int mode = pick(3);
        if (r && mode == 0) {
            // Destroy the session under a running request: it is cancelled; the handle lives on.
            stats_.destroys_running++;
            sibyl_session_destroy(s.session);
            Drained d = wait_done(r, s.drained, 120);
            if (d.status != SIBYL_OK && d.status != SIBYL_ERR_MODEL_DESTROYED)
                error(std::string("request of a destroyed session: ") + sibyl_status_string(d.status) + " " + d.message);
            sibyl_request_destroy(r);
        } else if (r && mode == 1) {
            sibyl_request_destroy(r);  // cancels a running request
            sibyl_session_destroy(s.session);
        } else {
            if (r) finish(s, pick(2) == 0);
            sibyl_session_destroy(s.session);
        }
        stats_.destroys++;
        s = slots_.back();
        slots_.pop_back();
    }

    sibyl_model* m_;
    std::mt19937 rng_;
    const std::vector<std::vector<int32_t>>& prompts_;
    const std::vector<std::vector<int32_t>>& expected_;
    std::atomic<int>& budget_;
    Stats& stats_;
    std::vector<Slot> slots_;
};

TEST(CapiStress, ThousandSessionsRandomOpsOnFourThreads) {
    const auto t0 = std::chrono::steady_clock::now();
    sibyl_model* m = load_model(tiny_v3_dir(), {.worker_threads = 1,
                                                .kv_cache_bytes = 960 * kPageTokens * kPoolPages,
                                                .kv_page_tokens = kPageTokens});
    ASSERT_NE(m, nullptr);
    std::vector<std::vector<int32_t>> prompts, expected;
    for (int k = 0; k < kPrompts; ++k) {
        prompts.push_back(make_prompt(500 + k, 3 + static_cast<size_t>(k)));
        expected.push_back(greedy_alone(m, prompts.back(), kMaxNew));
        ASSERT_EQ(expected.back().size(), kMaxNew);
    }
    const int total = total_sessions();
    std::atomic<int> budget{total};
    Stats stats;
    std::vector<std::unique_ptr<Worker>> workers;
    for (int i = 0; i < kThreads; ++i)
        workers.push_back(std::make_unique<Worker>(m, i, prompts, expected, budget, stats));
    std::vector<std::thread> threads;
    for (auto& w : workers) threads.emplace_back([&w] { w->run(); });
    for (std::thread& t : threads) t.join();
    for (int i = 0; i < kThreads; ++i)
        EXPECT_EQ(workers[static_cast<size_t>(i)]->errors, 0)
            << "thread " << i << ": " << workers[static_cast<size_t>(i)]->first_error;
    EXPECT_EQ(stats.created.load(), total);
    EXPECT_GT(stats.checked.load(), total / 4) << "too few results were compared with a lone session";
    std::printf("[ info ] %d sessions (%d forks), %d submits, %d cancels (%d ended cancelled), %d rewinds, "
                "%d blocking, %d destroys (%d under a running request), %d busy, %d results checked, %.1f s\n",
                stats.created.load(), stats.forks.load(), stats.submits.load(), stats.cancels.load(),
                stats.done_cancelled.load(), stats.rewinds.load(), stats.blocking.load(), stats.destroys.load(),
                stats.destroys_running.load(), stats.busy.load(), stats.checked.load(),
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());

    // Every session and request is gone: the model still answers, and every page is back in the
    // pool (the public API has no page counter): exactly kPoolPages sessions of one full page each
    // fit at once, and one more page does not.
    sibyl_model_info info;
    info.struct_size = sizeof info;
    ASSERT_EQ(sibyl_model_get_info(m, &info), SIBYL_OK) << sibyl_last_error_message();
    EXPECT_EQ(info.kv_cache_bytes, 960u * kPageTokens * kPoolPages);
    EXPECT_EQ(info.kv_page_tokens, kPageTokens);
    // The worker lets go of finished requests' sessions just after their end.
    for (int i = 0; i < 400 && info.kv_cache_bytes_used != 0; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
        ASSERT_EQ(sibyl_model_get_info(m, &info), SIBYL_OK);
    }
    EXPECT_EQ(info.kv_cache_bytes_used, 0u) << "pages are still held after every session was destroyed";
    {
        std::vector<sibyl_session*> held;
        int appended = 0;
        for (uint64_t i = 0; i <= kPoolPages; ++i) {
            sibyl_session* s = new_session(m);
            ASSERT_NE(s, nullptr);
            held.push_back(s);
            const std::vector<int32_t> p = make_prompt(10000 + static_cast<int>(i), kPageTokens);
            const sibyl_status st = sibyl_session_append(s, p.data(), p.size(), SIBYL_LOGITS_NONE);
            if (i < kPoolPages) {
                EXPECT_EQ(st, SIBYL_OK) << "page " << i << " of " << kPoolPages
                                        << " is not available: pages leaked. " << sibyl_last_error_message();
                if (st == SIBYL_OK) ++appended;
            } else {
                EXPECT_EQ(st, SIBYL_ERR_OUT_OF_MEMORY) << "the pool holds more pages than it says";
            }
        }
        EXPECT_EQ(appended, static_cast<int>(kPoolPages));
        for (sibyl_session* s : held) sibyl_session_destroy(s);
    }
    sibyl_model_destroy(m);
}

}  // namespace
