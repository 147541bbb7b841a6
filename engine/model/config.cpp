#include "engine/model/config.h"

#include <cmath>
#include <nlohmann/json.hpp>

#include "engine/core/failure.h"
#include "engine/formats/file_util.h"

namespace sibyl::engine {
namespace {

using nlohmann::json;

constexpr int64_t kMaxDim = 1 << 20;       // hidden sizes, ranks, head dims, intermediate sizes
constexpr int64_t kMaxCount = 1 << 16;     // layers, heads, experts, groups
constexpr int64_t kMaxVocab = 1 << 24;
constexpr int64_t kMaxPositions = 1 << 30; // positions are int32 inside the engine

class Reader {
 public:
  Reader(const json& j, std::string source) : j_(j), source_(std::move(source)) {}

  [[noreturn]] void bad(const std::string& key, const std::string& why) const {
    fail(Errc::format, source_ + ": \"" + key + "\" " + why);
  }
  [[noreturn]] void unsupported(const std::string& key, const std::string& why) const {
    fail(Errc::unsupported, source_ + ": \"" + key + "\" " + why);
  }
  bool has(const char* key) const { return j_.contains(key) && !j_.at(key).is_null(); }

  int64_t integer(const char* key) const {
    if (!has(key)) bad(key, "is required");
    const json& v = j_.at(key);
    if (!v.is_number_integer()) bad(key, "must be an integer");
    return v.get<int64_t>();
  }
  // Sizes are capped so that every product the engine forms of them fits easily in 64 bits.
  int64_t positive(const char* key, int64_t cap = kMaxDim) const {
    int64_t v = integer(key);
    if (v <= 0) bad(key, "must be positive, got " + std::to_string(v));
    if (v > cap) bad(key, "is " + std::to_string(v) + ", more than Sibyl supports (" + std::to_string(cap) + ")");
    return v;
  }
  int64_t count_or(const char* key, int64_t fallback, int64_t cap) const {
    if (!has(key)) return fallback;
    int64_t v = integer(key);
    if (v < 0 || v > cap) bad(key, "must be in [0, " + std::to_string(cap) + "], got " + std::to_string(v));
    return v;
  }
  int64_t integer_or(const char* key, int64_t fallback) const { return has(key) ? integer(key) : fallback; }
  double number_or(const char* key, double fallback) const {
    if (!has(key)) return fallback;
    const json& v = j_.at(key);
    if (!v.is_number()) bad(key, "must be a number");
    return v.get<double>();
  }
  bool boolean_or(const char* key, bool fallback) const {
    if (!has(key)) return fallback;
    const json& v = j_.at(key);
    if (!v.is_boolean()) bad(key, "must be true or false");
    return v.get<bool>();
  }
  std::string string_or(const char* key, const std::string& fallback) const {
    if (!has(key)) return fallback;
    const json& v = j_.at(key);
    if (!v.is_string()) bad(key, "must be a string");
    return v.get<std::string>();
  }

