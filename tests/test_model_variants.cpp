// Checkpoints the fixtures do not cover: other head counts, rope dims, expert counts and
// groups, more dense layers, no shared experts, tied embeddings, MTP tensors, default
// RoPE, halves-RoPE, moe_layer_freq, fp32/fp16 weights, shards, contexts well past
// original_max_position_embeddings. Random weights have no reference, so every way of
// running a sequence (prefill through either MLA path, token-by-token decode, uneven
// chunks) must agree; dtype conversions of tiny-v3 are held to its reference.
#include <gtest/gtest.h>

#include <functional>
#include <random>

#include "engine/core/failure.h"
#include "fixture_util.h"
#include "engine/model/session.h"
#include "test_files.h"

namespace sibyl::engine::test {
namespace {

using nlohmann::json;
using sibyl_test::StTensor;
using sibyl_test::TempDir;

json base_config() {
  return json{{"architectures", {"DeepseekV3ForCausalLM"}},
              {"model_type", "deepseek_v3"},
              {"vocab_size", 300},
              {"hidden_size", 96},
              {"intermediate_size", 160},
              {"num_hidden_layers", 4},
              {"num_attention_heads", 3},
              {"num_key_value_heads", 3},
              {"q_lora_rank", nullptr},
              {"kv_lora_rank", 40},
              {"qk_nope_head_dim", 24},
              {"qk_rope_head_dim", 8},
              {"v_head_dim", 20},
              {"max_position_embeddings", 512},
              {"rms_norm_eps", 1e-5},
              {"hidden_act", "silu"},
              {"n_routed_experts", 12},
              {"n_shared_experts", 0},
              {"moe_intermediate_size", 32},
              {"num_experts_per_tok", 3},
              {"n_group", 3},
              {"topk_group", 2},
              {"first_k_dense_replace", 2},
              {"moe_layer_freq", 1},
              {"topk_method", "noaux_tc"},
              {"scoring_func", "sigmoid"},
              {"norm_topk_prob", false},
              {"routed_scaling_factor", 1.7},
              {"tie_word_embeddings", true},
              {"num_nextn_predict_layers", 1},
              {"bos_token_id", 0},
              {"eos_token_id", 1},
              {"rope_theta", 50000.0},
              {"rope_scaling",
               {{"type", "yarn"},
                {"factor", 8.0},
                {"original_max_position_embeddings", 32},
                {"beta_fast", 32},
                {"beta_slow", 1},
                {"mscale", 0.9},
                {"mscale_all_dim", 0.8}}}};
}

bool is_moe(const json& c, int64_t l) {
  int64_t freq = c.value("moe_layer_freq", 1);
  return c["n_routed_experts"].get<int64_t>() > 0 && l >= c["first_k_dense_replace"].get<int64_t>() && l % freq == 0;
}

// Every tensor the HF layout has for config `c` (plus one MTP layer's worth when asked).
std::vector<std::pair<std::string, std::vector<uint64_t>>> layout(const json& c) {
  const uint64_t H = c["hidden_size"], V = c["vocab_size"], heads = c["num_attention_heads"],
                 nope = c["qk_nope_head_dim"], rope = c["qk_rope_head_dim"], vd = c["v_head_dim"],
                 R = c["kv_lora_rank"], I = c["intermediate_size"], E = c["n_routed_experts"],
                 MI = c["moe_intermediate_size"], shared = c["n_shared_experts"];
  const int64_t layers = c["num_hidden_layers"].get<int64_t>() + c.value("num_nextn_predict_layers", 0);
  std::vector<std::pair<std::string, std::vector<uint64_t>>> t = {{"model.embed_tokens.weight", {V, H}},
                                                                   {"model.norm.weight", {H}}};
  if (!c["tie_word_embeddings"].get<bool>()) t.push_back({"lm_head.weight", {V, H}});
  for (int64_t l = 0; l < layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    if (l >= c["num_hidden_layers"].get<int64_t>()) {  // an MTP layer's own tensors (no copies of embed/head)
      for (const char* norm : {"enorm.weight", "hnorm.weight", "shared_head.norm.weight"}) t.push_back({p + norm, {H}});
      t.push_back({p + "eh_proj.weight", {H, 2 * H}});
    }
    t.push_back({p + "input_layernorm.weight", {H}});
    t.push_back({p + "post_attention_layernorm.weight", {H}});
    if (c["q_lora_rank"].is_null()) {
      t.push_back({p + "self_attn.q_proj.weight", {heads * (nope + rope), H}});
    } else {
      const uint64_t Q = c["q_lora_rank"];
      t.push_back({p + "self_attn.q_a_proj.weight", {Q, H}});
      t.push_back({p + "self_attn.q_a_layernorm.weight", {Q}});
      t.push_back({p + "self_attn.q_b_proj.weight", {heads * (nope + rope), Q}});
    }
    t.push_back({p + "self_attn.kv_a_proj_with_mqa.weight", {R + rope, H}});
    t.push_back({p + "self_attn.kv_a_layernorm.weight", {R}});
    t.push_back({p + "self_attn.kv_b_proj.weight", {heads * (nope + vd), R}});
    t.push_back({p + "self_attn.o_proj.weight", {H, heads * vd}});
    std::string mlp = p + "mlp.";
    uint64_t width = I;
    if (is_moe(c, l)) {
      t.push_back({mlp + "gate.weight", {E, H}});
      if (c["topk_method"] == "noaux_tc") t.push_back({mlp + "gate.e_score_correction_bias", {E}});
      for (uint64_t e = 0; e < E; ++e) {
        const std::string x = mlp + "experts." + std::to_string(e) + ".";
        t.push_back({x + "gate_proj.weight", {MI, H}});
        t.push_back({x + "up_proj.weight", {MI, H}});
        t.push_back({x + "down_proj.weight", {H, MI}});
      }
      width = shared * MI;
      mlp += "shared_experts.";
    }
    if (width > 0) {
      t.push_back({mlp + "gate_proj.weight", {width, H}});
      t.push_back({mlp + "up_proj.weight", {width, H}});
      t.push_back({mlp + "down_proj.weight", {H, width}});
    }
  }
  return t;
}

// Writes config.json and random weights of `dtype`, in `shards` files (with an index when > 1).
void write_random_model(const sibyl_test::fs::path& dir, const json& c, const std::string& dtype, int shards) {
  sibyl_test::write_file(dir / "config.json", c.dump(2));
  std::mt19937 rng(12345);
  std::normal_distribution<float> normal(0.0f, 0.08f);
  std::vector<std::vector<StTensor>> files(static_cast<size_t>(shards));
  json index = {{"metadata", json::object()}, {"weight_map", json::object()}};
  size_t i = 0;
  for (const auto& [name, shape] : layout(c)) {
    size_t n = 1;
    for (uint64_t d : shape) n *= d;
    std::vector<float> v(n);
    const bool norm = name.find("norm") != std::string::npos;
    for (float& x : v) x = norm ? 1.0f + normal(rng) : normal(rng);
    const size_t shard = i++ % static_cast<size_t>(shards);
    files[shard].push_back({name, dtype, shape, sibyl_test::encode_floats(v, dtype)});
    index["weight_map"][name] = "model-" + std::to_string(shard) + ".safetensors";
  }
  if (shards == 1) {
    sibyl_test::write_file(dir / "model.safetensors", sibyl_test::encode_safetensors(files[0]));
    return;
  }
  for (int s = 0; s < shards; ++s)
    sibyl_test::write_file(dir / ("model-" + std::to_string(s) + ".safetensors"),
                           sibyl_test::encode_safetensors(files[static_cast<size_t>(s)]));
  sibyl_test::write_file(dir / "model.safetensors.index.json", index.dump(2));
}

std::vector<float> logits_of(const std::shared_ptr<Model>& m, const std::vector<int32_t>& toks, int how) {
  Session s(m, {});
  std::vector<float> all;
  const int64_t n = static_cast<int64_t>(toks.size());
  auto step = [&](int64_t b, int64_t k, AttentionPath path) {
    s.append(toks.data() + b, k, LogitsMode::all, path);
    all.insert(all.end(), s.logits().begin(), s.logits().end());
  };
  if (how == 0) step(0, n, AttentionPath::expanded);
  if (how == 1) step(0, n, AttentionPath::absorbed);
  if (how == 2)
    for (int64_t i = 0; i < n; ++i) step(i, 1, AttentionPath::automatic);
  if (how == 3)
    for (int64_t i = 0, k = 3; i < n; i += k, k += 5) step(i, std::min(k, n - i), AttentionPath::automatic);
  return all;
}

// Loads the variant and checks that all four ways of running 90 tokens agree.
void expect_consistent(const json& config, const std::string& dtype, int shards) {
  TempDir dir;
  write_random_model(dir.path(), config, dtype, shards);
  std::shared_ptr<Model> m = Model::load(dir.path().string(), {});
  std::vector<int32_t> toks(90);
  std::mt19937 rng(7);
  for (auto& t : toks) t = static_cast<int32_t>(rng() % config["vocab_size"].get<uint32_t>());
  std::vector<float> ref = logits_of(m, toks, 0);
  double mean_sq = 0;
  for (float x : ref) mean_sq += x * x;
  ASSERT_GT(mean_sq / static_cast<double>(ref.size()), 1e-4) << "logits are degenerate";
  for (int how = 1; how < 4; ++how) EXPECT_LT(relative_error(logits_of(m, toks, how), ref), 2e-6) << "feed " << how;
}

TEST(ModelVariants, V3NoQLoraTiedEmbeddingsMtpTwoDenseLayersNoSharedExperts) {
  expect_consistent(base_config(), "BF16", 1);
}

TEST(ModelVariants, V2GroupLimitedSharedExpertsDefaultRopeFp32Shards) {
  json c = base_config();
  c["model_type"] = "deepseek_v2";
  c["q_lora_rank"] = 56;
  c["topk_method"] = "group_limited_greedy";
  c["scoring_func"] = "softmax";
  c["n_group"] = 4;
  c["topk_group"] = 3;
  c["n_shared_experts"] = 3;
  c["first_k_dense_replace"] = 1;
  c["tie_word_embeddings"] = false;
  c["num_nextn_predict_layers"] = 0;
  c.erase("rope_scaling");
  c.erase("rope_theta");
  c["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 20000.0}};
  expect_consistent(c, "F32", 3);
}

TEST(ModelVariants, V2LiteGreedyNormalisedFp16MoeEveryOtherLayer) {
  json c = base_config();
  c["model_type"] = "deepseek_v2";
  c["topk_method"] = "greedy";
  c["scoring_func"] = "softmax";
  c["norm_topk_prob"] = true;
  c["n_group"] = 1;
  c["topk_group"] = 1;
  c["n_shared_experts"] = 2;
  c["first_k_dense_replace"] = 1;
  c["moe_layer_freq"] = 2;  // MoE only on layer 2: the checkpoint decides
  c["num_nextn_predict_layers"] = 0;
  c["rope_scaling"]["mscale"] = 0.707;
  c["rope_scaling"]["mscale_all_dim"] = 0.707;
  expect_consistent(c, "F16", 1);
}

TEST(ModelVariants, V3HalvesRopeWideHeadsSingleExpertGroups) {
  json c = base_config();
  c["rope_interleave"] = false;
  c["num_attention_heads"] = 5;
  c["qk_rope_head_dim"] = 16;
  c["n_routed_experts"] = 6;
  c["n_group"] = 6;  // one expert per group: group score is that expert's biased score
  c["topk_group"] = 4;
  c["num_experts_per_tok"] = 2;
  c["norm_topk_prob"] = true;
  c["rope_scaling"].erase("factor");  // factor = max_position_embeddings / original = 16
  expect_consistent(c, "BF16", 2);
}

// A config that describes far more than the checkpoint holds fails fast, naming both sizes.
TEST(ModelVariants, ConfigFarLargerThanCheckpointIsRefusedAtOnce) {
  TempDir dir;
  sibyl_test::copy_model(data_dir() + "/tiny-v3", dir.path());
  json c = json::parse(sibyl_test::read_file(dir.path() / "config.json"));
  c["num_hidden_layers"] = 30000;
  sibyl_test::write_file(dir.path() / "config.json", c.dump());
  try {
    Model::load(dir.path().string(), {});
    ADD_FAILURE() << "loaded";
  } catch (const Failure& e) {
    EXPECT_EQ(e.code(), Errc::format);
    EXPECT_NE(std::string(e.what()).find("30000 layers"), std::string::npos) << e.what();
  }
}

// FP8 checkpoints: the scales are checked like weights, and FP8 needs its quantization_config.
TEST(ModelVariants, Fp8ScalesAreValidated) {
  const std::string src = data_dir() + "/tiny-v3-fp8";
  const std::string original = sibyl_test::read_file(src + "/model.safetensors");
  const std::string victim = "model.layers.1.self_attn.o_proj.weight_scale_inv";
  auto load_error = [&](const std::function<void(TempDir&)>& damage) {
    TempDir dir;
    sibyl_test::copy_model(src, dir.path());
    damage(dir);
    std::string msg;
    Errc code = error_of([&] { Model::load(dir.path().string(), {}); }, &msg);
    return std::make_pair(code, msg);
  };
  auto rewrite = [&](TempDir& dir, const std::function<void(std::vector<StTensor>&)>& change) {
    std::vector<StTensor> t = sibyl_test::parse_safetensors(original);
    change(t);
    sibyl_test::write_file(dir.path() / "model.safetensors", sibyl_test::encode_safetensors(t));
  };
  auto [missing, missing_msg] = load_error([&](TempDir& d) {
    rewrite(d, [&](auto& t) { std::erase_if(t, [&](const StTensor& x) { return x.name == victim; }); });
  });
  EXPECT_EQ(missing, Errc::format);
  EXPECT_NE(missing_msg.find(victim), std::string::npos) << missing_msg;
  auto [shape, shape_msg] = load_error([&](TempDir& d) {
    rewrite(d, [&](auto& t) {
      for (StTensor& x : t)
        if (x.name == victim) x.shape = {1, 2};  // same 8 bytes, wrong block grid
    });
  });
  EXPECT_EQ(shape, Errc::format);
  EXPECT_NE(shape_msg.find("weight_block_size"), std::string::npos) << shape_msg;
  auto [no_config, no_config_msg] = load_error([&](TempDir& d) {
    json c = json::parse(sibyl_test::read_file(d.path() / "config.json"));
    c.erase("quantization_config");
    sibyl_test::write_file(d.path() / "config.json", c.dump());
  });
  EXPECT_EQ(no_config, Errc::format);
  EXPECT_NE(no_config_msg.find("quantization_config"), std::string::npos) << no_config_msg;
}

// tiny-v3 re-encoded as F32 (exact) and F16 (same values where bf16 fits) matches its reference.
TEST(ModelVariants, TinyV3AsF32AndF16MatchesReference) {
  const std::string src = data_dir() + "/tiny-v3";
  SafetensorsFile ref(src + "/reference.safetensors");
  std::vector<int32_t> toks = i32_of(ref.at("seq2.tokens"));
  std::vector<float> want = f32_of(ref.at("seq2.logits"));
  const std::string original = sibyl_test::read_file(src + "/model.safetensors");
  for (const std::string dtype : {"F32", "F16"}) {
    TempDir dir;
    sibyl_test::copy_model(src, dir.path());
    std::vector<StTensor> tensors = sibyl_test::parse_safetensors(original);
    for (StTensor& t : tensors) {
      t.bytes = sibyl_test::encode_floats(sibyl_test::bf16_floats(t), dtype);
      t.dtype = dtype;
    }
    sibyl_test::write_file(dir.path() / "model.safetensors", sibyl_test::encode_safetensors(tensors));
    std::shared_ptr<Model> m = Model::load(dir.path().string(), {});
    EXPECT_LT(relative_error(logits_of(m, toks, 0), want), 1e-4) << dtype;
    EXPECT_LT(relative_error(logits_of(m, toks, 2), want), 1e-4) << dtype;
  }
}

}  // namespace
}  // namespace sibyl::engine::test
