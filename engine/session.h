// One conversation over a model: token history, latent KV cache, logits, RNG.
// Holds the model weakly: once the model is gone every call fails with
// Errc::model_destroyed, and the session can still be destroyed safely.
#pragma once
#include <functional>
#include <memory>
#include <vector>

#include "model.h"
#include "sampler.h"

namespace sibyl::engine {

struct SessionOptions {
  int64_t max_context = 0;  // 0: the model's max_position_embeddings
  uint64_t seed = 0;
};

struct GenerateParams {
  int64_t max_new_tokens = 256;
  bool stop_at_eos = true;
  bool reseed = false;
  uint64_t seed = 0;
  SamplerParams sampler;
};

class Session {
 public:
  Session(const std::shared_ptr<Model>& model, const SessionOptions& options);
  ~Session();

  // Runs the tokens through the model; on failure the session is unchanged.
  void append(const int32_t* tokens, int64_t n, LogitsMode mode, AttentionPath path = AttentionPath::automatic,
              StepObserver* observer = nullptr);
  const std::vector<float>& logits() const { return logits_; }
  int64_t logits_rows() const { return logits_rows_; }
  int64_t vocab_size() const { return vocab_; }
  int64_t position() const { return static_cast<int64_t>(tokens_.size()); }
  const std::vector<int32_t>& tokens() const { return tokens_; }
  const std::vector<int32_t>& eos_tokens() const { return eos_; }

  // Throws Errc::model_destroyed once the model is gone.
  void ensure_model_alive() const { lock_model(); }
  std::shared_ptr<Model> model() const { return lock_model(); }

  void rewind(int64_t position);
  void reset();
  void set_seed(uint64_t seed) { rng_.seed_with(seed); }
  int32_t sample(const SamplerParams& params);

  // Counts generated tokens in `generated` (also when it throws); on_token returning true stops.
  void generate(const int32_t* prompt, int64_t n_prompt, const GenerateParams& params,
                const std::function<bool(int32_t)>& on_token, int64_t& generated);

 private:
  std::shared_ptr<Model> lock_model() const;

  std::weak_ptr<Model> model_;
  std::shared_ptr<backend::Backend> backend_;  // outlives cache_
  std::unique_ptr<backend::KvCache> cache_;
  std::vector<int32_t> eos_;
  int64_t vocab_;
  int64_t max_context_;
  uint64_t seed_;
  std::vector<int32_t> tokens_;
  std::vector<float> logits_;
  int64_t logits_rows_ = 0;
  Rng rng_;
};

}  // namespace sibyl::engine
