#include "session.h"

#include <algorithm>
#include <limits>

#include "failure.h"

namespace sibyl::engine {

Session::Session(const std::shared_ptr<Model>& model, const SessionOptions& options)
    : model_(model), backend_(model->backend()), rng_(options.seed) {
  const ModelConfig& c = model->config();
  cache_ = backend_->create_kv_cache(c.n_layers, c.kv_width());
  eos_ = c.eos_token_ids;
  vocab_ = c.vocab_size;
  max_context_ = options.max_context > 0 ? options.max_context : c.max_position_embeddings;
  if (max_context_ > std::numeric_limits<int32_t>::max())  // positions are int32 on every backend
    fail(Errc::invalid_argument, "max_context " + std::to_string(max_context_) + " exceeds 2^31 - 1 tokens");
  seed_ = options.seed;
}

Session::~Session() = default;

std::shared_ptr<Model> Session::lock_model() const {
  std::shared_ptr<Model> m = model_.lock();
  if (!m) fail(Errc::model_destroyed, "the session's model was destroyed; only sibyl_session_destroy is valid now");
  return m;
}

void Session::append(const int32_t* tokens, int64_t n, LogitsMode mode, AttentionPath path, StepObserver* observer) {
  std::shared_ptr<Model> model = lock_model();
  if (n == 0) return;
  if (n < 0) fail(Errc::invalid_argument, "negative token count");
  if (!tokens) fail(Errc::invalid_argument, "tokens is NULL but n_tokens is " + std::to_string(n));
  const int64_t pos0 = position();
  if (n > max_context_ - pos0)  // before reading the tokens: n may be larger than the caller's array
    fail(Errc::context_full, "appending " + std::to_string(n) + " tokens at position " + std::to_string(pos0) +
                                 " exceeds the session's max_context of " + std::to_string(max_context_));
  for (int64_t i = 0; i < n; ++i)
    if (tokens[i] < 0 || tokens[i] >= vocab_)
      fail(Errc::invalid_token, "token " + std::to_string(tokens[i]) + " at index " + std::to_string(i) +
                                    " is outside the vocabulary [0, " + std::to_string(vocab_) + ")");
  cache_->reserve(pos0 + n);
  std::vector<float> out;
  model->forward(*cache_, tokens, n, pos0, mode, path, out, observer);
  tokens_.insert(tokens_.end(), tokens, tokens + n);
  logits_ = std::move(out);
  logits_rows_ = static_cast<int64_t>(logits_.size()) / vocab_;
}

void Session::rewind(int64_t position) {
  lock_model();
  if (position < 0 || position > this->position())
    fail(Errc::invalid_argument, "cannot rewind to position " + std::to_string(position) +
                                     ": the session holds " + std::to_string(this->position()) + " tokens");
  tokens_.resize(static_cast<size_t>(position));  // cache rows past it are simply overwritten later
  logits_.clear();
  logits_rows_ = 0;
}

void Session::reset() {
  rewind(0);
  rng_.seed_with(seed_);
}

int32_t Session::sample(const SamplerParams& params) {
  lock_model();
  if (logits_rows_ == 0) fail(Errc::no_logits, "no logits to sample from: append tokens (with logits) first");
  const float* last = logits_.data() + (logits_rows_ - 1) * vocab_;
  return sample_token(last, vocab_, params, tokens_, rng_);
}

void Session::generate(const int32_t* prompt, int64_t n_prompt, const GenerateParams& params,
                       const std::function<bool(int32_t)>& on_token, int64_t& generated) {
  generated = 0;
  lock_model();
  if (n_prompt > 0) append(prompt, n_prompt, LogitsMode::last);  // validates before anything changes
  if (params.reseed) rng_.seed_with(params.seed);
  while (generated < params.max_new_tokens) {
    if (position() >= max_context_)
      fail(Errc::context_full, "the session reached its max_context of " + std::to_string(max_context_) +
                                   " tokens after generating " + std::to_string(generated));
    int32_t token = sample(params.sampler);
    ++generated;
    bool stop = on_token && on_token(token);
    append(&token, 1, LogitsMode::last);  // every reported token is part of the context
    if (stop || (params.stop_at_eos && std::find(eos_.begin(), eos_.end(), token) != eos_.end())) break;
  }
}

}  // namespace sibyl::engine