 private:
  const json& j_;
  std::string source_;
};

RopeConfig parse_rope(const json& root, const Reader& top, const std::string& source, Family family) {
  RopeConfig rope;
  rope.theta = top.number_or("rope_theta", 10000.0);
  rope.interleaved = family == Family::deepseek_v2 ? true : top.boolean_or("rope_interleave", true);
  // transformers 5 writes rope_parameters (with rope_theta inside); older configs rope_scaling.
  const char* key = root.contains("rope_parameters") && !root["rope_parameters"].is_null() ? "rope_parameters"
                    : root.contains("rope_scaling") && !root["rope_scaling"].is_null() ? "rope_scaling"
                                                                                       : nullptr;
  if (!key) return rope;
  const json& params = root[key];
  if (!params.is_object()) top.bad(key, "must be an object");
  Reader r(params, source + " " + key);
  rope.theta = r.number_or("rope_theta", rope.theta);
  std::string type = r.string_or("rope_type", r.string_or("type", "default"));
  if (type == "default") return rope;
  if (type != "yarn")
    r.unsupported("rope_type", "is \"" + type + "\"; this model family uses only \"yarn\" or \"default\"");
  rope.yarn = true;
  rope.beta_fast = r.number_or("beta_fast", 32.0);
  rope.beta_slow = r.number_or("beta_slow", 1.0);
  rope.mscale = r.number_or("mscale", 0.0);
  rope.mscale_all_dim = r.number_or("mscale_all_dim", 0.0);
  rope.attention_factor = r.number_or("attention_factor", 0.0);
  rope.truncate = r.boolean_or("truncate", true);
  rope.original_max_position_embeddings =
      r.integer_or("original_max_position_embeddings", top.integer_or("max_position_embeddings", 0));
  if (rope.original_max_position_embeddings <= 0) r.bad("original_max_position_embeddings", "must be positive");
  // Without an explicit factor, YaRN's is the context extension ratio (as transformers does).
  rope.factor = r.number_or("factor", static_cast<double>(top.integer_or("max_position_embeddings", 0)) /
                                          static_cast<double>(rope.original_max_position_embeddings));
  if (!(rope.factor > 0)) r.bad("factor", "must be positive");
  return rope;
}

ScoringFunc parse_scoring(const Reader& r, Family family) {
  std::string s = r.string_or("scoring_func", family == Family::deepseek_v3 ? "sigmoid" : "softmax");
  if (s == "softmax") return ScoringFunc::softmax;
  if (s == "sigmoid") return ScoringFunc::sigmoid;
  r.unsupported("scoring_func", "is \"" + s + "\"; supported: softmax, sigmoid");
}

TopkMethod parse_topk_method(const Reader& r, Family family) {
  std::string s = r.string_or("topk_method", family == Family::deepseek_v3 ? "noaux_tc" : "greedy");
  if (s == "greedy") return TopkMethod::greedy;
  if (s == "group_limited_greedy") return TopkMethod::group_limited_greedy;
  if (s == "noaux_tc") return TopkMethod::noaux_tc;
  r.unsupported("topk_method", "is \"" + s + "\"; supported: greedy, group_limited_greedy, noaux_tc");
}

void parse_special_tokens(const json& root, ModelConfig& c, const Reader& r) {
  auto token = [&](const json& v, const char* key) {
    if (!v.is_number_integer()) r.bad(key, "must hold integers");
    int64_t id = v.get<int64_t>();
    if (id < 0 || id >= c.vocab_size) r.bad(key, "is outside the vocabulary");
    return static_cast<int32_t>(id);
  };
  if (r.has("bos_token_id")) c.bos_token_id = token(root["bos_token_id"], "bos_token_id");
  if (!r.has("eos_token_id")) return;
  const json& eos = root["eos_token_id"];
  if (eos.is_number_integer()) {
    c.eos_token_ids.push_back(token(eos, "eos_token_id"));
  } else if (eos.is_array()) {
    for (const json& e : eos) c.eos_token_ids.push_back(token(e, "eos_token_id"));
  } else {
    r.bad("eos_token_id", "must be an integer or a list of integers");
  }
}

// DeepSeek's FP8 release format is the one quantization a config.json can declare here.
void parse_quantization(const json& q, ModelConfig& c, const std::string& source) {
  if (!q.is_object()) fail(Errc::format, source + ": \"quantization_config\" must be an object");
  Reader r(q, source + " quantization_config");
  const std::string method = r.string_or("quant_method", "");
  if (method != "fp8")
    r.unsupported("quant_method", "is \"" + method + "\"; Sibyl reads FP8 block-quantized checkpoints (\"fp8\")");
  const std::string fmt = r.string_or("fmt", "e4m3");
  if (fmt != "e4m3") r.unsupported("fmt", "is \"" + fmt + "\"; only e4m3 is supported");
  const json* block = q.contains("weight_block_size") ? &q["weight_block_size"] : nullptr;
  if (!block || !block->is_array() || block->size() != 2 || !(*block)[0].is_number_integer() ||
      !(*block)[1].is_number_integer() || (*block)[0].get<int64_t>() <= 0 || (*block)[1].get<int64_t>() <= 0 ||
      (*block)[0].get<int64_t>() > kMaxDim || (*block)[1].get<int64_t>() > kMaxDim)
    r.bad("weight_block_size", "must be two positive integers (rows, columns of a scale block)");
  c.fp8_block_rows = (*block)[0].get<int64_t>();
  c.fp8_block_cols = (*block)[1].get<int64_t>();
}

void validate(const ModelConfig& c, const Reader& r) {
  if (c.n_routed_experts > 0) {
    if (c.n_experts_per_tok <= 0 || c.n_experts_per_tok > c.n_routed_experts)
      r.bad("num_experts_per_tok", "must be in [1, n_routed_experts]");
    if (c.n_group <= 0 || c.n_routed_experts % c.n_group != 0)
      r.bad("n_group", "must divide n_routed_experts");
    if (c.topk_group <= 0 || c.topk_group > c.n_group) r.bad("topk_group", "must be in [1, n_group]");
    if (c.moe_layer_freq <= 0) r.bad("moe_layer_freq", "must be positive");
  }
  if (c.qk_rope_head_dim % 2 != 0) r.bad("qk_rope_head_dim", "must be even");
  if (!(c.rms_norm_eps > 0)) r.bad("rms_norm_eps", "must be positive");
}

}  // namespace

ModelConfig parse_model_config(const std::string& text, const std::string& source) {
  json root = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) fail(Errc::format, source + ": not valid JSON");
  if (!root.is_object()) fail(Errc::format, source + ": must be a JSON object");
  Reader r(root, source);

