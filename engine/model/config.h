// Model configuration of the DeepSeek V2/V3 family, read from a Hugging Face config.json.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace sibyl::engine {

enum class Family { deepseek_v2, deepseek_v3 };
enum class ScoringFunc { softmax, sigmoid };
enum class TopkMethod { greedy, group_limited_greedy, noaux_tc };

// RoPE after reading either config form; only "default" and "yarn" exist in this family.
struct RopeConfig {
  bool yarn = false;
  double theta = 10000.0;
  double factor = 1.0;
  double beta_fast = 32.0;
  double beta_slow = 1.0;
  double mscale = 0.0;          // 0 when absent
  double mscale_all_dim = 0.0;  // 0 when absent
  double attention_factor = 0.0;  // explicit override of the cos/sin factor; 0 when absent
  bool truncate = true;
  int64_t original_max_position_embeddings = 0;
  bool interleaved = true;      // rotate pairs (2i, 2i+1); false: halves (i, i + d/2)
};

struct ModelConfig {
  std::string model_type;  // as written in config.json
  Family family = Family::deepseek_v3;
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t n_layers = 0;
  int64_t n_heads = 0;
  int64_t q_lora_rank = 0;  // 0: full-rank q_proj
  int64_t kv_lora_rank = 0;
  int64_t qk_nope_head_dim = 0;
  int64_t qk_rope_head_dim = 0;
  int64_t v_head_dim = 0;
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  bool tie_word_embeddings = false;

  // MoE
  int64_t n_routed_experts = 0;  // 0: every layer dense
  int64_t n_shared_experts = 0;
  int64_t moe_intermediate_size = 0;
  int64_t n_experts_per_tok = 0;
  int64_t first_k_dense_replace = 0;
  int64_t moe_layer_freq = 1;
  int64_t n_group = 1;
  int64_t topk_group = 1;
  bool norm_topk_prob = false;
  double routed_scaling_factor = 1.0;
  ScoringFunc scoring = ScoringFunc::softmax;
  TopkMethod topk_method = TopkMethod::greedy;

  int64_t num_nextn_predict_layers = 0;  // MTP layers: accepted, unused
  // FP8 checkpoints (quantization_config.quant_method "fp8"): the weight_block_size of the
  // per-block scales; 0 when the checkpoint is not quantized.
  int64_t fp8_block_rows = 0, fp8_block_cols = 0;
  int32_t bos_token_id = -1;
  std::vector<int32_t> eos_token_ids;

  RopeConfig rope;

  int64_t qk_head_dim() const { return qk_nope_head_dim + qk_rope_head_dim; }
  int64_t kv_width() const { return kv_lora_rank + qk_rope_head_dim; }  // latent cache row
};

// Parses config.json text; `source` names the file in error messages.
ModelConfig parse_model_config(const std::string& json_text, const std::string& source);
ModelConfig load_model_config(const std::string& path);
// Range checks every field (the caps parse_model_config applies); Errc::format naming the field.
// For configs built from other sources (GGUF metadata, a .sibyl manifest).
void validate_model_config(const ModelConfig& c, const std::string& source);

}  // namespace sibyl::engine
