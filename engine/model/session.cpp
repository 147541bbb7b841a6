#include "engine/model/session.h"

#include <algorithm>
#include <limits>

#include "engine/core/failure.h"
#include "engine/runtime/blocking.h"

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
  mtp_on_ = model->has_mtp();
  hidden_size_ = c.hidden_size;
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
  if (covered > 0 && mtp_on_ && mtp_rows_ + 1 >= position())  // the pages carry their MTP rows too
    mtp_rows_ = position() + covered - 1;
  tokens_.insert(tokens_.end(), pending, pending + covered);
  if (covered > 0) {
    logits_.clear();
    logits_rows_ = 0;
    draft_ = -1;
  }
  return covered;
}

bool Session::reserve(Model& m, int64_t n, std::vector<PageCopy>& copies) {
  const int64_t rerun = mtp_rerun() ? 1 : 0;
  return pages_.prepare_write(m.kv_pages(), position() - rerun, position() + n, copies);
}

SeqStep Session::step_for(const int32_t* tokens, int64_t n, LogitsMode mode, AttentionPath path) const {
  SeqStep s;
  s.tokens = tokens;
  s.n = n;
  s.pos0 = position();
  s.pages = &pages_.pages();
  s.logits = mode;
  s.path = path;
  if (mtp_rerun()) {  // the last history token again, for its hidden state
    feed_.assign(1, tokens_.back());
    feed_.insert(feed_.end(), tokens, tokens + n);
    s.tokens = feed_.data();
    s.n = n + 1;
    s.pos0 = position() - 1;
  }
  return s;
}

void Session::commit(Model& m, const int32_t* tokens, int64_t n, const float* logits, int64_t rows) {
  if (mtp_on_ && n > 0 && position() > 0 && mtp_rows_ == position() && tokens[0] != mtp_ahead_token_)
    mtp_rows_ = position() - 1;  // the row run ahead was for another token
  if (n > 0) draft_ = -1;
  tokens_.insert(tokens_.end(), tokens, tokens + n);
  logits_.assign(logits, logits + rows * vocab_);
  logits_rows_ = rows;
  if (shareable_) pages_.publish(m.kv_pages(), tokens_, position());
}

// ---- multi-token prediction

bool Session::mtp_rerun() const {
  if (!mtp_on_ || tokens_.empty() || mtp_rows_ != position() - 1) return false;
  const int64_t need = position() - 1, held = static_cast<int64_t>(hidden_.size()) / hidden_size_;
  return need < hidden_pos_ || need >= hidden_pos_ + held;
}

void Session::keep_hidden(const float* rows, int64_t pos0, int64_t n) {
  if (!mtp_on_ || n <= 0) return;
  const int64_t held = static_cast<int64_t>(hidden_.size()) / hidden_size_;
  if (held == 0 || hidden_pos_ + held != pos0) {
    hidden_.clear();
    hidden_pos_ = pos0;
  }
  hidden_.insert(hidden_.end(), rows, rows + n * hidden_size_);
}

// Drops hidden states of positions >= `end` and those before `begin`.
static void trim_hidden(std::vector<float>& hidden, int64_t& pos, int64_t width, int64_t begin, int64_t end) {
  const int64_t held = static_cast<int64_t>(hidden.size()) / width;
  const int64_t lo = std::clamp<int64_t>(begin, pos, pos + held), hi = std::clamp<int64_t>(end, lo, pos + held);
  hidden.erase(hidden.begin() + (hi - pos) * width, hidden.end());
  hidden.erase(hidden.begin(), hidden.begin() + (lo - pos) * width);
  pos = lo;
}

bool Session::mtp_step(Model& m, int32_t next, SeqStep& step, std::vector<PageCopy>& copies) {
  if (!mtp_on_ || holding_) return false;
  const int64_t P = position(), first = mtp_rows_ + 1;
  int64_t last = next >= 0 ? P : P - 1;
  if (last < first || first < 1) return false;
  // Row p needs h_{p-1}: positions [first - 1, last - 1] must be held.
  const int64_t held = static_cast<int64_t>(hidden_.size()) / hidden_size_;
  if (first - 1 < hidden_pos_ || last - 1 >= hidden_pos_ + held) return false;
  if (!pages_.prepare_write(m.kv_pages(), first, last + 1, copies)) {
    if (last != P || last - 1 < first) return false;  // no page for the draft row: catch up only
    --last;
    if (!pages_.prepare_write(m.kv_pages(), first, last + 1, copies)) return false;
  }
  mtp_tokens_.assign(tokens_.begin() + first, tokens_.begin() + std::min(last + 1, P));
  if (last == P) mtp_tokens_.push_back(next);
  step = SeqStep{};
  step.tokens = mtp_tokens_.data();
  step.n = last - first + 1;
  step.pos0 = first;
  step.pages = &pages_.pages();
  step.logits = last == P ? LogitsMode::last : LogitsMode::none;
  step.hidden = hidden_.data() + (first - 1 - hidden_pos_) * hidden_size_;
  return true;
}

