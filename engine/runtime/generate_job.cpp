// generate as a job: every reported token is appended before the request ends, so
// the session can continue the conversation (one extra row for the last token).
#include <algorithm>
#include <optional>

#include "engine/grammar/token_constraint.h"
#include "engine/model/model.h"
#include "engine/runtime/job.h"

namespace sibyl::engine {
namespace {

class GenerateJob final : public Job {
 public:
  GenerateJob(Session& s, std::shared_ptr<void> keep, std::shared_ptr<Request> r, GenerateJobParams p)
      : Job(s, std::move(keep), std::move(r)), p_(std::move(p)) {}

  void start() override {
    session().check_feed(p_.prompt.data(), static_cast<int64_t>(p_.prompt.size()));
    if (p_.reseed) session().rng().seed_with(p_.seed);
    if (p_.grammar) {
      model_ = session().model();  // keeps the tokenizer the constraint reads
      grammar_.emplace(p_.grammar, model_->tokenizer(), session().eos_tokens(), session().vocab_size());
    }
    if (!p_.prompt.empty()) {
      pending = std::move(p_.prompt);
      pending_is_prompt = true;
    } else if (session().logits_rows() == 0) {
      fail(Errc::no_logits, "nothing to generate from: the prompt is empty and the session holds no logits");
    }
  }

  std::optional<StopReason> advance() override {
    pending_is_prompt = false;
    if (stopping_) return stop_;
    if (request().soft_stopped()) return StopReason::callback;
    if (stats.generated >= p_.max_new_tokens) return StopReason::max_tokens;
    Session& s = session();
    if (s.position() >= s.max_context())
      fail(Errc::context_full, "the session reached its max_context of " + std::to_string(s.max_context()) +
                                   " tokens after generating " + std::to_string(stats.generated));
    if (grammar_) p_.sampler.constraint = &grammar_->mask();
    const int32_t token = s.sample_logits(p_.sampler);
    if (grammar_) grammar_->follow(token);
    ++stats.generated;
    if (stats.first_token_us == 0) stats.first_token_us = now_us();
    Event e;
    e.kind = EventKind::token;
    e.token = token;
    request().update_stats(stats);
    request().push(std::move(e));
    pending.assign(1, token);  // appended before anything else happens to the session
    const auto& eos = s.eos_tokens();
    if (p_.stop_at_eos && std::find(eos.begin(), eos.end(), token) != eos.end()) {
      stopping_ = true;
      stop_ = StopReason::eos;
    } else if (stats.generated >= p_.max_new_tokens) {
      stopping_ = true;
      stop_ = StopReason::max_tokens;
    }
    return std::nullopt;
  }

 private:
  GenerateJobParams p_;
  std::shared_ptr<Model> model_;
  std::optional<TokenConstraint> grammar_;
  bool stopping_ = false;
  StopReason stop_ = StopReason::eos;
};

}  // namespace

std::unique_ptr<Job> make_generate_job(Session& session, std::shared_ptr<void> keep, std::shared_ptr<Request> request,
                                       GenerateJobParams params) {
  return std::make_unique<GenerateJob>(session, std::move(keep), std::move(request), std::move(params));
}

}  // namespace sibyl::engine
