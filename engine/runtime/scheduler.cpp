#include "engine/runtime/scheduler.h"

#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <numeric>

#include "engine/core/log.h"
#include "engine/model/model.h"

namespace sibyl::engine {
namespace {

// One job's part of the step being built.
struct Entry {
  Job* job;
  int64_t take;     // tokens of the job's pending feed
  SeqStep step;     // what runs (may add a re-run row before, or the draft after)
  bool draft;       // the step is [next token, MTP draft]
};

thread_local const Scheduler* t_stepping = nullptr;  // the scheduler whose step runs on this thread

struct SteppingHere {
  explicit SteppingHere(const Scheduler* s) { t_stepping = s; }
  ~SteppingHere() { t_stepping = nullptr; }
};

// The exception being handled, as the Failure a request ends with (call inside catch).
Failure current_failure() {
  try {
    throw;
  } catch (const Failure& e) {
    return e;
  } catch (const std::bad_alloc&) {
    return Failure(Errc::out_of_memory, "out of memory");
  } catch (const std::exception& e) {
    return Failure(Errc::internal, e.what());
  } catch (...) {
    return Failure(Errc::internal, "unknown error");
  }
}

std::string pool_full_message(KvPages& kv, const Session& s, int64_t remaining) {
  return "the KV cache pool cannot hold this request: " + std::to_string(s.position() + remaining) + " tokens need " +
         std::to_string((s.position() + remaining + kv.page_tokens() - 1) / kv.page_tokens()) +
         " pages; the pool has " + kv.describe() + ", " + std::to_string(kv.pages_in_use()) +
         " in use by sessions. Raise kv_cache_bytes, or rewind or destroy idle sessions";
}

}  // namespace

Scheduler::Scheduler(Model& model, const SchedulerOptions& options) : model_(model), options_(options) {
  options_.step_tokens = std::max<int64_t>(1, options_.step_tokens);
}

void Scheduler::Signal::wake() {
  {
    std::lock_guard lock(mutex);
    ++wakes;
  }
  cv.notify_all();
}

Scheduler::~Scheduler() {
  {
    std::lock_guard q(signal_->mutex);
    stop_ = true;
  }
  signal_->cv.notify_all();
  for (std::thread& t : workers_) t.join();
  std::vector<std::unique_ptr<Job>> ended;
  std::deque<std::unique_ptr<Job>> incoming;
  {
    std::lock_guard q(signal_->mutex);
    incoming.swap(incoming_);
  }
  {
    std::lock_guard lock(model_.step_mutex());
    for (auto& j : incoming) active_.push_back(std::move(j));
    const Failure gone(Errc::model_destroyed, "the model was destroyed before the request finished");
    for (auto& j : active_) end_job(j, StopReason::error, &gone, ended);
    active_.clear();
  }
}

bool Scheduler::on_worker_thread() const {
  for (const std::thread& t : workers_)
    if (t.get_id() == std::this_thread::get_id()) return true;
  return false;
}

void Scheduler::start_workers() {
  for (int i = 0; i < options_.workers; ++i) workers_.emplace_back([this] { worker_main(); });
}

void Scheduler::submit(std::unique_ptr<Job> job, bool claimed) {
  if (!claimed) job->session().claim();  // Errc::busy when the session runs something else
  job->stats.submit_us = now_us();
  job->request().set_wake([signal = signal_] { signal->wake(); });
  {
    std::lock_guard q(signal_->mutex);
    incoming_.push_back(std::move(job));
  }
  if (has_workers()) std::call_once(workers_started_, [this] { start_workers(); });
  wake();
}

void Scheduler::wake() { signal_->wake(); }

void Scheduler::worker_main() {
#ifdef __linux__
  // Below normal priority: a game's frame thread wins over the model (Linux: per thread).
  if (options_.worker_nice != 0)
    setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), options_.worker_nice);
  if (!options_.worker_cpus.empty()) {
    cpu_set_t set;
    CPU_ZERO(&set);
    for (int cpu : options_.worker_cpus)
      if (cpu >= 0 && cpu < CPU_SETSIZE) CPU_SET(cpu, &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
  }
#endif
  uint64_t seen = 0;
  for (;;) {
    {
      std::unique_lock q(signal_->mutex);
      // Wake on new work or a release/cancel; poll now and then for pages freed elsewhere.
      signal_->cv.wait_for(q, std::chrono::milliseconds(20), [&] { return stop_ || signal_->wakes != seen; });
      if (stop_) return;
      seen = signal_->wakes;
    }
    try {
      for (StepReport r = step(); progressed(r); r = step()) {
        std::lock_guard q(signal_->mutex);
        if (stop_) return;
      }
    } catch (const std::exception& e) {  // step() reports errors to requests; this is a last resort
      log(LogLevel::error, std::string("scheduler step failed: ") + e.what());
    }
  }
}