void Session::mtp_done(const SeqStep& step, const float* logits) {
  mtp_rows_ = step.pos0 + step.n - 1;
  draft_ = -1;
  if (mtp_rows_ == position()) {
    mtp_ahead_token_ = mtp_tokens_.back();
    draft_ = static_cast<int32_t>(std::max_element(logits, logits + vocab_) - logits);
  }
  trim_hidden(hidden_, hidden_pos_, hidden_size_, std::min(mtp_rows_, position() - 1), position());
}

bool Session::draft_step(Model& m, int32_t next, SeqStep& step, std::vector<PageCopy>& copies) {
  if (!mtp_on_ || draft_ < 0 || mtp_rows_ != position() || mtp_ahead_token_ != next) return false;
  if (position() + 2 > max_context_) return false;
  if (!pages_.prepare_write(m.kv_pages(), position(), position() + 2, copies)) return false;
  feed_.assign({next, draft_});
  step = step_for(feed_.data(), 2, LogitsMode::all, AttentionPath::automatic);
  return true;
}

void Session::hold_draft(const float* draft_logits) {
  held_logits_.assign(draft_logits, draft_logits + vocab_);
  holding_ = true;
}

bool Session::settle_draft(bool job_continues, int32_t token) {
  if (!holding_) return false;
  holding_ = false;
  ++drafted_;
  const int32_t d = feed_[1];
  if (!job_continues || token != d) {
    trim_hidden(hidden_, hidden_pos_, hidden_size_, hidden_pos_, position());
    return false;
  }
  ++accepted_;
  tokens_.push_back(d);
  logits_.swap(held_logits_);
  logits_rows_ = 1;
  return true;
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
    std::vector<float> out, hidden;
    const SeqStep step = step_for(tokens, n, mode, path);
    model->forward({step}, out, observer, mtp_on_ ? &hidden : nullptr);
    const int64_t extra = mode == LogitsMode::all ? step.n - n : 0;  // a re-run row's logits
    commit(*model, tokens, n, out.data() + extra * vocab_, static_cast<int64_t>(out.size()) / vocab_ - extra);
    keep_hidden(hidden.data(), step.pos0, step.n);
  } catch (...) {
    abandon(*model);
    throw;
  }
  mtp_catch_up(*model);
}

void Session::mtp_catch_up(Model& m) {
  SeqStep step;
  std::vector<PageCopy> copies;
  if (!mtp_step(m, -1, step, copies)) return;
  m.copy_pages(copies);
  std::vector<float> unused;
  m.forward_mtp({step}, unused);
  mtp_done(step, nullptr);
}

void Session::rewind(int64_t position) {
  std::shared_ptr<Model> model = lock_model();
  if (position < 0 || position > this->position())
    fail(Errc::invalid_argument, "cannot rewind to position " + std::to_string(position) + ": the session holds " +
                                     std::to_string(this->position()) + " tokens");
  std::lock_guard lock(model->step_mutex());
  rewind_locked(position);
}

void Session::rewind_locked(int64_t position) {
  if (position < 0 || position > this->position()) fail(Errc::internal, "rewind_locked out of range");
  tokens_.resize(static_cast<size_t>(position));
  if (kv_->pages) pages_.truncate(*kv_->pages, position);
  logits_.clear();
  logits_rows_ = 0;
  if (position == 0) shareable_ = true;
  // MTP rows stay valid up to the last kept position; h_{position-1} may survive
  mtp_rows_ = std::min(mtp_rows_, std::max<int64_t>(position - 1, 0));
  draft_ = -1;
  holding_ = false;
  trim_hidden(hidden_, hidden_pos_, hidden_size_, hidden_pos_, position);
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
  mtp_rows_ = other.mtp_rows_;
  mtp_ahead_token_ = other.mtp_ahead_token_;
  hidden_ = other.hidden_;
  hidden_pos_ = other.hidden_pos_;
  draft_ = other.draft_;
  holding_ = false;
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
  if (holding_) return sample_token_with_draft(last, vocab_, params, tokens_, rng_, feed_[1]);
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
