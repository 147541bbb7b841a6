// Concurrency through the C ABI: sessions of one shared model on several threads
// must compute exactly what they compute alone, and creating, using and
// destroying many sessions must not leak (run under ASan/TSan to check).
#include <sibyl/sibyl.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "test_files.h"

namespace {

using sibyl_test::tiny_v3_dir;

constexpr int kThreads = 4;
constexpr int kDecodeSteps = 20;

// A different prompt per thread, so that mixing up sessions would show.
std::vector<int32_t> prompt_for(int i) {
    std::vector<int32_t> prompt = {0};
    for (int k = 0; k < 6 + 3 * i; ++k) prompt.push_back((37 * (i + 1) + 101 * k) % 1024);
    return prompt;
}

// Prefill `prompt`, then `steps` greedy decode steps (sample, append). Empty on failure.
std::vector<int32_t> greedy_decode(sibyl_model* model, const std::vector<int32_t>& prompt, int steps,
                                   std::string* error) {
    std::vector<int32_t> out;
    sibyl_session* s = nullptr;
    if (sibyl_session_create(model, nullptr, &s) != SIBYL_OK) {
        *error = std::string("create: ") + sibyl_last_error_message();
        return {};
    }
    sibyl_status st = sibyl_session_append(s, prompt.data(), prompt.size(), SIBYL_LOGITS_LAST);
    for (int i = 0; i < steps && st == SIBYL_OK; ++i) {
        int32_t token = -1;
        st = sibyl_session_sample(s, nullptr, &token);
        if (st == SIBYL_OK) {
            out.push_back(token);
            st = sibyl_session_append(s, &token, 1, SIBYL_LOGITS_LAST);
        }
    }
    if (st != SIBYL_OK) {
        *error = std::string(sibyl_status_string(st)) + ": " + sibyl_last_error_message();
        out.clear();
    }
    sibyl_session_destroy(s);
    return out;
}

class CapiThreads : public ::testing::Test {
protected:
    void SetUp() override {
        const std::string dir = tiny_v3_dir();
        ASSERT_FALSE(dir.empty()) << "set SIBYL_TEST_DATA to the tests/data directory";
        ASSERT_EQ(sibyl_model_load(dir.c_str(), nullptr, &model_), SIBYL_OK) << sibyl_last_error_message();
    }
    void TearDown() override { sibyl_model_destroy(model_); }

