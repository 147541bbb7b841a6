// One conversation over a model: token history, its pages of the model's latent
// cache, logits, RNG. Holds the model weakly: once the model is gone every call
// fails with Errc::model_destroyed, and the session can still be destroyed safely.
// A session serves one call at a time: a second call while one runs (another thread,
// the call's own callback, or a request of the scheduler that owns it) is Errc::busy.
#pragma once
#include <atomic>
#include <functional>
#include <memory>
#include <vector>

#include "engine/model/model.h"
#include "engine/model/sampler.h"

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
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Marks the session in use for the lifetime of the guard; Errc::busy when it already is.
  class Use {
   public:
    explicit Use(const Session& s);
    ~Use();
    Use(const Use&) = delete;
    Use& operator=(const Use&) = delete;

   private:
    const Session& s_;
  };
  bool in_use() const { return in_use_.load(std::memory_order_acquire); }
  void claim() const;  // what Use does, for a request that holds the session until it ends
  void unclaim() const { in_use_.store(false, std::memory_order_release); }

  // Runs the tokens through the model; on failure the session is unchanged.
  void append(const int32_t* tokens, int64_t n, LogitsMode mode, AttentionPath path = AttentionPath::automatic,
              StepObserver* observer = nullptr);
  const std::vector<float>& logits() const { return logits_; }
  int64_t logits_rows() const { return logits_rows_; }
  int64_t vocab_size() const { return vocab_; }
  int64_t position() const { return static_cast<int64_t>(tokens_.size()); }
  int64_t max_context() const { return max_context_; }
  const std::vector<int32_t>& tokens() const { return tokens_; }
  const std::vector<int32_t>& eos_tokens() const { return eos_; }

  // Throws Errc::model_destroyed once the model is gone.
  void ensure_model_alive() const { lock_model(); }
  std::shared_ptr<Model> model() const { return lock_model(); }

  void rewind(int64_t position);  // releases the cache pages past it
  void reset();
  void set_seed(uint64_t seed) { rng_.seed_with(seed); }
  Rng& rng() { return rng_; }
  int32_t sample(const SamplerParams& params);
  int32_t sample_logits(const SamplerParams& params);  // sample() without the model check (scheduler)
  // The session as bytes (runtime/session_state.cpp) and back; load_state checks
  // everything (Errc::format) before the session changes.
  std::vector<uint8_t> save_state();
  void load_state(const uint8_t* data, size_t size);
  // Becomes a copy of `other` (history, logits, RNG) sharing its cache pages.
  void fork_from(const Session& other);

  // Blocking generate through the model's scheduler. Counts generated tokens in `generated`
  // (also when it throws); on_token (on this thread) returning true stops after that token;
  // `cancel` (may be null) stops before the next step. Returns how it ended.
  int generate(const int32_t* prompt, int64_t n_prompt, const GenerateParams& params,
               const std::function<bool(int32_t)>& on_token, int64_t& generated,
               const std::atomic<bool>* cancel = nullptr);

  // ---- for the scheduler (under the model's step mutex)
  // Checks a feed of n tokens at the current position (context, vocabulary).
  void check_feed(const int32_t* tokens, int64_t n) const;
  // Shares cached prefix pages for `pending` (tokens to run next): appends the covered
  // tokens to the history and returns how many.
  int64_t share_cached_prefix(Model& m, const int32_t* pending, int64_t n);
  // Pages for positions [position(), position() + n); false when the pool has none left.
  bool reserve(Model& m, int64_t n, std::vector<PageCopy>& copies);
  SeqStep step_for(const int32_t* tokens, int64_t n, LogitsMode mode, AttentionPath path) const;
  // The step ran: the tokens join the history, `rows` logits rows [rows, vocab] are kept.
  void commit(Model& m, const int32_t* tokens, int64_t n, const float* logits, int64_t rows);
  // rewind() for a job that already holds the step lock.
  void rewind_locked(int64_t position);
  // The step failed or was abandoned: drop pages past the history.
  void abandon(Model& m);
  const SeqPages& pages() const { return pages_; }

  // ---- multi-token prediction (models with an MTP layer; see docs/ARCHITECTURE.md)
  // The MTP cache holds rows for positions [1, mtp_rows]; row p is the MTP layer's input
  // (t_p, h_{p-1}). It is kept level with the history, and one ahead (p = position(), for the
  // token about to be fed) when drafting.
  bool mtp_on() const { return mtp_on_; }
  // The next feed must first re-run the last history token, whose hidden state h_{position-1}
  // the MTP layer needs and the session no longer holds (after rewind, load, shared pages).
  bool mtp_rerun() const;
  // A step of the MTP layer over the rows it lacks: positions up to position() - 1, and
  // position() itself when `next` (the token about to be fed) is >= 0 — whose logits then
  // give the draft. False when nothing is to run (or the hidden states are missing).
  bool mtp_step(Model& m, int32_t next, SeqStep& step, std::vector<PageCopy>& copies);
  // The step ran: `logits` (when the draft row ran) choose the draft, greedily.
  void mtp_done(const SeqStep& step, const float* logits);
  int32_t draft() const { return draft_; }  // the MTP's guess for the token after the next one; -1: none
  // A main step of [next, draft] when the MTP drafted for `next` and pages allow; else false.
  bool draft_step(Model& m, int32_t next, SeqStep& step, std::vector<PageCopy>& copies);
  // The main step ran [next, draft]: the draft's row is held apart until the job's next token
  // is known (`hidden` [2, hidden_size] of both rows).
  void hold_draft(const float* draft_logits);
  // The job's next token is `token`: keep the held draft row when it is that token (the
  // history grows by it, its logits become the session's); drop it otherwise. True if kept.
  bool settle_draft(bool job_continues, int32_t token);
  void keep_hidden(const float* rows, int64_t pos0, int64_t n);
  // The MTP rows of the history that have not run yet (append's own step).
  void mtp_catch_up(Model& m);
  uint64_t drafted() const { return drafted_; }
  uint64_t accepted() const { return accepted_; }

 private:
  std::shared_ptr<Model> lock_model() const;

  std::weak_ptr<Model> model_;
  std::shared_ptr<SharedKvPages> kv_;  // to give the pages back, even after the model is gone
  std::vector<int32_t> eos_;
  int64_t vocab_;
  int64_t max_context_;
  uint64_t seed_;
  std::vector<int32_t> tokens_;
  SeqPages pages_;
  // False while the cache holds rows loaded from a state blob: they are not offered to other
  // sessions through the prefix index (a blob's checksum says nothing about who wrote it).
  bool shareable_ = true;
  std::vector<float> logits_;
  int64_t logits_rows_ = 0;
  Rng rng_;
  // MTP state
  bool mtp_on_ = false;
  int64_t hidden_size_ = 0;
  int64_t mtp_rows_ = 0;             // the MTP cache holds positions [1, mtp_rows_]
  int32_t mtp_ahead_token_ = -1;     // mtp_rows_ == position(): the token row mtp_rows_ was run for
  std::vector<float> hidden_;        // final-normed hidden states of positions [hidden_pos_, …)
  int64_t hidden_pos_ = 0;
  std::vector<int32_t> mtp_tokens_;  // the MTP step's tokens
  mutable std::vector<int32_t> feed_;  // a main step's tokens when the session adds its own (re-run, draft)
  int32_t draft_ = -1;
  bool holding_ = false;             // a draft row is in the cache past the history
  std::vector<float> held_logits_;
  uint64_t drafted_ = 0, accepted_ = 0;
  mutable std::atomic<bool> in_use_{false};
};

}  // namespace sibyl::engine
