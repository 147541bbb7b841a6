// GGUF import: llama.cpp's `deepseek2` files (DeepSeek-V2/V2-Lite/V3/R1, Kimi-K2) read into a
// ModelSource — metadata to ModelConfig, tensor names to the canonical ones (shapes are GGUF
// dims reversed; bytes are used in place), and the stored tokenizer and chat template to the
// tokenizer.json / tokenizer_config.json text the engine builds them from.
// Nothing is inferred from layer counts: every size comes from the metadata or the tensors.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "engine/core/failure.h"
#include "engine/formats/gguf.h"
#include "engine/formats/model_source.h"

namespace sibyl::engine {
namespace {

using nlohmann::json;

// The pre-tokenizer of DeepSeek-V3/R1's tokenizer.json (GGUF: tokenizer.ggml.pre = "deepseek-v3").
constexpr const char* kDeepSeekV3PreTokenizer = R"json({"type": "Sequence", "pretokenizers": [
 {"type": "Split", "pattern": {"Regex": "\\p{N}{1,3}"}, "behavior": "Isolated", "invert": false},
 {"type": "Split", "pattern": {"Regex": "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+"}, "behavior": "Isolated", "invert": false},
 {"type": "Split", "pattern": {"Regex": "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"}, "behavior": "Isolated", "invert": false},
 {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]})json";

// GGUF stores float metadata as f32; Hugging Face configs hold the short decimal the f32 came
// from (1e-06, not 9.99999997e-07). The shortest decimal that rounds to the same f32 recovers it.
double short_decimal(double stored) {
  const auto f = static_cast<float>(stored);
  char buf[32];
  for (int digits = 1; digits <= 9; ++digits) {
    std::snprintf(buf, sizeof buf, "%.*g", digits, static_cast<double>(f));
    if (std::strtof(buf, nullptr) == f) return std::strtod(buf, nullptr);
  }
  return stored;
}

class Meta {
 public:
  Meta(const GgufFile& f, std::string arch) : f_(f), arch_(std::move(arch)) {}
  std::string key(const char* k) const { return arch_ + "." + k; }
  bool has(const char* k) const { return f_.find(key(k)) != nullptr; }
  int64_t integer(const char* k) const {
    auto v = f_.get_int(key(k));
    if (!v) fail(Errc::format, f_.path() + ": metadata \"" + key(k) + "\" is " + (has(k) ? "not an integer" : "missing"));
    return *v;
  }
  int64_t integer_or(const char* k, int64_t fallback) const { return has(k) ? integer(k) : fallback; }
  double number_or(const char* k, double fallback) const {
    if (!has(k)) return fallback;
    auto v = f_.get_float(key(k));
    if (!v) fail(Errc::format, f_.path() + ": metadata \"" + key(k) + "\" is not a number");
    return short_decimal(*v);
  }
  bool boolean_or(const char* k, bool fallback) const {
    if (!has(k)) return fallback;
    auto v = f_.get_bool(key(k));
    if (!v) fail(Errc::format, f_.path() + ": metadata \"" + key(k) + "\" is not a boolean");
    return *v;
  }
  std::string string_or(const char* k, const std::string& fallback) const {
    if (!has(k)) return fallback;
    auto v = f_.get_string(key(k));
    if (!v) fail(Errc::format, f_.path() + ": metadata \"" + key(k) + "\" is not a string");
    return std::string(*v);
  }

 private:
  const GgufFile& f_;
  std::string arch_;
};

bool has_tensor_suffix(const GgufFile& f, const std::string& suffix) {
  for (const auto& t : f.tensors())
    if (t.name.ends_with(suffix)) return true;
  return false;
}

// Head dimensions: newer files store attention in its MQA (absorbed) form, with the per-head
// sizes under *_mla keys; older ones (attn_kv_b) store them in key_length/value_length.
void read_head_dims(const GgufFile& f, const Meta& m, ModelConfig& c) {
  c.qk_rope_head_dim = m.integer("rope.dimension_count");
  if (m.has("attention.key_length_mla")) {
    c.qk_nope_head_dim = m.integer("attention.key_length_mla") - c.qk_rope_head_dim;
    c.v_head_dim = m.integer("attention.value_length_mla");
  } else if (const auto* kb = f.tensor("blk.0.attn_k_b.weight"); kb && kb->dims.size() == 3) {
    const auto* vb = f.tensor("blk.0.attn_v_b.weight");
    if (!vb || vb->dims.size() != 3) fail(Errc::format, f.path() + ": blk.0.attn_k_b without a 3-D blk.0.attn_v_b");
    c.qk_nope_head_dim = kb->dims[0];
    c.v_head_dim = vb->dims[1];
  } else {
    c.qk_nope_head_dim = m.integer("attention.key_length") - c.qk_rope_head_dim;
    c.v_head_dim = m.integer("attention.value_length");
  }
}

