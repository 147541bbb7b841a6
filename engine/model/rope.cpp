#include "engine/model/rope.h"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace sibyl::engine {

double yarn_mscale(double scale, double m) { return scale <= 1.0 ? 1.0 : 0.1 * m * std::log(scale) + 1.0; }

namespace {

// Dimension index at which a frequency completes `rotations` turns over `max_pos` tokens.
double correction_dim(double rotations, double dim, double base, double max_pos) {
  return dim * std::log(max_pos / (rotations * 2.0 * std::numbers::pi)) / (2.0 * std::log(base));
}

}  // namespace

RopeSetup compute_rope(const ModelConfig& c) {
  const RopeConfig& r = c.rope;
  const int64_t dim = c.qk_rope_head_dim, half = dim / 2;
  RopeSetup s;
  s.inv_freq.resize(static_cast<size_t>(half));
  s.softmax_scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(c.qk_head_dim())));
  const float base = static_cast<float>(r.theta);
  for (int64_t i = 0; i < half; ++i) {
    float pos_freq = std::pow(base, static_cast<float>(2 * i) / static_cast<float>(dim));
    s.inv_freq[i] = 1.0f / pos_freq;
  }
  if (!r.yarn) return s;

  // YaRN: blend interpolated (/factor) and original frequencies over a ramp of dims.
  const float factor = static_cast<float>(r.factor);
  double low = correction_dim(r.beta_fast, dim, r.theta, static_cast<double>(r.original_max_position_embeddings));
  double high = correction_dim(r.beta_slow, dim, r.theta, static_cast<double>(r.original_max_position_embeddings));
  if (r.truncate) {
    low = std::floor(low);
    high = std::ceil(high);
  }
  low = std::max(low, 0.0);
  high = std::min(high, static_cast<double>(dim - 1));
  if (low == high) high += 0.001;  // avoid a zero-width ramp
  for (int64_t i = 0; i < half; ++i) {
    float pos_freq = std::pow(base, static_cast<float>(2 * i) / static_cast<float>(dim));
    float extrapolation = 1.0f / pos_freq;
    float interpolation = 1.0f / (factor * pos_freq);
    float ramp = std::clamp(static_cast<float>((static_cast<float>(i) - low) / (high - low)), 0.0f, 1.0f);
    float keep = 1.0f - ramp;  // weight of the original frequency
    s.inv_freq[i] = interpolation * (1.0f - keep) + extrapolation * keep;
  }

  if (r.attention_factor > 0)
    s.attention_factor = static_cast<float>(r.attention_factor);
  else if (r.mscale != 0 && r.mscale_all_dim != 0)
    s.attention_factor = static_cast<float>(yarn_mscale(r.factor, r.mscale) / yarn_mscale(r.factor, r.mscale_all_dim));
  else
    s.attention_factor = static_cast<float>(yarn_mscale(r.factor, 1.0));

  if (r.mscale_all_dim != 0) {
    double m = yarn_mscale(r.factor, r.mscale_all_dim);
    s.softmax_scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(c.qk_head_dim())) * m * m);
  }
  return s;
}

}  // namespace sibyl::engine
