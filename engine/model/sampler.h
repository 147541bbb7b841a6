// Token sampling: repetition penalty, temperature, top-k, top-p, min-p, seeded draw.
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

namespace sibyl::engine {

// xoshiro256** seeded through splitmix64: same seed, same stream, on every platform.
class Rng {
 public:
  explicit Rng(uint64_t seed = 0) { seed_with(seed); }
  void seed_with(uint64_t seed);
  uint64_t next();
  double uniform();  // [0, 1)
  void state(uint64_t out[4]) const { for (int i = 0; i < 4; ++i) out[i] = s_[i]; }
  void set_state(const uint64_t in[4]) { for (int i = 0; i < 4; ++i) s_[i] = in[i]; }

 private:
  uint64_t s_[4];
};

struct SamplerParams {
  float temperature = 0.0f;  // <= 0: greedy
  int32_t top_k = 0;
  float top_p = 1.0f;
  float min_p = 0.0f;
  float repetition_penalty = 1.0f;
  int32_t repetition_last_n = 0;  // 0: whole history
  // When set, only ids with allowed[id] can be drawn (e.g. ids the tokenizer can print).
  const std::vector<bool>* allowed = nullptr;
  // When set, only ids whose bit is set can be drawn, whatever the temperature (a grammar's
  // mask: bit id of word id / 64); ids past its end are banned.
  const std::vector<uint64_t>* constraint = nullptr;
  // Added to the logits before anything else (-infinity bans the token); ids in range.
  std::vector<std::pair<int32_t, float>> logit_bias;
};

// Chooses a token from `logits` [vocab]; `history` is the session's context.
int32_t sample_token(const float* logits, int64_t vocab, const SamplerParams& params,
                     const std::vector<int32_t>& history, Rng& rng);

// The same choice when a draft token is on offer (speculative decoding): greedy picks the
// argmax as always; sampling accepts the draft with its probability p(draft) and otherwise
// draws from p without the draft, renormalised — so the token is distributed exactly as
// sample_token's.
int32_t sample_token_with_draft(const float* logits, int64_t vocab, const SamplerParams& params,
                                const std::vector<int32_t>& history, Rng& rng, int32_t draft);

}  // namespace sibyl::engine
