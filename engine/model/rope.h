// RoPE / YaRN tables and the attention scale, computed the way the reference does
// (Hugging Face transformers' YaRN in float32; DeepSeek's mscale²).
#pragma once
#include <vector>

#include "engine/model/config.h"

namespace sibyl::engine {

struct RopeSetup {
  std::vector<float> inv_freq;   // [qk_rope_head_dim / 2], frequency of pair i
  float attention_factor = 1.0f; // multiplies cos and sin
  float softmax_scale = 1.0f;    // 1/sqrt(qk_head_dim) · mscale(factor, mscale_all_dim)²
};

RopeSetup compute_rope(const ModelConfig& config);

// 0.1 · m · ln(scale) + 1, or 1 when scale <= 1 (YaRN's magnitude correction).
double yarn_mscale(double scale, double m);

}  // namespace sibyl::engine