  ModelConfig c;
  c.model_type = r.string_or("model_type", "");
  if (c.model_type == "deepseek_v2")
    c.family = Family::deepseek_v2;
  else if (c.model_type == "deepseek_v3" || c.model_type == "kimi_k2")
    c.family = Family::deepseek_v3;
  else if (c.model_type.empty())
    r.bad("model_type", "is required");
  else
    r.unsupported("model_type", "is \"" + c.model_type + "\"; Sibyl runs the DeepSeek V2/V3 family "
                  "(deepseek_v2, deepseek_v3, kimi_k2)");

  std::string act = r.string_or("hidden_act", "silu");
  if (act != "silu") r.unsupported("hidden_act", "is \"" + act + "\"; the DeepSeek family uses \"silu\"");
  if (r.boolean_or("attention_bias", false)) r.unsupported("attention_bias", "true is not supported");
  if (r.boolean_or("mlp_bias", false)) r.unsupported("mlp_bias", "true is not supported");
  if (r.has("quantization_config")) parse_quantization(root["quantization_config"], c, source);

  c.vocab_size = r.positive("vocab_size", kMaxVocab);
  c.hidden_size = r.positive("hidden_size");
  c.intermediate_size = r.positive("intermediate_size");
  c.n_layers = r.positive("num_hidden_layers", kMaxCount);
  c.n_heads = r.positive("num_attention_heads", kMaxCount);
  c.q_lora_rank = r.has("q_lora_rank") ? r.positive("q_lora_rank") : 0;
  c.kv_lora_rank = r.positive("kv_lora_rank");
  c.qk_nope_head_dim = r.positive("qk_nope_head_dim");
  c.qk_rope_head_dim = r.positive("qk_rope_head_dim");
  c.v_head_dim = r.positive("v_head_dim");
  c.max_position_embeddings = r.positive("max_position_embeddings", kMaxPositions);
  c.rms_norm_eps = r.number_or("rms_norm_eps", 1e-6);
  c.tie_word_embeddings = r.boolean_or("tie_word_embeddings", false);

  c.n_routed_experts = r.count_or("n_routed_experts", 0, kMaxCount);
  c.n_shared_experts = r.count_or("n_shared_experts", 0, kMaxCount);
  c.first_k_dense_replace = r.count_or("first_k_dense_replace", 0, kMaxCount);
  c.moe_layer_freq = r.count_or("moe_layer_freq", 1, kMaxCount);
  if (c.n_routed_experts > 0) {
    c.moe_intermediate_size = r.positive("moe_intermediate_size");
    c.n_experts_per_tok = r.positive("num_experts_per_tok", kMaxCount);
    c.n_group = r.count_or("n_group", 1, kMaxCount);
    c.topk_group = r.count_or("topk_group", 1, kMaxCount);
    c.norm_topk_prob = r.boolean_or("norm_topk_prob", false);
    c.routed_scaling_factor = r.number_or("routed_scaling_factor", 1.0);
    c.scoring = parse_scoring(r, c.family);
    c.topk_method = parse_topk_method(r, c.family);
  }
  c.num_nextn_predict_layers = r.count_or("num_nextn_predict_layers", 0, kMaxCount);
  parse_special_tokens(root, c, r);
  c.rope = parse_rope(root, r, source, c.family);
  validate(c, r);
  validate_model_config(c, source);
  return c;
}