void read_moe(const GgufFile& f, const Meta& m, ModelConfig& c) {
  c.n_routed_experts = m.integer_or("expert_count", 0);
  if (c.n_routed_experts == 0) return;
  c.n_shared_experts = m.integer_or("expert_shared_count", 0);
  c.moe_intermediate_size = m.integer("expert_feed_forward_length");
  c.n_experts_per_tok = m.integer("expert_used_count");
  c.n_group = m.integer_or("expert_group_count", 1);
  c.topk_group = m.integer_or("expert_group_used_count", 1);
  c.routed_scaling_factor = m.number_or("expert_weights_scale", 1.0);
  c.norm_topk_prob = m.boolean_or("expert_weights_norm", false);
  const int64_t gating = m.integer_or("expert_gating_func", 1);  // llama.cpp: absent means softmax
  if (gating == 0 || gating == 1)
    c.scoring = ScoringFunc::softmax;
  else if (gating == 2)
    c.scoring = ScoringFunc::sigmoid;
  else
    fail(Errc::unsupported, f.path() + ": expert_gating_func " + std::to_string(gating) +
                                " is not supported (1 = softmax, 2 = sigmoid)");
  const bool bias = has_tensor_suffix(f, ".exp_probs_b.bias");
  c.topk_method = bias ? TopkMethod::noaux_tc : c.n_group > 1 ? TopkMethod::group_limited_greedy : TopkMethod::greedy;
  if (bias || c.scoring == ScoringFunc::sigmoid) {
    c.family = Family::deepseek_v3;
    c.model_type = "deepseek_v3";
  }
}

// llama.cpp's YaRN for deepseek2: softmax scaled by mscale² with mscale = 1 + log_mul·ln(factor),
// and cos/sin unscaled — Hugging Face's formulas with mscale = mscale_all_dim = log_mul / 0.1.
void read_rope(const GgufFile& f, const Meta& m, ModelConfig& c) {
  RopeConfig& r = c.rope;
  r.theta = m.number_or("rope.freq_base", 10000.0);
  r.interleaved = true;  // llama.cpp runs deepseek2 with adjacent pairs, as Hugging Face does
  const std::string type = m.string_or("rope.scaling.type", "none");
  if (type == "none") return;
  if (type != "yarn")
    fail(Errc::unsupported, f.path() + ": rope.scaling.type \"" + type + "\" is not supported (none, yarn)");
  r.yarn = true;
  r.factor = m.number_or("rope.scaling.factor", 1.0);
  r.original_max_position_embeddings = m.integer("rope.scaling.original_context_length");
  r.beta_fast = m.number_or("rope.scaling.yarn_beta_fast", 32.0);
  r.beta_slow = m.number_or("rope.scaling.yarn_beta_slow", 1.0);
  const double log_mul = m.number_or("rope.scaling.yarn_log_multiplier", 0.0);
  if (log_mul != 0.0) {
    r.mscale = r.mscale_all_dim = short_decimal(log_mul / 0.1);
  } else {
    r.attention_factor = 1.0;  // llama.cpp cancels YaRN's cos/sin factor when no multiplier is given
  }
}

ModelConfig read_config(const GgufFile& f) {
  const std::string arch(f.get_string("general.architecture").value_or(""));
  if (arch != "deepseek2")
    fail(Errc::unsupported, f.path() + ": general.architecture is \"" + arch +
                                "\"; Sibyl imports \"deepseek2\" GGUF files (DeepSeek-V2/V3/R1, Kimi-K2)");
  const Meta m(f, arch);
  ModelConfig c;
  c.model_type = "deepseek_v2";
  c.family = Family::deepseek_v2;
  // llama.cpp counts multi-token-prediction blocks (blk.N.nextn.*) in block_count.
  c.num_nextn_predict_layers = m.integer_or("nextn_predict_layers", 0);
  c.n_layers = m.integer("block_count") - c.num_nextn_predict_layers;
  c.hidden_size = m.integer("embedding_length");
  c.intermediate_size = m.integer("feed_forward_length");
  c.n_heads = m.integer("attention.head_count");
  c.max_position_embeddings = m.integer("context_length");
  c.rms_norm_eps = m.number_or("attention.layer_norm_rms_epsilon", 1e-6);
  c.q_lora_rank = m.integer_or("attention.q_lora_rank", 0);
  c.kv_lora_rank = m.integer("attention.kv_lora_rank");
  c.first_k_dense_replace = m.integer_or("leading_dense_block_count", 0);
  read_head_dims(f, m, c);
  read_moe(f, m, c);
  read_rope(f, m, c);
  const auto* embd = f.tensor("token_embd.weight");
  if (!embd || embd->dims.size() != 2) fail(Errc::format, f.path() + ": no 2-D token_embd.weight");
  c.vocab_size = m.integer_or("vocab_size", embd->dims[1]);
  c.tie_word_embeddings = f.tensor("output.weight") == nullptr;
  c.bos_token_id = static_cast<int32_t>(f.get_int("tokenizer.ggml.bos_token_id").value_or(-1));
  if (auto eos = f.get_int("tokenizer.ggml.eos_token_id")) c.eos_token_ids.push_back(static_cast<int32_t>(*eos));
  validate_model_config(c, f.path());
  return c;
}

