// Misuse of the C ABI (capi/include/sibyl/sibyl.h): NULL arguments, bad struct
// sizes, invalid tokens, calls in the wrong state, sessions outliving their model,
// per-thread error messages, and model directories that are broken in every way
// the loader must catch. Models come from $SIBYL_TEST_DATA/tiny-v3; broken copies
// are written to a fresh temporary directory per test and removed afterwards.
#include <sibyl/sibyl.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <memory>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "test_files.h"

namespace {

using namespace sibyl_test;

// ================================================================== helpers

// Replaces the string value of the first "key" in a JSON text: "key": "old" -> "key": "value".
std::string set_json_string(std::string json, const std::string& key, const std::string& value) {
    const std::string quoted = "\"" + key + "\"";
    size_t p = json.find(quoted);
    if (p == std::string::npos) throw std::runtime_error("no key " + key);
    p = json.find(':', p + quoted.size());
    const size_t open = json.find('"', p);
    const size_t close = json.find('"', open + 1);
    if (p == std::string::npos || open == std::string::npos || close == std::string::npos)
        throw std::runtime_error("key " + key + " has no string value");
    return json.replace(open, close - open + 1, "\"" + value + "\"");
}

// ------------------------------------------------------------------ assertions

// A failure whose message cannot come from the call under test: a later failing
// call must replace it.
const char* const kMarker = "/nonexistent/sibyl-misuse-marker";

void plant_marker_error() {
    sibyl_model* m = nullptr;
    ASSERT_NE(sibyl_model_load(kMarker, nullptr, &m), SIBYL_OK);
    ASSERT_NE(std::string(sibyl_last_error_message()).find(kMarker), std::string::npos)
        << "a failed load should name its path; got: " << sibyl_last_error_message();
}

// `call` must fail with `expected` and leave a fresh, non-empty message on this thread.
#define EXPECT_FAILS_WITH(expected, call)                                                             \
    do {                                                                                              \
        SCOPED_TRACE(#call);                                                                          \
        plant_marker_error();                                                                         \
        const sibyl_status st_ = (call);                                                              \
        EXPECT_EQ(st_, (expected)) << sibyl_status_string(st_) << ": " << sibyl_last_error_message(); \
        const std::string msg_ = sibyl_last_error_message();                                          \
        EXPECT_FALSE(msg_.empty());                                                                   \
        EXPECT_EQ(msg_.find(kMarker), std::string::npos) << "the message was not updated: " << msg_;  \
    } while (0)

sibyl_model* const kModelSentinel = reinterpret_cast<sibyl_model*>(static_cast<uintptr_t>(0x5150));
sibyl_session* const kSessionSentinel = reinterpret_cast<sibyl_session*>(static_cast<uintptr_t>(0x5150));

const int32_t kPrompt[] = {0, 17, 42, 311, 5};
const size_t kPromptLen = sizeof(kPrompt) / sizeof(kPrompt[0]);

// ================================================================== global functions

TEST(CapiGlobal, StatusStringsAreNonEmptyAndDistinct) {
    std::set<std::string> names;
    for (int code = SIBYL_OK; code <= SIBYL_ERR_BUFFER_TOO_SMALL; ++code) {
        const char* s = sibyl_status_string(static_cast<sibyl_status>(code));
        ASSERT_NE(s, nullptr) << code;
        EXPECT_GT(std::strlen(s), 0u) << code;
        EXPECT_TRUE(names.insert(s).second) << "duplicate status string \"" << s << "\" for " << code;
    }
    // Codes a newer library may add. (Every enum is 32-bit wide through its
    // *_MAX_ENUM value, so these are valid values of the type, also in C++.)
    for (int code : {14, 999, 0x7fffffff}) {
        const char* s = sibyl_status_string(static_cast<sibyl_status>(code));
        ASSERT_NE(s, nullptr) << code;
        EXPECT_GT(std::strlen(s), 0u) << code;
    }
}

TEST(CapiGlobal, Versions) {
    EXPECT_EQ(sibyl_abi_version(), static_cast<uint32_t>(SIBYL_ABI_VERSION));
    ASSERT_NE(sibyl_version_string(), nullptr);
    EXPECT_GT(std::strlen(sibyl_version_string()), 0u);
}

TEST(CapiGlobal, InitFunctionsSetStructSizeAndAcceptNull) {
    sibyl_model_options_init(nullptr);
    sibyl_session_options_init(nullptr);
    sibyl_sampler_options_init(nullptr);
    sibyl_generate_options_init(nullptr);
    sibyl_model_options mo;
    sibyl_model_options_init(&mo);
    EXPECT_EQ(mo.struct_size, sizeof mo);
    sibyl_session_options so;
    sibyl_session_options_init(&so);
    EXPECT_EQ(so.struct_size, sizeof so);
    sibyl_sampler_options po;
    sibyl_sampler_options_init(&po);
    EXPECT_EQ(po.struct_size, sizeof po);
    sibyl_generate_options go;
    sibyl_generate_options_init(&go);
    EXPECT_EQ(go.struct_size, sizeof go);
    EXPECT_EQ(go.sampler, nullptr);
}

TEST(CapiGlobal, DestroyNullIsANoOp) {
    sibyl_model_destroy(nullptr);
    sibyl_session_destroy(nullptr);
}

TEST(CapiGlobal, LastErrorIsEmptyOnAFreshThread) {
    std::string seen = "unset";
    std::thread([&] { seen = sibyl_last_error_message(); }).join();
    EXPECT_EQ(seen, "");
}

TEST(CapiGlobal, LastErrorIsPerThread) {
    ASSERT_EQ(sibyl_model_load(nullptr, nullptr, nullptr), SIBYL_ERR_INVALID_ARGUMENT);
    const char* mine = sibyl_last_error_message();
    const std::string saved = mine;
    ASSERT_FALSE(saved.empty());

    std::string theirs;
    sibyl_status their_status = SIBYL_OK;
    std::thread([&] {
        sibyl_model* other = nullptr;
        their_status = sibyl_model_load("/nonexistent/sibyl-other-thread", nullptr, &other);
        theirs = sibyl_last_error_message();
    }).join();
    EXPECT_EQ(their_status, SIBYL_ERR_IO);
    EXPECT_NE(theirs.find("/nonexistent/sibyl-other-thread"), std::string::npos) << theirs;
    EXPECT_NE(theirs, saved);
    EXPECT_EQ(std::string(sibyl_last_error_message()), saved);
    EXPECT_EQ(std::string(mine), saved);  // still valid: no failing call on this thread since
}

TEST(CapiGlobal, LogCallbackCanBeSetAndRestored) {
    sibyl_set_log_callback([](sibyl_log_level, const char*, void*) {}, nullptr, SIBYL_LOG_DEBUG);
    sibyl_model* m = nullptr;
    EXPECT_EQ(sibyl_model_load("/nonexistent/sibyl-log", nullptr, &m), SIBYL_ERR_IO);
    sibyl_set_log_callback(nullptr, nullptr, SIBYL_LOG_WARN);
}

// ================================================================== with a model

class CapiMisuse : public ::testing::Test {
protected:
    void SetUp() override {
        const fs::path dir = tiny_v3_dir();
        ASSERT_FALSE(dir.empty()) << "set SIBYL_TEST_DATA to the tests/data directory";
        ASSERT_EQ(sibyl_model_load(dir.string().c_str(), nullptr, &model_), SIBYL_OK) << sibyl_last_error_message();
        ASSERT_EQ(sibyl_session_create(model_, nullptr, &session_), SIBYL_OK) << sibyl_last_error_message();
    }
    void TearDown() override {
        sibyl_session_destroy(session_);
        sibyl_model_destroy(model_);
    }

    size_t position() const {
        size_t p = 12345;
        EXPECT_EQ(sibyl_session_position(session_, &p), SIBYL_OK) << sibyl_last_error_message();
        return p;
    }
    int32_t greedy() const {
        int32_t t = -1;
        EXPECT_EQ(sibyl_session_sample(session_, nullptr, &t), SIBYL_OK) << sibyl_last_error_message();
        return t;
    }
    void append_prompt() { ASSERT_EQ(sibyl_session_append(session_, kPrompt, kPromptLen, SIBYL_LOGITS_LAST), SIBYL_OK); }

    sibyl_model* model_ = nullptr;
    sibyl_session* session_ = nullptr;
};

// ------------------------------------------------------------------ NULL arguments

TEST_F(CapiMisuse, NullArgumentsToModelFunctions) {
    const std::string dir = tiny_v3_dir();
    // A NULL path is the default model (0.8); a NULL out pointer is still an error, also with it.
    EXPECT_FAILS_WITH(SIBYL_ERR_INVALID_ARGUMENT, sibyl_model_load(nullptr, nullptr, nullptr));
    EXPECT_FAILS_WITH(SIBYL_ERR_INVALID_ARGUMENT, sibyl_model_load(dir.c_str(), nullptr, nullptr));

    sibyl_model_info info;
    info.struct_size = sizeof info;
    EXPECT_FAILS_WITH(SIBYL_ERR_INVALID_ARGUMENT, sibyl_model_get_info(nullptr, &info));
    EXPECT_FAILS_WITH(SIBYL_ERR_INVALID_ARGUMENT, sibyl_model_get_info(model_, nullptr));

    sibyl_session* s = kSessionSentinel;
    EXPECT_FAILS_WITH(SIBYL_ERR_INVALID_ARGUMENT, sibyl_session_create(nullptr, nullptr, &s));
    EXPECT_EQ(s, kSessionSentinel);
    EXPECT_FAILS_WITH(SIBYL_ERR_INVALID_ARGUMENT, sibyl_session_create(model_, nullptr, nullptr));
}

TEST_F(CapiMisuse, NullArgumentsToSessionFunctions) {
    append_prompt();  // so that NULL, not a missing logits row, is what fails
    const int32_t token = 7;
    const float* logits = nullptr;
    size_t rows = 0, vocab = 0, pos = 0, n = 99;
    int32_t out = -1;
    sibyl_sampler_options sampler;
    sibyl_sampler_options_init(&sampler);
    sibyl_generate_options gen;
    sibyl_generate_options_init(&gen);
    gen.max_new_tokens = 2;

    EXPECT_FAILS_WITH(SIBYL_ERR_INVALID_ARGUMENT, sibyl_session_append(nullptr, &token, 1, SIBYL_LOGITS_LAST));
    EXPECT_FAILS_WITH(SIBYL_ERR_INVALID_ARGUMENT, sibyl_session_append(session_, nullptr, 3, SIBYL_LOGITS_LAST));
    EXPECT_FAILS_WITH(SIBYL_ERR_INVALID_ARGUMENT, sibyl_session_logits(nullptr, &logits, &rows, &vocab));
    EXPECT_FAILS_WITH(SIBYL_ERR_INVALID_ARGUMENT, sibyl_session_logits(session_, nullptr, &rows, &vocab));
    EXPECT_FAILS_WITH(SIBYL_ERR_INVALID_ARGUMENT, sibyl_session_logits(session_, &logits, nullptr, &vocab));
    EXPECT_FAILS_WITH(SIBYL_ERR_INVALID_ARGUMENT, sibyl_session_logits(session_, &logits, &rows, nullptr));
    EXPECT_FAILS_WITH(SIBYL_ERR_INVALID_ARGUMENT, sibyl_session_position(nullptr, &pos));
    EXPECT_FAILS_WITH(SIBYL_ERR_INVALID_ARGUMENT, sibyl_session_position(session_, nullptr));
    EXPECT_FAILS_WITH(SIBYL_ERR_INVALID_ARGUMENT, sibyl_session_rewind(nullptr, 0));
    EXPECT_FAILS_WITH(SIBYL_ERR_INVALID_ARGUMENT, sibyl_session_reset(nullptr));
    EXPECT_FAILS_WITH(SIBYL_ERR_INVALID_ARGUMENT, sibyl_session_set_seed(nullptr, 1));
    EXPECT_FAILS_WITH(SIBYL_ERR_INVALID_ARGUMENT, sibyl_session_sample(nullptr, &sampler, &out));
    EXPECT_FAILS_WITH(SIBYL_ERR_INVALID_ARGUMENT, sibyl_session_sample(session_, &sampler, nullptr));
    EXPECT_FAILS_WITH(SIBYL_ERR_INVALID_ARGUMENT,
                      sibyl_session_generate(nullptr, &token, 1, &gen, nullptr, nullptr, &n));
    EXPECT_FAILS_WITH(SIBYL_ERR_INVALID_ARGUMENT,
                      sibyl_session_generate(session_, nullptr, 3, &gen, nullptr, nullptr, &n));
    EXPECT_EQ(out, -1);  // outputs are written only on success
    EXPECT_EQ(logits, nullptr);

    // None of it touched the session.
    EXPECT_EQ(position(), kPromptLen);
    EXPECT_EQ(sibyl_session_logits(session_, &logits, &rows, &vocab), SIBYL_OK);
}

TEST_F(CapiMisuse, NullWhereNullIsAllowed) {
    // NULL tokens with a zero count.
    EXPECT_EQ(sibyl_session_append(session_, nullptr, 0, SIBYL_LOGITS_LAST), SIBYL_OK) << sibyl_last_error_message();
    EXPECT_EQ(position(), 0u);

    // NULL options (defaults: greedy, up to 256 tokens; the callback stops after 2).
    int calls = 0;
    auto stop_after_two = [](int32_t, void* user_data) { return ++*static_cast<int*>(user_data) == 2 ? 1 : 0; };
    EXPECT_EQ(sibyl_session_generate(session_, kPrompt, kPromptLen, nullptr, stop_after_two, &calls, nullptr),
              SIBYL_OK)
        << sibyl_last_error_message();
    EXPECT_EQ(calls, 2);
    EXPECT_EQ(position(), kPromptLen + 2);

    // NULL callback, user data and count.
    sibyl_generate_options gen;
    sibyl_generate_options_init(&gen);
    gen.max_new_tokens = 3;
    gen.stop_at_eos = 0;
    EXPECT_EQ(sibyl_session_generate(session_, nullptr, 0, &gen, nullptr, nullptr, nullptr), SIBYL_OK)
        << sibyl_last_error_message();
    EXPECT_EQ(position(), kPromptLen + 5);

    // NULL sampler options: greedy.
    int32_t t = -1;
    EXPECT_EQ(sibyl_session_sample(session_, nullptr, &t), SIBYL_OK);
    EXPECT_GE(t, 0);
}

TEST_F(CapiMisuse, OutOfRangeEnumValues) {
    append_prompt();
    const int32_t next = greedy();
    const int32_t token = 3;
    for (int mode : {3, 7, static_cast<int>(SIBYL_LOGITS_MAX_ENUM)}) {
        SCOPED_TRACE("logits mode " + std::to_string(mode));
        EXPECT_FAILS_WITH(SIBYL_ERR_INVALID_ARGUMENT,
                          sibyl_session_append(session_, &token, 1, static_cast<sibyl_logits_mode>(mode)));
    }
    EXPECT_EQ(position(), kPromptLen);
    EXPECT_EQ(greedy(), next);  // the logits are still there

    for (int backend : {4, 42, static_cast<int>(SIBYL_BACKEND_MAX_ENUM)}) {
        SCOPED_TRACE("backend " + std::to_string(backend));
        sibyl_model_options options;
        sibyl_model_options_init(&options);
        options.backend = static_cast<sibyl_backend_kind>(backend);
        sibyl_model* m = kModelSentinel;
        EXPECT_FAILS_WITH(SIBYL_ERR_INVALID_ARGUMENT,
                          sibyl_model_load(tiny_v3_dir().c_str(), &options, &m));
        EXPECT_EQ(m, kModelSentinel);
    }
}

TEST_F(CapiMisuse, BackendNotBuiltInIsABackendError) {
    sibyl_model_options options;
    sibyl_model_options_init(&options);
    options.backend = SIBYL_BACKEND_VULKAN;
    sibyl_model* m = nullptr;
    const sibyl_status st = sibyl_model_load(tiny_v3_dir().c_str(), &options, &m);
    if (st == SIBYL_OK) {
        sibyl_model_destroy(m);  // built in after all
    } else {
        EXPECT_EQ(st, SIBYL_ERR_BACKEND) << sibyl_last_error_message();
        EXPECT_GT(std::strlen(sibyl_last_error_message()), 0u);
    }
}

// An application built against 0.1's smaller sibyl_model_options still loads (new fields default).
TEST_F(CapiMisuse, OlderModelOptionsStillLoad) {
    sibyl_model_options options;
    sibyl_model_options_init(&options);
    options.backend = SIBYL_BACKEND_CPU;
    options.struct_size = static_cast<uint32_t>(offsetof(sibyl_model_options, device_index));
    sibyl_model* m = nullptr;
    ASSERT_EQ(sibyl_model_load(tiny_v3_dir().c_str(), &options, &m), SIBYL_OK) << sibyl_last_error_message();
    sibyl_model_destroy(m);
}

TEST_F(CapiMisuse, BadDeviceOptionsAreNamed) {
    sibyl_model_options options;
    sibyl_model_options_init(&options);
    options.device_index = -1;
    sibyl_model* m = kModelSentinel;
    EXPECT_FAILS_WITH(SIBYL_ERR_INVALID_ARGUMENT, sibyl_model_load(tiny_v3_dir().c_str(), &options, &m));
    EXPECT_NE(std::string(sibyl_last_error_message()).find("device_index"), std::string::npos);

    int dummy = 0;
    sibyl_vulkan_device vk{};
    vk.struct_size = sizeof vk;
    vk.instance = vk.physical_device = vk.device = vk.queue = &dummy;
    sibyl_model_options_init(&options);
    options.vulkan_device = &vk;  // with backend AUTO: ambiguous
    EXPECT_FAILS_WITH(SIBYL_ERR_INVALID_ARGUMENT, sibyl_model_load(tiny_v3_dir().c_str(), &options, &m));
    EXPECT_NE(std::string(sibyl_last_error_message()).find("SIBYL_BACKEND_VULKAN"), std::string::npos);
    options.backend = SIBYL_BACKEND_VULKAN;
    vk.queue = nullptr;
    EXPECT_FAILS_WITH(SIBYL_ERR_INVALID_ARGUMENT, sibyl_model_load(tiny_v3_dir().c_str(), &options, &m));
    vk.struct_size = 4;
    EXPECT_FAILS_WITH(SIBYL_ERR_STRUCT_SIZE, sibyl_model_load(tiny_v3_dir().c_str(), &options, &m));
    EXPECT_EQ(m, kModelSentinel);
}

// ------------------------------------------------------------------ struct sizes

TEST_F(CapiMisuse, StructSizeTooSmall) {
    append_prompt();
    const std::string dir = tiny_v3_dir();
    for (uint32_t size : {0u, 3u}) {
        SCOPED_TRACE("struct_size " + std::to_string(size));
        sibyl_model_options mo;
        sibyl_model_options_init(&mo);
        mo.struct_size = size;
        sibyl_model* m = kModelSentinel;
        EXPECT_FAILS_WITH(SIBYL_ERR_STRUCT_SIZE, sibyl_model_load(dir.c_str(), &mo, &m));
        EXPECT_EQ(m, kModelSentinel);

        sibyl_model_info info;
        info.struct_size = size;
        EXPECT_FAILS_WITH(SIBYL_ERR_STRUCT_SIZE, sibyl_model_get_info(model_, &info));

        sibyl_session_options so;
        sibyl_session_options_init(&so);
        so.struct_size = size;
        sibyl_session* s = kSessionSentinel;
        EXPECT_FAILS_WITH(SIBYL_ERR_STRUCT_SIZE, sibyl_session_create(model_, &so, &s));
        EXPECT_EQ(s, kSessionSentinel);

        sibyl_sampler_options po;
        sibyl_sampler_options_init(&po);
        po.struct_size = size;
        int32_t t = -1;
        EXPECT_FAILS_WITH(SIBYL_ERR_STRUCT_SIZE, sibyl_session_sample(session_, &po, &t));
        EXPECT_EQ(t, -1);

        sibyl_generate_options go;
        sibyl_generate_options_init(&go);
        go.max_new_tokens = 2;
        go.struct_size = size;
        EXPECT_FAILS_WITH(SIBYL_ERR_STRUCT_SIZE,
                          sibyl_session_generate(session_, nullptr, 0, &go, nullptr, nullptr, nullptr));
        sibyl_generate_options_init(&go);  // valid, but pointing at a bad sampler
        go.max_new_tokens = 2;
        go.sampler = &po;
        EXPECT_FAILS_WITH(SIBYL_ERR_STRUCT_SIZE,
                          sibyl_session_generate(session_, nullptr, 0, &go, nullptr, nullptr, nullptr));
    }
}

TEST_F(CapiMisuse, ModelInfoOfTheCurrentSize) {
    sibyl_model_info info;
    std::memset(&info, 0xab, sizeof info);
    info.struct_size = sizeof info;
    ASSERT_EQ(sibyl_model_get_info(model_, &info), SIBYL_OK) << sibyl_last_error_message();
    EXPECT_STREQ(info.architecture, "deepseek_v3");
    ASSERT_NE(info.backend, nullptr);
    EXPECT_GT(std::strlen(info.backend), 0u);
    EXPECT_EQ(info.vocab_size, 1024);
    EXPECT_EQ(info.kv_lora_rank, 64);
}

// ------------------------------------------------------------------ invalid tokens

TEST_F(CapiMisuse, InvalidTokensLeaveTheSessionUnchanged) {
    append_prompt();
    const int32_t expected_next = greedy();
    const int32_t vocab = 1024;
    for (int32_t bad : {-1, vocab, std::numeric_limits<int32_t>::min(), std::numeric_limits<int32_t>::max()}) {
        SCOPED_TRACE("token " + std::to_string(bad));
        EXPECT_FAILS_WITH(SIBYL_ERR_INVALID_TOKEN, sibyl_session_append(session_, &bad, 1, SIBYL_LOGITS_LAST));
        const int32_t batch[] = {5, 6, bad, 7};  // valid tokens around it are not kept either
        EXPECT_FAILS_WITH(SIBYL_ERR_INVALID_TOKEN, sibyl_session_append(session_, batch, 4, SIBYL_LOGITS_ALL));
        size_t n = 99;
        int calls = 0;
        auto count = [](int32_t, void* user_data) {
            ++*static_cast<int*>(user_data);
            return 0;
        };
        EXPECT_FAILS_WITH(SIBYL_ERR_INVALID_TOKEN,
                          sibyl_session_generate(session_, batch, 4, nullptr, count, &calls, &n));
        EXPECT_EQ(n, 0u);
        EXPECT_EQ(calls, 0);
        EXPECT_EQ(position(), kPromptLen);
        EXPECT_EQ(greedy(), expected_next);  // the logits are the ones from before
    }
    const float* logits = nullptr;
    size_t rows = 0, vocab_out = 0;
    ASSERT_EQ(sibyl_session_logits(session_, &logits, &rows, &vocab_out), SIBYL_OK);
    EXPECT_EQ(rows, 1u);
    EXPECT_EQ(vocab_out, 1024u);
}

TEST_F(CapiMisuse, AppendingNothingChangesNothing) {
    append_prompt();
    const int32_t next = greedy();
    const int32_t unused = 3;
    EXPECT_EQ(sibyl_session_append(session_, &unused, 0, SIBYL_LOGITS_NONE), SIBYL_OK);
    EXPECT_EQ(position(), kPromptLen);
    EXPECT_EQ(greedy(), next);
}

// ------------------------------------------------------------------ state errors

TEST_F(CapiMisuse, RewindPastTheEnd) {
    append_prompt();
    EXPECT_FAILS_WITH(SIBYL_ERR_INVALID_ARGUMENT, sibyl_session_rewind(session_, kPromptLen + 1));
    EXPECT_FAILS_WITH(SIBYL_ERR_INVALID_ARGUMENT, sibyl_session_rewind(session_, SIZE_MAX));
    EXPECT_EQ(position(), kPromptLen);
    EXPECT_EQ(sibyl_session_rewind(session_, kPromptLen), SIBYL_OK);  // to the end: allowed
    EXPECT_EQ(position(), kPromptLen);
    EXPECT_EQ(sibyl_session_rewind(session_, 0), SIBYL_OK);
    EXPECT_EQ(position(), 0u);
}

TEST_F(CapiMisuse, NoLogits) {
    int32_t t = -1;
    const float* logits = nullptr;
    size_t rows = 0, vocab = 0, n = 99;
    EXPECT_FAILS_WITH(SIBYL_ERR_NO_LOGITS, sibyl_session_sample(session_, nullptr, &t));
    EXPECT_FAILS_WITH(SIBYL_ERR_NO_LOGITS, sibyl_session_logits(session_, &logits, &rows, &vocab));
    EXPECT_FAILS_WITH(SIBYL_ERR_NO_LOGITS, sibyl_session_generate(session_, nullptr, 0, nullptr, nullptr, nullptr, &n));
    EXPECT_EQ(n, 0u);
    EXPECT_EQ(t, -1);
    EXPECT_EQ(logits, nullptr);

    ASSERT_EQ(sibyl_session_append(session_, kPrompt, kPromptLen, SIBYL_LOGITS_NONE), SIBYL_OK);
    EXPECT_FAILS_WITH(SIBYL_ERR_NO_LOGITS, sibyl_session_sample(session_, nullptr, &t));

    append_prompt();
    ASSERT_EQ(sibyl_session_rewind(session_, kPromptLen), SIBYL_OK);  // drops the logits
    EXPECT_FAILS_WITH(SIBYL_ERR_NO_LOGITS, sibyl_session_sample(session_, nullptr, &t));

    append_prompt();
    ASSERT_EQ(sibyl_session_reset(session_), SIBYL_OK);
    EXPECT_EQ(position(), 0u);
    EXPECT_FAILS_WITH(SIBYL_ERR_NO_LOGITS, sibyl_session_sample(session_, nullptr, &t));
}

TEST_F(CapiMisuse, ContextFull) {
    sibyl_session_options options;
    sibyl_session_options_init(&options);
    options.max_context = 8;
    sibyl_session* s = nullptr;
    ASSERT_EQ(sibyl_session_create(model_, &options, &s), SIBYL_OK) << sibyl_last_error_message();
    const int32_t nine[9] = {0, 1, 2, 3, 4, 5, 6, 7, 8};
    size_t p = 99;
    EXPECT_FAILS_WITH(SIBYL_ERR_CONTEXT_FULL, sibyl_session_append(s, nine, 9, SIBYL_LOGITS_LAST));
    ASSERT_EQ(sibyl_session_position(s, &p), SIBYL_OK);
    EXPECT_EQ(p, 0u);

    // Generation stops with CONTEXT_FULL once the context holds 8 tokens; every
    // reported token is in the context.
    sibyl_generate_options gen;
    sibyl_generate_options_init(&gen);
    gen.max_new_tokens = 10;
    gen.stop_at_eos = 0;
    size_t n = 99;
    int calls = 0;
    auto count = [](int32_t, void* user_data) {
        ++*static_cast<int*>(user_data);
        return 0;
    };
    EXPECT_FAILS_WITH(SIBYL_ERR_CONTEXT_FULL, sibyl_session_generate(s, kPrompt, kPromptLen, &gen, count, &calls, &n));
    EXPECT_EQ(n, 3u);
    EXPECT_EQ(calls, 3);
    ASSERT_EQ(sibyl_session_position(s, &p), SIBYL_OK);
    EXPECT_EQ(p, 8u);
    EXPECT_FAILS_WITH(SIBYL_ERR_CONTEXT_FULL, sibyl_session_append(s, nine, 1, SIBYL_LOGITS_LAST));
    ASSERT_EQ(sibyl_session_position(s, &p), SIBYL_OK);
    EXPECT_EQ(p, 8u);
    sibyl_session_destroy(s);
}

// ------------------------------------------------------------------ destroyed model

TEST_F(CapiMisuse, SessionsOutliveTheirModel) {
    append_prompt();  // session_ holds logits; `idle` holds nothing
    sibyl_session* idle = nullptr;
    ASSERT_EQ(sibyl_session_create(model_, nullptr, &idle), SIBYL_OK);
    sibyl_model_destroy(model_);
    model_ = nullptr;

    const int32_t token = 3;
    const float* logits = nullptr;
    size_t rows = 0, vocab = 0, pos = 0, n = 99;
    int32_t out = -1;
    for (sibyl_session* s : {session_, idle}) {
        EXPECT_FAILS_WITH(SIBYL_ERR_MODEL_DESTROYED, sibyl_session_append(s, &token, 1, SIBYL_LOGITS_LAST));
        EXPECT_FAILS_WITH(SIBYL_ERR_MODEL_DESTROYED, sibyl_session_sample(s, nullptr, &out));
        EXPECT_FAILS_WITH(SIBYL_ERR_MODEL_DESTROYED,
                          sibyl_session_generate(s, &token, 1, nullptr, nullptr, nullptr, &n));
        EXPECT_FAILS_WITH(SIBYL_ERR_MODEL_DESTROYED, sibyl_session_logits(s, &logits, &rows, &vocab));
        EXPECT_FAILS_WITH(SIBYL_ERR_MODEL_DESTROYED, sibyl_session_position(s, &pos));
        EXPECT_FAILS_WITH(SIBYL_ERR_MODEL_DESTROYED, sibyl_session_rewind(s, 0));
        EXPECT_FAILS_WITH(SIBYL_ERR_MODEL_DESTROYED, sibyl_session_reset(s));
        EXPECT_FAILS_WITH(SIBYL_ERR_MODEL_DESTROYED, sibyl_session_set_seed(s, 5));
        EXPECT_EQ(n, 0u);
    }
    EXPECT_EQ(out, -1);
    EXPECT_EQ(logits, nullptr);
    sibyl_session_destroy(idle);  // destroy still works (TearDown destroys session_)
}

// ================================================================== broken model directories

class BrokenModel : public ::testing::Test {
protected:
    void SetUp() override {
        const fs::path src = tiny_v3_dir();
        ASSERT_FALSE(src.empty()) << "set SIBYL_TEST_DATA to the tests/data directory";
        ASSERT_TRUE(fs::is_directory(src)) << src;
        tmp_ = std::make_unique<TempDir>();
        dir_ = tmp_->path() / "tiny-v3";
        fs::create_directories(dir_);
        copy_model(src, dir_);
        weights_ = read_file(dir_ / "model.safetensors");
        config_ = read_file(dir_ / "config.json");
    }
    void TearDown() override {
        tmp_.reset();
    }

    // Loading dir() must fail with `code`, a message naming each of `mentions`, and no model.
    void expect_load_fails(sibyl_status code, std::initializer_list<std::string> mentions, fs::path dir = {}) {
        if (dir.empty()) dir = dir_;
        sibyl_model* m = kModelSentinel;
        const sibyl_status st = sibyl_model_load(dir.string().c_str(), nullptr, &m);
        const std::string msg = sibyl_last_error_message();
        EXPECT_EQ(st, code) << sibyl_status_string(st) << ": " << msg;
        EXPECT_EQ(m, kModelSentinel) << "out_model written on failure";
        if (st == SIBYL_OK && m != kModelSentinel) sibyl_model_destroy(m);
        if (st == SIBYL_OK) return;
        EXPECT_FALSE(msg.empty());
        for (const std::string& word : mentions)
            EXPECT_NE(msg.find(word), std::string::npos) << "the message should mention \"" << word << "\": " << msg;
    }

    void expect_load_succeeds() {
        sibyl_model* m = nullptr;
        ASSERT_EQ(sibyl_model_load(dir_.string().c_str(), nullptr, &m), SIBYL_OK) << sibyl_last_error_message();
        sibyl_model_destroy(m);
    }

    void write_weights(const std::string& bytes) { write_file(dir_ / "model.safetensors", bytes); }
    void write_config(const std::string& text) { write_file(dir_ / "config.json", text); }
    std::vector<StTensor> tensors() const { return parse_safetensors(weights_); }

    std::unique_ptr<TempDir> tmp_;
    fs::path dir_;
    std::string weights_;
    std::string config_;
};

// The helpers themselves: rewriting without a change still loads.
TEST_F(BrokenModel, UnchangedRewriteLoads) {
    const std::vector<StTensor> t = tensors();
    ASSERT_EQ(t.size(), 139u);  // every tensor of tiny-v3
    write_weights(encode_safetensors(t));
    write_config(set_json_string(config_, "model_type", "deepseek_v3"));
    expect_load_succeeds();
}

TEST_F(BrokenModel, MissingDirectory) {
    const fs::path missing = dir_ / "no-such-model";
    expect_load_fails(SIBYL_ERR_IO, {missing.string()}, missing);
}

// A file is opened by its first bytes (GGUF, .sibyl pack); anything else is named as unknown.
TEST_F(BrokenModel, PathIsAFileOfUnknownKind) {
    expect_load_fails(SIBYL_ERR_FORMAT, {"config.json", "GGUF", ".sibyl"}, dir_ / "config.json");
}

TEST_F(BrokenModel, MissingConfig) {
    fs::remove(dir_ / "config.json");
    expect_load_fails(SIBYL_ERR_IO, {"config.json"});
}

TEST_F(BrokenModel, ConfigIsNotJson) {
    write_config(config_.substr(0, config_.size() / 2));
    expect_load_fails(SIBYL_ERR_FORMAT, {"config.json"});
    write_config("not json at all");
    expect_load_fails(SIBYL_ERR_FORMAT, {"config.json"});
    write_config("[1, 2, 3]");
    expect_load_fails(SIBYL_ERR_FORMAT, {"config.json"});
}

TEST_F(BrokenModel, ModelTypeLlamaIsUnsupported) {
    write_config(set_json_string(config_, "model_type", "llama"));
    expect_load_fails(SIBYL_ERR_UNSUPPORTED, {"llama", "model_type"});
}

TEST_F(BrokenModel, HiddenActGeluIsUnsupported) {
    write_config(set_json_string(config_, "hidden_act", "gelu"));
    expect_load_fails(SIBYL_ERR_UNSUPPORTED, {"gelu"});
}

TEST_F(BrokenModel, MissingWeights) {
    fs::remove(dir_ / "model.safetensors");
    expect_load_fails(SIBYL_ERR_IO, {"model.safetensors"});
}

TEST_F(BrokenModel, EmptyOrTinyWeightsFile) {
    write_weights("");
    expect_load_fails(SIBYL_ERR_FORMAT, {"model.safetensors"});
    write_weights(std::string("\x10\0\0\0", 4));  // shorter than the 8-byte length prefix
    expect_load_fails(SIBYL_ERR_FORMAT, {"model.safetensors"});
}

TEST_F(BrokenModel, TruncatedInTensorData) {
    const uint64_t n = header_length(weights_);
    const size_t data = weights_.size() - 8 - n;
    write_weights(weights_.substr(0, 8 + n + data / 2));
    expect_load_fails(SIBYL_ERR_FORMAT, {"model.safetensors"});
    write_weights(weights_.substr(0, weights_.size() - 1));  // one byte short
    expect_load_fails(SIBYL_ERR_FORMAT, {"model.safetensors"});
}

TEST_F(BrokenModel, TruncatedInHeader) {
    const uint64_t n = header_length(weights_);
    write_weights(weights_.substr(0, 8 + n / 2));
    expect_load_fails(SIBYL_ERR_FORMAT, {"model.safetensors"});
}

TEST_F(BrokenModel, HugeHeaderLength) {
    const std::string rest = weights_.substr(8);
    for (uint64_t n : {uint64_t{1} << 40, std::numeric_limits<uint64_t>::max(), uint64_t{weights_.size()}}) {
        SCOPED_TRACE("header length " + std::to_string(n));
        write_weights(length_prefix(n) + rest);
        expect_load_fails(SIBYL_ERR_FORMAT, {"model.safetensors"});
    }
}

TEST_F(BrokenModel, HeaderIsNotJson) {
    const std::string data = weights_.substr(8 + header_length(weights_));
    for (std::string header : {std::string("this is not json"), std::string("[1, 2, 3]       "),
                               std::string("{\"a\": {\"dtype\": ")}) {
        SCOPED_TRACE(header);
        write_weights(length_prefix(header.size()) + header + data);
        expect_load_fails(SIBYL_ERR_FORMAT, {"model.safetensors"});
    }
}

TEST_F(BrokenModel, TensorOffsetBeyondTheFile) {
    const std::vector<StTensor> t = tensors();
    uint64_t data_size = 0;
    for (const StTensor& x : t) data_size += x.bytes.size();
    const StTensor& victim = t[t.size() / 2];
    write_weights(encode_safetensors(t, victim.name, {data_size + 64, data_size + 64 + victim.bytes.size()}));
    expect_load_fails(SIBYL_ERR_FORMAT, {victim.name});
}

TEST_F(BrokenModel, TensorShapeDisagreesWithConfig) {
    std::vector<StTensor> t = tensors();
    const std::string name = "model.layers.1.self_attn.kv_a_proj_with_mqa.weight";  // [80, 256]
    bool found = false;
    for (StTensor& x : t) {
        if (x.name != name) continue;
        ASSERT_EQ(x.shape.size(), 2u);
        std::swap(x.shape[0], x.shape[1]);  // [256, 80]: same byte size, wrong shape
        found = true;
    }
    ASSERT_TRUE(found);
    write_weights(encode_safetensors(t));
    expect_load_fails(SIBYL_ERR_FORMAT, {name});
}

TEST_F(BrokenModel, MissingTensor) {
    std::vector<StTensor> t = tensors();
    const std::string name = "model.layers.2.mlp.experts.7.up_proj.weight";
    const size_t before = t.size();
    t.erase(std::remove_if(t.begin(), t.end(), [&](const StTensor& x) { return x.name == name; }), t.end());
    ASSERT_EQ(t.size(), before - 1);
    write_weights(encode_safetensors(t));
    expect_load_fails(SIBYL_ERR_FORMAT, {name});
}

TEST_F(BrokenModel, ExtraTensor) {
    std::vector<StTensor> t = tensors();
    const std::string name = "model.layers.1.mlp.unexpected_proj.weight";
    t.push_back({name, "BF16", {4, 2}, std::string(16, '\0')});
    write_weights(encode_safetensors(t));
    expect_load_fails(SIBYL_ERR_FORMAT, {name});
}

}  // namespace
