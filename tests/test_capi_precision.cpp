// The precision option of the C ABI (0.4): fast by default, exact on request, checked values,
// the 0.3-sized options struct, what sibyl_model_info reports, and fast logits near exact ones
// on each of the tiny-reasoner's GGUF files with the same greedy continuation.
#include <sibyl/sibyl.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "capi_request_util.h"
#include "test_files.h"

namespace {

using namespace sibyl_capi_test;

sibyl_model* load(const std::string& path, sibyl_precision precision, uint32_t struct_size = sizeof(sibyl_model_options)) {
    sibyl_model_options o;
    sibyl_model_options_init(&o);
    o.backend = SIBYL_BACKEND_CPU;
    o.precision = precision;
    o.struct_size = struct_size;
    sibyl_model* m = nullptr;
    EXPECT_EQ(sibyl_model_load(path.c_str(), &o, &m), SIBYL_OK) << path << ": " << sibyl_last_error_message();
    return m;
}

sibyl_model_info info_of(sibyl_model* m) {
    sibyl_model_info i;
    std::memset(&i, 0, sizeof i);
    i.struct_size = sizeof i;
    EXPECT_EQ(sibyl_model_get_info(m, &i), SIBYL_OK);
    return i;
}

std::string gguf(const char* name) { return (sibyl_test::test_data_dir() / "gguf" / name).string(); }

TEST(CapiPrecision, DefaultIsFastAndInfoSaysWhatRuns) {
    sibyl_model_options o;
    sibyl_model_options_init(&o);
    EXPECT_EQ(o.precision, SIBYL_PRECISION_FAST);
    sibyl_model* m = load(gguf("tiny-reasoner-q4_k_m.gguf"), SIBYL_PRECISION_FAST);
    ASSERT_NE(m, nullptr);
    const sibyl_model_info i = info_of(m);
    EXPECT_EQ(i.precision, SIBYL_PRECISION_FAST);
    ASSERT_NE(i.cpu_simd, nullptr);
    const std::string simd = i.cpu_simd;
    EXPECT_TRUE(simd == "portable" || simd == "avx2" || simd == "avx512" || simd == "avx512_vnni" ||
                simd == "avx512_bf16")
        << simd;
    // What a decoded token reads: more than one routed expert's layers, less than the file.
    const auto file_bytes = std::filesystem::file_size(gguf("tiny-reasoner-q4_k_m.gguf"));
    EXPECT_GT(i.decode_weight_bytes, file_bytes / 10);
    EXPECT_LT(i.decode_weight_bytes, file_bytes);
    sibyl_model_destroy(m);
}

TEST(CapiPrecision, ExactOnRequestAndTheSameWeightBytes) {
    sibyl_model* fast = load(gguf("tiny-reasoner-q8_0.gguf"), SIBYL_PRECISION_FAST);
    sibyl_model* exact = load(gguf("tiny-reasoner-q8_0.gguf"), SIBYL_PRECISION_EXACT);
    ASSERT_TRUE(fast && exact);
    EXPECT_EQ(info_of(exact).precision, SIBYL_PRECISION_EXACT);
    EXPECT_EQ(info_of(fast).decode_weight_bytes, info_of(exact).decode_weight_bytes);
    sibyl_model_destroy(fast);
    sibyl_model_destroy(exact);
}

TEST(CapiPrecision, UnknownValueIsInvalid) {
    sibyl_model_options o;
    sibyl_model_options_init(&o);
    o.backend = SIBYL_BACKEND_CPU;
    o.precision = static_cast<sibyl_precision>(2);
    sibyl_model* m = nullptr;
    EXPECT_EQ(sibyl_model_load(gguf("tiny-reasoner-q8_0.gguf").c_str(), &o, &m), SIBYL_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(m, nullptr);
    EXPECT_NE(std::string(sibyl_last_error_message()).find("precision"), std::string::npos) << sibyl_last_error_message();
}

TEST(CapiPrecision, OptionsOfVersion03GetTheFastDefault) {
    // A caller built against 0.3 never wrote `precision`: garbage there must not be read.
    sibyl_model_options o;
    sibyl_model_options_init(&o);
    o.backend = SIBYL_BACKEND_CPU;
    o.struct_size = static_cast<uint32_t>(offsetof(sibyl_model_options, precision));
    std::memset(reinterpret_cast<char*>(&o) + offsetof(sibyl_model_options, precision), 0x5A,
                sizeof o - offsetof(sibyl_model_options, precision));
    sibyl_model* m = nullptr;
    ASSERT_EQ(sibyl_model_load(gguf("tiny-reasoner-q8_0.gguf").c_str(), &o, &m), SIBYL_OK) << sibyl_last_error_message();
    EXPECT_EQ(info_of(m).precision, SIBYL_PRECISION_FAST);
    sibyl_model_destroy(m);
}

// Each GGUF: the logits of an eval prompt within 2 % of exact (median position), the same top
// token at every position, and the reference's first 32 greedy tokens.
class CapiPrecisionFiles : public ::testing::TestWithParam<const char*> {};

TEST_P(CapiPrecisionFiles, FastStaysNearExactAndDecodesTheSameTokens) {
    sibyl_model* fast = load(gguf(GetParam()), SIBYL_PRECISION_FAST);
    sibyl_model* exact = load(gguf(GetParam()), SIBYL_PRECISION_EXACT);
    ASSERT_TRUE(fast && exact);
    // The first eval problem's prompt, and its reference reply.
    const nlohmann::json eval = nlohmann::json::parse(
        sibyl_test::read_file(std::filesystem::path(sibyl_test::reasoner_dir()) / "eval.public.json"))["results"][0];
    const auto prompt = eval["prompt_ids"].get<std::vector<int32_t>>();
    auto reply = eval["output_ids"].get<std::vector<int32_t>>();
    reply.resize(std::min<size_t>(reply.size(), 32));
    std::vector<std::vector<float>> logits;
    for (sibyl_model* m : {fast, exact}) {
        sibyl_session* s = new_session(m);
        ASSERT_EQ(sibyl_session_append(s, prompt.data(), prompt.size(), SIBYL_LOGITS_ALL), SIBYL_OK);
        const float* l = nullptr;
        size_t rows = 0, vocab = 0;
        ASSERT_EQ(sibyl_session_logits(s, &l, &rows, &vocab), SIBYL_OK);
        logits.emplace_back(l, l + rows * vocab);
        sibyl_session_destroy(s);
    }
    // Per position: the relative error (the median: the first positions' logits are nearly
    // flat, so their relative error is large while nothing changes) and the top token.
    const size_t vocab = static_cast<size_t>(info_of(fast).vocab_size), rows = logits[0].size() / vocab;
    std::vector<double> rel;
    for (size_t r = 0; r < rows; ++r) {
        double num = 0, den = 0;
        size_t top_fast = 0, top_exact = 0;
        for (size_t v = 0; v < vocab; ++v) {
            const float f = logits[0][r * vocab + v], e = logits[1][r * vocab + v];
            num += (f - e) * static_cast<double>(f - e);
            den += e * static_cast<double>(e);
            if (f > logits[0][r * vocab + top_fast]) top_fast = v;
            if (e > logits[1][r * vocab + top_exact]) top_exact = v;
        }
        rel.push_back(std::sqrt(num / den));
        EXPECT_EQ(top_fast, top_exact) << GetParam() << " position " << r;
    }
    std::sort(rel.begin(), rel.end());
    EXPECT_LT(rel[rows / 2], 2e-2) << GetParam();
    EXPECT_GT(rel[rows / 2], 0.0) << GetParam() << ": fast should not be the exact path";
    EXPECT_EQ(greedy_alone(fast, prompt, static_cast<int>(reply.size())), reply) << GetParam();
    sibyl_model_destroy(fast);
    sibyl_model_destroy(exact);
}

INSTANTIATE_TEST_SUITE_P(TinyReasoner, CapiPrecisionFiles,
                         ::testing::Values("tiny-reasoner-bf16.gguf", "tiny-reasoner-q8_0.gguf",
                                           "tiny-reasoner-q4_k_m.gguf"),
                         [](const auto& info) {
                             std::string n = info.param;
                             for (char& c : n)
                                 if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                             return n;
                         });

}  // namespace

namespace {

// The MTP option (0.5): off by default, checked values, what info reports, the same greedy
// tokens with it on, and the session's draft statistics.
TEST(CapiMtp, OnRequestSameTokensWithDraftStatistics) {
    sibyl_model_options o;
    sibyl_model_options_init(&o);
    EXPECT_EQ(o.mtp, 0);
    o.backend = SIBYL_BACKEND_CPU;
    o.mtp = 2;
    sibyl_model* bad = nullptr;
    EXPECT_EQ(sibyl_model_load(sibyl_test::reasoner_dir().c_str(), &o, &bad), SIBYL_ERR_INVALID_ARGUMENT);
    EXPECT_EQ(bad, nullptr);

    std::vector<int32_t> prompt;
    const nlohmann::json eval =
        nlohmann::json::parse(sibyl_test::read_file(sibyl_test::fs::path(sibyl_test::reasoner_dir()) / "eval.public.json"));
    prompt = eval["results"][5]["prompt_ids"].get<std::vector<int32_t>>();
    const std::vector<int32_t> want = eval["results"][5]["output_ids"].get<std::vector<int32_t>>();
    for (int32_t mtp : {0, 1}) {
        o.mtp = mtp;
        sibyl_model* m = nullptr;
        ASSERT_EQ(sibyl_model_load(sibyl_test::reasoner_dir().c_str(), &o, &m), SIBYL_OK) << sibyl_last_error_message();
        const sibyl_model_info i = info_of(m);
        EXPECT_EQ(i.mtp_layers, 1);
        EXPECT_EQ(i.mtp, mtp);
        EXPECT_EQ(i.kv_bytes_per_token, (4u + static_cast<uint64_t>(mtp)) * 80u * 4u);
        sibyl_session* s = nullptr;
        ASSERT_EQ(sibyl_session_create(m, nullptr, &s), SIBYL_OK);
        sibyl_generate_options g;
        sibyl_generate_options_init(&g);
        g.max_new_tokens = 300;
        std::vector<int32_t> got;
        auto on_token = [](int32_t token, void* user) -> int32_t {
            static_cast<std::vector<int32_t>*>(user)->push_back(token);
            return 0;
        };
        size_t n = 0;
        ASSERT_EQ(sibyl_session_generate(s, prompt.data(), prompt.size(), &g, on_token, &got, &n), SIBYL_OK);
        EXPECT_EQ(got, want);
        uint64_t drafted = 0, accepted = 0;
        ASSERT_EQ(sibyl_session_mtp_stats(s, &drafted, &accepted), SIBYL_OK);
        if (mtp) {
            EXPECT_GT(drafted, want.size() / 3);
            EXPECT_GT(accepted, drafted * 8 / 10);
        } else {
            EXPECT_EQ(drafted, 0u);
        }
        EXPECT_EQ(sibyl_session_mtp_stats(s, nullptr, &accepted), SIBYL_ERR_INVALID_ARGUMENT);
        sibyl_session_destroy(s);
        sibyl_model_destroy(m);
    }
}

}  // namespace