    sibyl_model* model_ = nullptr;
};

TEST_F(CapiThreads, ConcurrentSessionsMatchSingleThreaded) {
    // The reference: each prompt decoded alone on this thread.
    std::vector<std::vector<int32_t>> expected(kThreads);
    for (int i = 0; i < kThreads; ++i) {
        std::string error;
        expected[i] = greedy_decode(model_, prompt_for(i), kDecodeSteps, &error);
        ASSERT_EQ(expected[i].size(), static_cast<size_t>(kDecodeSteps)) << error;
    }

    // The same four decodes at once, one session per thread, several rounds.
    for (int round = 0; round < 3; ++round) {
        std::vector<std::vector<int32_t>> got(kThreads);
        std::vector<std::string> errors(kThreads);
        std::vector<std::thread> threads;
        for (int i = 0; i < kThreads; ++i)
            threads.emplace_back([&, i] { got[i] = greedy_decode(model_, prompt_for(i), kDecodeSteps, &errors[i]); });
        for (std::thread& t : threads) t.join();
        for (int i = 0; i < kThreads; ++i)
            EXPECT_EQ(got[i], expected[i]) << "round " << round << ", thread " << i << " " << errors[i];
    }
}

TEST_F(CapiThreads, SessionsCreatedOnOneThreadUsedOnAnother) {
    std::vector<sibyl_session*> sessions(kThreads, nullptr);
    for (sibyl_session*& s : sessions) ASSERT_EQ(sibyl_session_create(model_, nullptr, &s), SIBYL_OK);

    sibyl_generate_options gen;
    sibyl_generate_options_init(&gen);
    gen.max_new_tokens = kDecodeSteps;
    gen.stop_at_eos = 0;
    std::vector<std::vector<int32_t>> got(kThreads);
    std::vector<sibyl_status> status(kThreads, SIBYL_OK);
    auto collect = [](int32_t token, void* user_data) {
        static_cast<std::vector<int32_t>*>(user_data)->push_back(token);
        return 0;
    };
    std::vector<std::thread> threads;
    for (int i = 0; i < kThreads; ++i) {
        threads.emplace_back([&, i] {
            const std::vector<int32_t> prompt = prompt_for(i);
            status[i] = sibyl_session_generate(sessions[i], prompt.data(), prompt.size(), &gen, collect, &got[i],
                                               nullptr);
        });
    }
    for (std::thread& t : threads) t.join();
    for (int i = 0; i < kThreads; ++i) {
        EXPECT_EQ(status[i], SIBYL_OK) << sibyl_status_string(status[i]);
        std::string error;
        EXPECT_EQ(got[i], greedy_decode(model_, prompt_for(i), kDecodeSteps, &error)) << "thread " << i << " " << error;
        size_t position = 0;
        EXPECT_EQ(sibyl_session_position(sessions[i], &position), SIBYL_OK);
        EXPECT_EQ(position, prompt_for(i).size() + kDecodeSteps);
        sibyl_session_destroy(sessions[i]);
    }
}

// 100 create / generate / destroy cycles, spread over the threads, for leak checkers.
TEST_F(CapiThreads, ManySessionLifecycles) {
    constexpr int kCycles = 100;
    constexpr int kTokens = 2;  // short: the point is the lifecycle, not the decoding
    auto short_prompt = [](int i) { return std::vector<int32_t>{0, 11 + i, 500 + i}; };
    std::vector<std::vector<int32_t>> expected(kThreads);
    for (int i = 0; i < kThreads; ++i) {
        std::string error;
        expected[i] = greedy_decode(model_, short_prompt(i), kTokens, &error);
        ASSERT_EQ(expected[i].size(), static_cast<size_t>(kTokens)) << error;
    }

    sibyl_generate_options gen;
    sibyl_generate_options_init(&gen);
    gen.max_new_tokens = kTokens;
    gen.stop_at_eos = 0;
    std::vector<int> failures(kThreads, 0);
    std::vector<std::string> first_error(kThreads);
    std::vector<std::thread> threads;
    for (int i = 0; i < kThreads; ++i) {
        threads.emplace_back([&, i] {
            const std::vector<int32_t> prompt = short_prompt(i);
            for (int cycle = i; cycle < kCycles; cycle += kThreads) {
                sibyl_session_options options;
                sibyl_session_options_init(&options);
                options.seed = static_cast<uint64_t>(cycle);
                sibyl_session* s = nullptr;
                sibyl_status st = sibyl_session_create(model_, &options, &s);
                std::vector<int32_t> tokens;
                if (st == SIBYL_OK) {
                    st = sibyl_session_generate(
                        s, prompt.data(), prompt.size(), &gen,
                        [](int32_t token, void* user_data) {
                            static_cast<std::vector<int32_t>*>(user_data)->push_back(token);
                            return 0;
                        },
                        &tokens, nullptr);
                }
                if (st != SIBYL_OK || tokens != expected[i]) {
                    if (failures[i]++ == 0)
                        first_error[i] = "cycle " + std::to_string(cycle) + ": " + sibyl_status_string(st) + " " +
                                         (st != SIBYL_OK ? sibyl_last_error_message() : "tokens differ");
                }
                sibyl_session_destroy(s);
            }
        });
    }
    for (std::thread& t : threads) t.join();
    for (int i = 0; i < kThreads; ++i) EXPECT_EQ(failures[i], 0) << "thread " << i << ": " << first_error[i];
}

}  // namespace
