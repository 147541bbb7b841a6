// The logic of one request, driven by the scheduler under the model's step lock:
// the job says what to feed next (prompt tokens, a sampled token, forced tokens),
// and after its feed has run it samples and emits events, or ends.
#pragma once
#include <memory>
#include <optional>
#include <vector>

#include "engine/grammar/matcher.h"
#include "engine/runtime/request.h"
#include "engine/model/session.h"

namespace sibyl::engine {

class Job {
 public:
  // `keep` keeps the session alive while the job runs (null when the caller guarantees it).
  Job(Session& session, std::shared_ptr<void> keep, std::shared_ptr<Request> request)
      : session_(&session), keep_(std::move(keep)), request_(std::move(request)) {}
  virtual ~Job() = default;

  // Admission (step lock held): prepare the first feed; may throw (the request fails).
  virtual void start() = 0;
  // The pending feed has run (the session holds logits): sample, emit, set the next feed —
  // or return how the request ends.
  virtual std::optional<StopReason> advance() = 0;
  // The request ends (for any reason): flush what is held back. Not called after errors.
  virtual void finish(StopReason) {}

  Session& session() { return *session_; }
  Request& request() { return *request_; }
  const std::shared_ptr<Request>& request_ptr() const { return request_; }

  // The tokens to run next and how many of them already ran (prompt chunks).
  std::vector<int32_t> pending;
  size_t fed = 0;
  bool pending_is_prompt = false;  // may share cached prefix pages; a cancel abandons it
  int64_t start_position = 0;      // the session's position once started (a failure returns to it)
  RequestStats stats;

 protected:
  Session* session_;
  std::shared_ptr<void> keep_;
  std::shared_ptr<Request> request_;
};

// generate: append the prompt, then sample / report / append until a stop.
struct GenerateJobParams {
  std::vector<int32_t> prompt;
  int64_t max_new_tokens = 256;
  bool stop_at_eos = true;
  bool reseed = false;
  uint64_t seed = 0;
  SamplerParams sampler;  // `allowed` must outlive the job
  // Every generated token follows it; end-of-sequence only where it accepts.
  std::shared_ptr<GrammarAutomaton> grammar;
};

std::unique_ptr<Job> make_generate_job(Session& session, std::shared_ptr<void> keep, std::shared_ptr<Request> request,
                                       GenerateJobParams params);

}  // namespace sibyl::engine
