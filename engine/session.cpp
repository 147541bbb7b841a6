#include "session.h"

#include <algorithm>
#include <limits>

#include "failure.h"
#include "runtime/blocking.h"

namespace sibyl::engine {

void Session::claim() const {
  if (in_use_.exchange(true, std::memory_order_acq_rel))
    fail(Errc::busy,
         "the session is busy: a call or request is already running on it (another thread, "
         "a callback of that call, or a submitted request not yet finished)");
}

Session::Use::Use(const Session& s) : s_(s) { s.claim(); }

Session::Use::~Use() { s_.unclaim(); }

Session::Session(const std::shared_ptr<Model>& model, const SessionOptions& options)
    : model_(model), kv_(model->shared_kv()), rng_(options.seed) {
  const ModelConfig& c = model->config();
  eos_ = c.eos_token_ids;
  vocab_ = c.vocab_size;
  if (options.max_context < 0) fail(Errc::invalid_argument, "max_context must not be negative");
  if (options.max_context > c.max_position_embeddings)
    fail(Errc::invalid_argument, "max_context " + std::to_string(options.max_context) +
                                     " exceeds the model's max_position_embeddings of " +
                                     std::to_string(c.max_position_embeddings));
  max_context_ = options.max_context > 0 ? options.max_context : c.max_position_embeddings;
  if (max_context_ > std::numeric_limits<int32_t>::max())  // positions are int32 on every backend
    fail(Errc::invalid_argument, "max_context " + std::to_string(max_context_) + " exceeds 2^31 - 1 tokens");
  seed_ = options.seed;
}

Session::~Session() {
  std::lock_guard lock(kv_->mutex);
  if (kv_->pages) pages_.release(*kv_->pages);
}

std::shared_ptr<Model> Session::lock_model() const {
  std::shared_ptr<Model> m = model_.lock();
  if (!m) fail(Errc::model_destroyed, "the session's model was destroyed; only sibyl_session_destroy is valid now");
  return m;
}

void Session::check_feed(const int32_t* tokens, int64_t n) const {
  if (n < 0) fail(Errc::invalid_argument, "negative token count");
  if (!tokens && n) fail(Errc::invalid_argument, "tokens is NULL but n_tokens is " + std::to_string(n));
  const int64_t pos0 = position();
  if (n > max_context_ - pos0)  // before reading the tokens: n may be larger than the caller's array
    fail(Errc::context_full, "appending " + std::to_string(n) + " tokens at position " + std::to_string(pos0) +
                                 " exceeds the session's max_context of " + std::to_string(max_context_));
  for (int64_t i = 0; i < n; ++i)
    if (tokens[i] < 0 || tokens[i] >= vocab_)
      fail(Errc::invalid_token, "token " + std::to_string(tokens[i]) + " at index " + std::to_string(i) +
                                    " is outside the vocabulary [0, " + std::to_string(vocab_) + ")");
}

int64_t Session::share_cached_prefix(Model& m, const int32_t* pending, int64_t n) {
  if (n < 2 || !shareable_) return 0;
  std::vector<int32_t> all(tokens_);
  all.insert(all.end(), pending, pending + n);
  // At least one token is left to run, so that the step has logits to give.
  const int64_t covered = pages_.share_prefix(m.kv_pages(), all, position(), static_cast<int64_t>(all.size()), 1);
  tokens_.insert(tokens_.end(), pending, pending + covered);
  if (covered > 0) {
    logits_.clear();
    logits_rows_ = 0;
  }
  return covered;
}

bool Session::reserve(Model& m, int64_t n, std::vector<PageCopy>& copies) {
  return pages_.prepare_write(m.kv_pages(), position(), position() + n, copies);
}

SeqStep Session::step_for(const int32_t* tokens, int64_t n, LogitsMode mode, AttentionPath path) const {
  SeqStep s;
  s.tokens = tokens;
  s.n = n;
  s.pos0 = position();
  s.pages = &pages_.pages();
  s.logits = mode;
  s.path = path;
  return s;
}

void Session::commit(Model& m, const int32_t* tokens, int64_t n, const float* logits, int64_t rows) {
  tokens_.insert(tokens_.end(), tokens, tokens + n);
  logits_.assign(logits, logits + rows * vocab_);
  logits_rows_ = rows;
  if (shareable_) pages_.publish(m.kv_pages(), tokens_, position());
}

void Session::abandon(Model& m) { pages_.truncate(m.kv_pages(), position()); }

void Session::append(const int32_t* tokens, int64_t n, LogitsMode mode, AttentionPath path, StepObserver* observer) {
  std::shared_ptr<Model> model = lock_model();
  if (n == 0) return;
  check_feed(tokens, n);
  std::lock_guard lock(model->step_mutex());
  std::vector<PageCopy> copies;
  try {
    if (!reserve(*model, n, copies)) {
      KvPages& kv = model->kv_pages();
      fail(Errc::out_of_memory, "the KV cache is full: " + std::to_string(n) + " tokens at position " +
                                    std::to_string(position()) + " need pages the pool does not have (" +
                                    kv.describe() + ", " + std::to_string(kv.pages_in_use()) +
                                    " in use); raise kv_cache_bytes or free sessions");
    }
    model->copy_pages(copies);
    std::vector<float> out;
    model->forward({step_for(tokens, n, mode, path)}, out, observer);
    commit(*model, tokens, n, out.data(), static_cast<int64_t>(out.size()) / vocab_);
  } catch (...) {
    abandon(*model);
    throw;
  }
}

void Session::rewind(int64_t position) {
  std::shared_ptr<Model> model = lock_model();
  if (position < 0 || position > this->position())
    fail(Errc::invalid_argument, "cannot rewind to position " + std::to_string(position) + ": the session holds " +
                                     std::to_string(this->position()) + " tokens");
  std::lock_guard lock(model->step_mutex());
  tokens_.resize(static_cast<size_t>(position));
  pages_.truncate(model->kv_pages(), position);
  logits_.clear();
  logits_rows_ = 0;
  if (position == 0) shareable_ = true;
}

void Session::rewind_locked(int64_t position) {
  if (position < 0 || position > this->position()) fail(Errc::internal, "rewind_locked out of range");
  tokens_.resize(static_cast<size_t>(position));
  if (kv_->pages) pages_.truncate(*kv_->pages, position);
  logits_.clear();
  logits_rows_ = 0;
  if (position == 0) shareable_ = true;
}

void Session::reset() {
  rewind(0);
  rng_.seed_with(seed_);
}

void Session::fork_from(const Session& other) {
  std::shared_ptr<Model> model = lock_model();
  if (other.model_.lock() != model) fail(Errc::invalid_argument, "fork: the sessions belong to different models");
  std::lock_guard lock(model->step_mutex());
  pages_.share_from(model->kv_pages(), other.pages_);
  shareable_ = other.shareable_;
  tokens_ = other.tokens_;
  logits_ = other.logits_;
  logits_rows_ = other.logits_rows_;
  rng_ = other.rng_;
  max_context_ = other.max_context_;
  seed_ = other.seed_;
}

int32_t Session::sample(const SamplerParams& params) {
  lock_model();
  return sample_logits(params);
}

int32_t Session::sample_logits(const SamplerParams& params) {
  if (logits_rows_ == 0) fail(Errc::no_logits, "no logits to sample from: append tokens (with logits) first");
  const float* last = logits_.data() + (logits_rows_ - 1) * vocab_;
  return sample_token(last, vocab_, params, tokens_, rng_);
}

int Session::generate(const int32_t* prompt, int64_t n_prompt, const GenerateParams& params,
                      const std::function<bool(int32_t)>& on_token, int64_t& generated,
                      const std::atomic<bool>* cancel) {
  generated = 0;
  std::shared_ptr<Model> model = lock_model();
  check_feed(prompt, n_prompt);  // the context first: n_prompt may exceed the caller's array
  GenerateJobParams p;
  p.prompt.assign(prompt, prompt + n_prompt);
  p.max_new_tokens = params.max_new_tokens;
  p.stop_at_eos = params.stop_at_eos;
  p.reseed = params.reseed;
  p.seed = params.seed;
  p.sampler = params.sampler;
  auto request = std::make_shared<Request>(/*hold=*/true);
  const Event end = run_blocking(model->scheduler(), make_generate_job(*this, nullptr, request, std::move(p)), request,
                                 cancel, [&](const Event& e) {
                                   if (e.kind != EventKind::token) return false;
                                   ++generated;
                                   return on_token && on_token(e.token);
                                 });
  if (end.error) fail(static_cast<Errc>(end.error), end.message);
  return static_cast<int>(end.stop);
}

}  // namespace sibyl::engine
