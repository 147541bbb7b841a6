// config.json parsing: both rope forms, defaults, and clear errors.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "engine/model/config.h"
#include "engine/core/failure.h"
#include "fixture_util.h"
#include "engine/formats/file_util.h"
#include "engine/model/rope.h"

namespace sibyl::engine::test {
namespace {

nlohmann::json fixture_config(const std::string& name) {
  return nlohmann::json::parse(read_text_file(data_dir() + "/" + name + "/config.json"));
}

ModelConfig parse(const nlohmann::json& j) { return parse_model_config(j.dump(), "config.json"); }

Errc config_error(const nlohmann::json& j, std::string* message = nullptr) {
  return error_of([&] { parse(j); }, message);
}

TEST(Config, LegacyAndTransformers5FormsAgree) {
  nlohmann::json legacy = fixture_config("tiny-v3");
  nlohmann::json v5 = legacy;
  nlohmann::json params = v5["rope_scaling"];
  params["rope_theta"] = v5["rope_theta"];
  params["rope_type"] = params["type"];
  params.erase("type");
  v5.erase("rope_scaling");
  v5.erase("rope_theta");
  v5["rope_parameters"] = params;
  ModelConfig a = parse(legacy), b = parse(v5);
  EXPECT_TRUE(a.rope.yarn);
  EXPECT_TRUE(b.rope.yarn);
  EXPECT_EQ(a.rope.factor, b.rope.factor);
  EXPECT_EQ(a.rope.theta, b.rope.theta);
  EXPECT_EQ(a.rope.original_max_position_embeddings, 64);
  EXPECT_EQ(b.rope.original_max_position_embeddings, 64);
  EXPECT_EQ(compute_rope(a).inv_freq, compute_rope(b).inv_freq);
}

TEST(Config, FixturesReadAsExpected) {
  ModelConfig v3 = parse(fixture_config("tiny-v3"));
  EXPECT_EQ(v3.family, Family::deepseek_v3);
  EXPECT_EQ(v3.topk_method, TopkMethod::noaux_tc);
  EXPECT_EQ(v3.scoring, ScoringFunc::sigmoid);
  EXPECT_EQ(v3.q_lora_rank, 96);
  EXPECT_EQ(v3.kv_width(), 80);
  ModelConfig lite = parse(fixture_config("tiny-v2-lite"));
  EXPECT_EQ(lite.q_lora_rank, 0);
  EXPECT_EQ(lite.topk_method, TopkMethod::greedy);
  EXPECT_EQ(lite.n_shared_experts, 2);
  ModelConfig v2 = parse(fixture_config("tiny-v2"));
  EXPECT_EQ(v2.topk_method, TopkMethod::group_limited_greedy);
  EXPECT_EQ(v2.routed_scaling_factor, 16.0);
  EXPECT_DOUBLE_EQ(v2.rope.mscale_all_dim, 0.707);
  ASSERT_EQ(v2.eos_token_ids.size(), 1u);
  EXPECT_EQ(v2.eos_token_ids[0], 1);
}

TEST(Config, UnsupportedValuesAreClearErrors) {
  std::string msg;
  nlohmann::json j = fixture_config("tiny-v3");
  j["model_type"] = "llama";
  EXPECT_EQ(config_error(j, &msg), Errc::unsupported);
  EXPECT_NE(msg.find("llama"), std::string::npos) << msg;

  j = fixture_config("tiny-v3");
  j["hidden_act"] = "gelu";
  EXPECT_EQ(config_error(j, &msg), Errc::unsupported);
  EXPECT_NE(msg.find("gelu"), std::string::npos) << msg;

  j = fixture_config("tiny-v3");
  j["rope_scaling"]["type"] = "longrope";
  EXPECT_EQ(config_error(j, &msg), Errc::unsupported);
  EXPECT_NE(msg.find("longrope"), std::string::npos) << msg;

  j = fixture_config("tiny-v3");
  j["topk_method"] = "random";
  EXPECT_EQ(config_error(j), Errc::unsupported);

  j = fixture_config("tiny-v3");
  j["scoring_func"] = "tanh";
  EXPECT_EQ(config_error(j), Errc::unsupported);

  j = fixture_config("tiny-v3");
  j["quantization_config"] = {{"quant_method", "gptq"}, {"bits", 4}};
  EXPECT_EQ(config_error(j), Errc::unsupported);
  j["quantization_config"] = {{"quant_method", "fp8"}, {"fmt", "e5m2"}, {"weight_block_size", {128, 128}}};
  EXPECT_EQ(config_error(j), Errc::unsupported);
  j["quantization_config"] = {{"quant_method", "fp8"}};  // no block size: malformed
  EXPECT_EQ(config_error(j), Errc::format);
  j["quantization_config"] = {{"quant_method", "fp8"}, {"fmt", "e4m3"}, {"weight_block_size", {128, 64}}};
  ModelConfig fp8 = parse(j);
  EXPECT_EQ(fp8.fp8_block_rows, 128);
  EXPECT_EQ(fp8.fp8_block_cols, 64);
}

TEST(Config, InconsistentValuesAreFormatErrors) {
  std::string msg;
  nlohmann::json j = fixture_config("tiny-v3");
  j.erase("hidden_size");
  EXPECT_EQ(config_error(j, &msg), Errc::format);
  EXPECT_NE(msg.find("hidden_size"), std::string::npos) << msg;

  j = fixture_config("tiny-v3");
  j["n_group"] = 3;  // does not divide 16 experts
  EXPECT_EQ(config_error(j), Errc::format);

  j = fixture_config("tiny-v3");
  j["num_attention_heads"] = -4;
  EXPECT_EQ(config_error(j), Errc::format);

  j = fixture_config("tiny-v3");
  j["qk_rope_head_dim"] = "16";
  EXPECT_EQ(config_error(j), Errc::format);

  EXPECT_THROW(parse_model_config("{not json", "config.json"), Failure);
  EXPECT_THROW(parse_model_config("[1, 2]", "config.json"), Failure);
}

TEST(Config, ImpossibleSizesAreRejectedBeforeAnyArithmetic) {
  std::string msg;
  for (const char* key : {"num_attention_heads", "vocab_size", "hidden_size", "num_hidden_layers", "kv_lora_rank",
                          "n_routed_experts", "max_position_embeddings"}) {
    nlohmann::json j = fixture_config("tiny-v3");
    j[key] = (int64_t{1} << 60) + 4;  // products of such values wrap around to the real shapes
    EXPECT_EQ(config_error(j, &msg), Errc::format) << key;
    EXPECT_NE(msg.find(key), std::string::npos) << msg;
  }
  nlohmann::json j = fixture_config("tiny-v3");
  j["eos_token_id"] = (int64_t{1} << 32) + 1;  // must not be truncated to 1
  EXPECT_EQ(config_error(j), Errc::format);
}

TEST(Config, YarnFactorDefaultsToContextRatio) {
  nlohmann::json j = fixture_config("tiny-v3");
  j["rope_scaling"].erase("factor");
  EXPECT_DOUBLE_EQ(parse(j).rope.factor, 4096.0 / 64.0);
}

TEST(Rope, DefaultFrequenciesAndScale) {
  nlohmann::json j = fixture_config("tiny-v3");
  j.erase("rope_scaling");
  ModelConfig c = parse(j);
  RopeSetup r = compute_rope(c);
  ASSERT_EQ(r.inv_freq.size(), 8u);
  EXPECT_FLOAT_EQ(r.inv_freq[0], 1.0f);
  EXPECT_NEAR(r.inv_freq[1], std::pow(10000.0, -2.0 / 16.0), 1e-7);
  EXPECT_FLOAT_EQ(r.attention_factor, 1.0f);
  EXPECT_FLOAT_EQ(r.softmax_scale, static_cast<float>(1.0 / std::sqrt(48.0)));
}

TEST(Rope, YarnMscaleRules) {
  nlohmann::json j = fixture_config("tiny-v3");
  j["rope_scaling"]["mscale"] = 0.5;
  j["rope_scaling"]["mscale_all_dim"] = 1.0;
  RopeSetup r = compute_rope(parse(j));
  const double f = 4.0;
  EXPECT_NEAR(r.attention_factor, (0.1 * 0.5 * std::log(f) + 1) / (0.1 * std::log(f) + 1), 1e-6);
  double m = 0.1 * std::log(f) + 1;
  EXPECT_NEAR(r.softmax_scale, m * m / std::sqrt(48.0), 1e-6);
  // Interpolated frequencies never exceed the originals; the fastest pair is untouched.
  EXPECT_FLOAT_EQ(r.inv_freq[0], 1.0f);
  EXPECT_LT(r.inv_freq[7], std::pow(10000.0, -14.0 / 16.0));
}

}  // namespace
}  // namespace sibyl::engine::test