void Scheduler::end_job(std::unique_ptr<Job>& job, StopReason stop, const Failure* error,
                        std::vector<std::unique_ptr<Job>>& ended) {
  if (!error) {
    try {
      job->finish(stop);
    } catch (...) {
      const Failure f = current_failure();
      return end_job(job, StopReason::error, &f, ended);
    }
  }
  job->session().settle_draft(false, -1);
  if (!error) {
    // The MTP rows of the last feed, so that the pages it published carry them for whoever
    // shares them; failing here only leaves this session's drafts idle.
    try {
      job->session().mtp_catch_up(model_);
    } catch (...) {
    }
  }
  job->request().update_stats(job->stats);
  job->session().unclaim();  // before the owner can see the end
  job->request().finish(stop, error ? static_cast<int>(error->code()) : 0, error ? error->what() : std::string());
  ended.push_back(std::move(job));
}

// Runs a job's advance(); false when it ended.
static bool advance_job(std::unique_ptr<Job>& job,
                        const std::function<void(std::unique_ptr<Job>&, StopReason, const Failure*)>& end) {
  try {
    job->pending.clear();
    job->fed = 0;
    if (std::optional<StopReason> stop = job->advance()) {
      end(job, *stop, nullptr);
      return false;
    }
    return true;
  } catch (...) {
    const Failure f = current_failure();
    end(job, StopReason::error, &f);
    return false;
  }
}

void Scheduler::admit_locked(std::vector<std::unique_ptr<Job>>& ended) {
  std::deque<std::unique_ptr<Job>> fresh;
  {
    std::lock_guard q(signal_->mutex);
    fresh.swap(incoming_);
  }
  auto end = [&](std::unique_ptr<Job>& j, StopReason s, const Failure* f) { end_job(j, s, f, ended); };
  for (auto& job : fresh) {
    if (job->request().cancelled()) {
      end(job, StopReason::cancelled, nullptr);
      continue;
    }
    try {
      job->start();
    } catch (...) {
      const Failure f = current_failure();
      end(job, StopReason::error, &f);
      continue;
    }
    job->start_position = job->session().position();
    if (job->pending.empty() && !advance_job(job, end)) continue;
    active_.push_back(std::move(job));
  }
}

int64_t Scheduler::row_budget(int64_t budget_us) const {
  if (budget_us <= 0) return options_.step_tokens;
  if (us_per_row_ <= 0.0) return std::min<int64_t>(options_.step_tokens, 8);  // nothing measured yet
  const auto rows = static_cast<int64_t>(static_cast<double>(budget_us) / us_per_row_);
  return std::clamp<int64_t>(rows, 1, options_.step_tokens);
}

bool Scheduler::stepping_here() const { return t_stepping == this; }

StepReport Scheduler::step(int64_t budget_us) {
  if (stepping_here())
    fail(Errc::busy, "a step of this model cannot run inside one of its steps (from an event callback)");
  StepReport report;
  report.budget_us = budget_us;
  std::vector<std::unique_ptr<Job>> ended;  // destroyed after the lock: they may free sessions
  {
    std::lock_guard lock(model_.step_mutex());
    const SteppingHere here(this);
    // Something outside the forward pass failed (e.g. the pool could not grow): end every
    // request rather than leave any waiting forever; their sessions keep what ran.
    auto fail_all = [&](const Failure& f) {
      for (auto& j : active_)
        if (j) {
          j->session().abandon(model_);
          end_job(j, StopReason::error, &f, ended);
        }
      active_.clear();
    };
    try {
      run_step_locked(budget_us, report, ended);
    } catch (...) {
      fail_all(current_failure());
    }
    report.pending = static_cast<int64_t>(active_.size());
  }
  return report;
}