// GGUF tensor name → canonical name ("" when unknown: the loader then reports it by its GGUF name).
std::string canonical_name(const std::string& g) {
  static const std::map<std::string, std::string> global = {
      {"token_embd.weight", "model.embed_tokens.weight"},
      {"output_norm.weight", "model.norm.weight"},
      {"output.weight", "lm_head.weight"},
  };
  static const std::map<std::string, std::string> per_layer = {
      {"attn_norm.weight", "input_layernorm.weight"},
      {"ffn_norm.weight", "post_attention_layernorm.weight"},
      {"attn_q.weight", "self_attn.q_proj.weight"},
      {"attn_q_a.weight", "self_attn.q_a_proj.weight"},
      {"attn_q_a_norm.weight", "self_attn.q_a_layernorm.weight"},
      {"attn_q_b.weight", "self_attn.q_b_proj.weight"},
      {"attn_kv_a_mqa.weight", "self_attn.kv_a_proj_with_mqa.weight"},
      {"attn_kv_a_norm.weight", "self_attn.kv_a_layernorm.weight"},
      {"attn_kv_b.weight", "self_attn.kv_b_proj.weight"},
      {"attn_k_b.weight", "self_attn.k_b_proj.weight"},
      {"attn_v_b.weight", "self_attn.v_b_proj.weight"},
      {"attn_output.weight", "self_attn.o_proj.weight"},
      {"ffn_gate.weight", "mlp.gate_proj.weight"},
      {"ffn_up.weight", "mlp.up_proj.weight"},
      {"ffn_down.weight", "mlp.down_proj.weight"},
      {"ffn_gate_inp.weight", "mlp.gate.weight"},
      {"exp_probs_b.bias", "mlp.gate.e_score_correction_bias"},
      {"ffn_gate_exps.weight", "mlp.experts.gate_proj.weight"},
      {"ffn_up_exps.weight", "mlp.experts.up_proj.weight"},
      {"ffn_down_exps.weight", "mlp.experts.down_proj.weight"},
      {"ffn_gate_shexp.weight", "mlp.shared_experts.gate_proj.weight"},
      {"ffn_up_shexp.weight", "mlp.shared_experts.up_proj.weight"},
      {"ffn_down_shexp.weight", "mlp.shared_experts.down_proj.weight"},
      // multi-token prediction (the block's own tensors; embed_tokens and shared_head_head
      // may be absent: the main model's are used)
      {"nextn.eh_proj.weight", "eh_proj.weight"},
      {"nextn.enorm.weight", "enorm.weight"},
      {"nextn.hnorm.weight", "hnorm.weight"},
      {"nextn.embed_tokens.weight", "embed_tokens.weight"},
      {"nextn.shared_head_head.weight", "shared_head.head.weight"},
      {"nextn.shared_head_norm.weight", "shared_head.norm.weight"},
  };
  if (auto it = global.find(g); it != global.end()) return it->second;
  if (!g.starts_with("blk.")) return "";
  const size_t dot = g.find('.', 4);
  if (dot == std::string::npos || dot == 4 || dot - 4 > 6) return "";
  const std::string layer = g.substr(4, dot - 4);
  if (layer.find_first_not_of("0123456789") != std::string::npos) return "";
  auto it = per_layer.find(g.substr(dot + 1));
  return it == per_layer.end() ? "" : "model.layers." + layer + "." + it->second;
}

DType tensor_dtype(const GgufTensorInfo& t, const std::string& path) {
  switch (t.type) {
    case GgufType::F32: return DType::f32;
    case GgufType::F16: return DType::f16;
    case GgufType::BF16: return DType::bf16;
    case GgufType::Q8_0: return DType::q8_0;
    case GgufType::Q5_0: return DType::q5_0;
    case GgufType::Q4_K: return DType::q4_k;
    case GgufType::Q6_K: return DType::q6_k;
    default:
      fail(Errc::unsupported, path + ": tensor \"" + t.name + "\" is " + traits(t.type).name +
                                  "; Sibyl reads F32, F16, BF16, Q8_0, Q5_0, Q4_K and Q6_K (re-quantize with "
                                  "llama-quantize, or convert the original checkpoint with sibyl-convert)");
  }
}