void validate_model_config(const ModelConfig& c, const std::string& source) {
  auto range = [&](const char* key, int64_t v, int64_t lo, int64_t hi) {
    if (v < lo || v > hi)
      fail(Errc::format, source + ": " + key + " is " + std::to_string(v) + "; must be in [" + std::to_string(lo) +
                             ", " + std::to_string(hi) + "]");
  };
  range("vocab_size", c.vocab_size, 1, kMaxVocab);
  range("hidden_size", c.hidden_size, 1, kMaxDim);
  range("intermediate_size", c.intermediate_size, 1, kMaxDim);
  range("num_hidden_layers", c.n_layers, 1, kMaxCount);
  range("num_attention_heads", c.n_heads, 1, kMaxCount);
  range("q_lora_rank", c.q_lora_rank, 0, kMaxDim);
  range("kv_lora_rank", c.kv_lora_rank, 1, kMaxDim);
  range("qk_nope_head_dim", c.qk_nope_head_dim, 1, kMaxDim);
  range("qk_rope_head_dim", c.qk_rope_head_dim, 1, kMaxDim);
  range("v_head_dim", c.v_head_dim, 1, kMaxDim);
  range("max_position_embeddings", c.max_position_embeddings, 1, kMaxPositions);
  range("n_routed_experts", c.n_routed_experts, 0, kMaxCount);
  range("n_shared_experts", c.n_shared_experts, 0, kMaxCount);
  range("first_k_dense_replace", c.first_k_dense_replace, 0, kMaxCount);
  range("moe_layer_freq", c.moe_layer_freq, 0, kMaxCount);
  range("num_nextn_predict_layers", c.num_nextn_predict_layers, 0, kMaxCount);
  range("rope original_max_position_embeddings", c.rope.original_max_position_embeddings, 0, kMaxPositions);
  if (c.n_routed_experts > 0) {
    range("moe_intermediate_size", c.moe_intermediate_size, 1, kMaxDim);
    range("num_experts_per_tok", c.n_experts_per_tok, 1, c.n_routed_experts);
    range("n_group", c.n_group, 1, c.n_routed_experts);
    range("topk_group", c.topk_group, 1, c.n_group);
    range("moe_layer_freq", c.moe_layer_freq, 1, kMaxCount);
    if (c.n_routed_experts % c.n_group != 0) fail(Errc::format, source + ": n_group must divide n_routed_experts");
  }
  range("fp8 weight_block_size rows", c.fp8_block_rows, 0, kMaxDim);
  range("fp8 weight_block_size cols", c.fp8_block_cols, c.fp8_block_rows > 0 ? 1 : 0, kMaxDim);
  if (c.qk_rope_head_dim % 2 != 0) fail(Errc::format, source + ": qk_rope_head_dim must be even");
  auto finite_positive = [&](const char* key, double v) {
    if (!(v > 0) || !std::isfinite(v)) fail(Errc::format, source + ": " + key + " must be a positive finite number");
  };
  finite_positive("rms_norm_eps", c.rms_norm_eps);
  finite_positive("rope theta", c.rope.theta);
  finite_positive("rope factor", c.rope.factor);
  if (!std::isfinite(c.routed_scaling_factor) || !std::isfinite(c.rope.beta_fast) || !std::isfinite(c.rope.beta_slow) ||
      !std::isfinite(c.rope.mscale) || !std::isfinite(c.rope.mscale_all_dim) || !std::isfinite(c.rope.attention_factor))
    fail(Errc::format, source + ": a scaling or RoPE parameter is not finite");
  if (c.bos_token_id < -1 || c.bos_token_id >= c.vocab_size) fail(Errc::format, source + ": bos_token_id out of range");
  for (int32_t id : c.eos_token_ids)
    if (id < 0 || id >= c.vocab_size) fail(Errc::format, source + ": eos_token_id " + std::to_string(id) + " out of range");
}

ModelConfig load_model_config(const std::string& path) { return parse_model_config(read_text_file(path), path); }

}  // namespace sibyl::engine