// The MTP layer catches up with what the main model ran, and drafts the token after each
// decoding job's next one (one forward over every session). Drafting pauses while more than
// mtp_max_batch jobs decode.
void Scheduler::run_mtp_locked() {
  int64_t decoding = 0;
  for (const auto& j : active_)
    if (!j->pending_is_prompt) ++decoding;
  const bool drafting = decoding <= options_.mtp_max_batch;
  std::vector<SeqStep> steps;
  std::vector<Session*> sessions;
  std::vector<PageCopy> copies;
  for (const auto& j : active_) {  // held requests too: their next token is already known
    const size_t remaining = j->pending.size() - j->fed;
    const int32_t next = drafting && !j->pending_is_prompt && remaining == 1 ? j->pending[j->fed] : -1;
    SeqStep step;
    if (!j->session().mtp_step(model_, next, step, copies)) continue;
    steps.push_back(step);
    sessions.push_back(&j->session());
  }
  if (steps.empty()) return;
  model_.copy_pages(copies);
  std::vector<float>& logits = logits_;  // consumed below, before the main step reuses it
  model_.forward_mtp(steps, logits);
  const int64_t vocab = model_.config().vocab_size;
  int64_t row = 0;
  for (size_t i = 0; i < steps.size(); ++i) {
    const bool drafted = steps[i].logits == LogitsMode::last;
    sessions[i]->mtp_done(steps[i], drafted ? logits.data() + row * vocab : nullptr);
    row += drafted ? 1 : 0;
  }
}