void read_tensors(const GgufFile& f, ModelSource& src) {
  for (const GgufTensorInfo& t : f.tensors()) {
    TensorView v;
    const std::string canonical = canonical_name(t.name);
    v.name = canonical.empty() ? t.name : canonical;
    v.dtype = tensor_dtype(t, f.path());
    v.shape.assign(t.dims.rbegin(), t.dims.rend());  // GGUF lists the fastest-varying dim first
    v.data = t.data;
    v.nbytes = t.nbytes;
    v.file = f.path() + " (" + t.name + ")";
    if (!src.tensors.emplace(v.name, v).second)
      fail(Errc::format, f.path() + ": two tensors map to \"" + v.name + "\" (the second is " + t.name + ")");
  }
}

// GGUF strings are meant to be UTF-8; JSON cannot hold anything else.
std::string dump_json(const json& j, const std::string& path) {
  try {
    return j.dump();
  } catch (const json::exception& e) {
    fail(Errc::format, path + ": tokenizer metadata is not valid UTF-8 (" + e.what() + ")");
  }
}

// tokenizer.ggml.* → tokenizer.json; chat template → tokenizer_config.json. A tokenizer the
// engine cannot run leaves the model usable with token ids, saying why.
void read_text(const GgufFile& f, ModelSource& src) {
  const std::string model(f.get_string("tokenizer.ggml.model").value_or(""));
  const std::string pre(f.get_string("tokenizer.ggml.pre").value_or(""));
  const auto* tokens = f.get_strings("tokenizer.ggml.tokens");
  if (model.empty() || !tokens) {
    src.text_missing = f.path() + " stores no tokenizer (tokenizer.ggml.*); use token ids";
    return;
  }
  if (model != "gpt2" || pre != "deepseek-v3") {
    src.text_missing = f.path() + ": its tokenizer (model \"" + model + "\", pre-tokenizer \"" + pre +
                       "\") is not supported yet — Sibyl reads byte-level BPE with the deepseek-v3 "
                       "pre-tokenizer; use token ids";
    return;
  }
  const auto types = f.get_ints("tokenizer.ggml.token_type");
  const auto* merges = f.get_strings("tokenizer.ggml.merges");
  if (!types || types->size() != tokens->size() || !merges)
    fail(Errc::format, f.path() + ": tokenizer.ggml.token_type or merges missing or of the wrong length");
  json vocab = json::object(), added = json::array();
  for (size_t id = 0; id < tokens->size(); ++id) {
    const std::string text((*tokens)[id]);
    const int64_t type = (*types)[id];
    if (type == 3 || type == 4) {  // control / user-defined: matched in the raw text
      added.push_back({{"id", id}, {"content", text}, {"single_word", false}, {"lstrip", false}, {"rstrip", false},
                       {"normalized", false}, {"special", type == 3}});
    } else if (type != 5) {  // 5: unused padding entries, not part of the tokenizer
      vocab[text] = id;
    }
  }
  json merge_list = json::array();
  for (std::string_view m : *merges) merge_list.push_back(std::string(m));
  json tok = {{"version", "1.0"},
              {"added_tokens", added},
              {"normalizer", nullptr},
              {"pre_tokenizer", json::parse(kDeepSeekV3PreTokenizer)},
              {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}}},
              {"model",
               {{"type", "BPE"}, {"vocab", vocab}, {"merges", merge_list}, {"ignore_merges", false},
                {"byte_fallback", false}}}};
  src.tokenizer_json = dump_json(tok, f.path());

  const auto tpl = f.get_string("tokenizer.chat_template");
  if (!tpl) {
    src.text_missing = f.path() + " has no tokenizer.chat_template; chat is unavailable";
    return;
  }
  auto token_text = [&](const char* key) -> std::string {
    auto id = f.get_int(key);
    return id && *id >= 0 && static_cast<size_t>(*id) < tokens->size() ? std::string((*tokens)[*id]) : "";
  };
  json cfg = {{"chat_template", std::string(*tpl)},
              {"bos_token", token_text("tokenizer.ggml.bos_token_id")},
              {"eos_token", token_text("tokenizer.ggml.eos_token_id")}};
  src.tokenizer_config_json = dump_json(cfg, f.path());
}

}  // namespace

std::unique_ptr<ModelSource> open_gguf(const std::string& path) {
  auto file = std::make_shared<GgufFile>(path);
  auto src = std::make_unique<ModelSource>();
  src->path = path;
  src->format = "GGUF";
  src->config = read_config(*file);
  read_tensors(*file, *src);
  read_text(*file, *src);
  src->keep_alive.push_back(file);
  return src;
}

}  // namespace sibyl::engine