void Scheduler::run_step_locked(int64_t budget_us, StepReport& report, std::vector<std::unique_ptr<Job>>& ended) {
  {
    const int64_t t0 = now_us();
    auto end = [&](std::unique_ptr<Job>& j, StopReason s, const Failure* f) { end_job(j, s, f, ended); };
    admit_locked(ended);

    // Cancels take effect now: a prompt in flight is abandoned (the session keeps the
    // chunks that ran); a reported token still joins the context in this step.
    for (auto& job : active_)
      if (job && job->request().cancelled() && (job->pending_is_prompt || job->fed == job->pending.size()))
        end(job, StopReason::cancelled, nullptr);
    std::erase_if(active_, [](const auto& j) { return !j; });

    // A job whose draft was accepted already holds its next logits: it advances now.
    for (auto& job : active_)
      if (job && !job->request().held() && !job->pending.empty() && job->fed == job->pending.size()) {
        ++report.advanced;
        advance_job(job, end);
      }
    std::erase_if(active_, [](const auto& j) { return !j; });
    if (model_.has_mtp() && options_.mtp) run_mtp_locked();

    // Decode rows first, then prompt chunks; each group in rotating order for fairness.
    const size_t n_active = active_.size();
    std::vector<Job*> order;
    for (int pass = 0; pass < 2; ++pass)
      for (size_t k = 0; k < n_active; ++k) {
        Job* j = active_[(rotate_ + k) % n_active].get();
        if (j->pending_is_prompt == (pass == 1) && !j->request().held()) order.push_back(j);
      }
    if (n_active > 0) rotate_ = (rotate_ + 1) % n_active;

    KvPages& kv = model_.kv_pages();
    int64_t rows_left = row_budget(budget_us);
    std::vector<Entry> entries;
    std::vector<Job*> starved;
    std::vector<PageCopy> copies;
    for (Job* j : order) {
      if (rows_left == 0) break;
      Session& s = j->session();
      int64_t remaining = static_cast<int64_t>(j->pending.size() - j->fed);
      if (remaining == 0) continue;  // an accepted draft: it advances at the next step
      if (j->pending_is_prompt && remaining > 1) {
        const int64_t shared = s.share_cached_prefix(model_, j->pending.data() + j->fed, remaining);
        j->fed += static_cast<size_t>(shared);
        j->stats.reused_tokens += shared;
        remaining -= shared;
      }
      const int64_t take = std::min(remaining, rows_left);
      SeqStep drafted;
      if (!j->pending_is_prompt && remaining == 1 && s.draft_step(model_, j->pending[j->fed], drafted, copies)) {
        entries.push_back({j, 1, drafted, true});
        rows_left -= 1;
        continue;
      }
      if (!s.reserve(model_, take, copies)) {
        s.abandon(model_);
        starved.push_back(j);
        continue;
      }
      const bool last_chunk = j->fed + static_cast<size_t>(take) == j->pending.size();
      entries.push_back({j, take,
                         s.step_for(j->pending.data() + j->fed, take, last_chunk ? LogitsMode::last : LogitsMode::none,
                                    AttentionPath::automatic),
                         false});
      rows_left -= take;
    }

    // Out of pages: work that can never fit fails; if nothing at all can run, the newest
    // starved request fails instead of waiting forever.
    // A request that fails for want of pages gives back what its prompt took, so the next
    // one can use them.
    auto fail_starved = [&](std::unique_ptr<Job>& a, const Failure& f) {
      Session& s = a->session();
      if (a->pending_is_prompt && s.position() > a->start_position) s.rewind_locked(a->start_position);
      end(a, StopReason::error, &f);
    };
    for (Job* j : starved) {
      const Session& s = j->session();
      const int64_t need = s.position() + static_cast<int64_t>(j->pending.size() - j->fed);
      for (auto& a : active_) {
        if (a.get() != j) continue;
        if (a->request().cancelled()) {
          end(a, StopReason::cancelled, nullptr);
        } else if ((need + kv.page_tokens() - 1) / kv.page_tokens() > kv.max_pages()) {
          fail_starved(a, Failure(Errc::out_of_memory, pool_full_message(kv, s, need - s.position())));
        }
      }
    }
    std::erase_if(active_, [](const auto& j) { return !j; });
    std::erase_if(starved, [&](Job* j) {
      return std::none_of(active_.begin(), active_.end(), [&](const auto& a) { return a.get() == j; });
    });
    const bool anyone_held =
        std::any_of(active_.begin(), active_.end(), [](const auto& a) { return a && a->request().held(); });
    if (entries.empty() && !starved.empty() && !anyone_held) {
      for (auto it = active_.rbegin(); it != active_.rend(); ++it)
        if (*it && std::find(starved.begin(), starved.end(), it->get()) != starved.end()) {
          const Session& s = (*it)->session();
          fail_starved(*it,
                       Failure(Errc::out_of_memory,
                               pool_full_message(kv, s, static_cast<int64_t>((*it)->pending.size() - (*it)->fed))));
          break;
        }
    }
    std::erase_if(active_, [](const auto& j) { return !j; });

    if (!entries.empty()) {
      std::vector<SeqStep> seqs;
      seqs.reserve(entries.size());
      for (const Entry& e : entries) seqs.push_back(e.step);
      std::vector<float>& logits = logits_;
      std::vector<float>& hidden = hidden_;
      const Failure* failure = nullptr;
      Failure caught(Errc::internal, "");
      const bool mtp = model_.has_mtp();
      try {
        model_.copy_pages(copies);
        model_.forward(seqs, logits, nullptr, mtp ? &hidden : nullptr);
      } catch (...) {
        caught = current_failure();
        failure = &caught;
      }
      const int64_t vocab = model_.config().vocab_size, H = model_.config().hidden_size;
      int64_t row = 0, hidden_row = 0;
      for (const Entry& e : entries) {
        auto it = std::find_if(active_.begin(), active_.end(), [&](const auto& a) { return a.get() == e.job; });
        std::unique_ptr<Job>& job = *it;
        if (failure) {
          job->session().abandon(model_);
          end(job, StopReason::error, failure);
          continue;
        }
        Session& s = job->session();
        const int64_t rows = e.draft ? 2 : e.step.logits == LogitsMode::last ? 1 : 0;
        s.commit(model_, job->pending.data() + job->fed, e.take, logits.data() + row * vocab, std::min<int64_t>(rows, 1));
        if (e.draft) s.hold_draft(logits.data() + (row + 1) * vocab);
        if (mtp) s.keep_hidden(hidden.data() + hidden_row * H, e.step.pos0, e.step.n);
        row += rows;
        hidden_row += e.step.n;
        job->fed += static_cast<size_t>(e.take);
        if (job->pending_is_prompt) job->stats.prompt_tokens += e.take;
        if (job->fed < job->pending.size()) continue;
        if (job->request().cancelled()) {
          end(job, StopReason::cancelled, nullptr);
          continue;
        }
        if (!advance_job(job, end)) continue;
        job->request().update_stats(job->stats);
        // The draft's row already ran: kept when the job's next token is the draft.
        if (s.settle_draft(!job->pending.empty(), job->pending.empty() ? -1 : job->pending[0])) {
          job->fed = 1;
          ++job->stats.draft_accepted;
        }
        if (e.draft) ++job->stats.drafted;
      }
      std::erase_if(active_, [](const auto& j) { return !j; });
      report.rows = std::accumulate(entries.begin(), entries.end(), int64_t{0},
                                    [](int64_t a, const Entry& e) { return a + e.step.n; });
      report.sequences = static_cast<int64_t>(entries.size());
      report.elapsed_us = now_us() - t0;
      const double per_row = static_cast<double>(report.elapsed_us) / static_cast<double>(report.rows);
      us_per_row_ = us_per_row_ <= 0.0 ? per_row : 0.8 * us_per_row_ + 0.2 * per_row;
      report.overrun = budget_us > 0 && report.elapsed_us > budget_us;
    }
  }
}

}  // namespace sibyl::engine
