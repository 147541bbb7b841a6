// Continuous batching for one model. Every step takes the next token of every
// generating request plus prompt chunks under a per-step row budget (decode rows
// first, prompt chunks in turn), so a long prompt never stalls the others. Steps
// run on library worker threads, or when the application calls step() with a time
// budget, which the scheduler fits from the measured cost per row. Cancel takes
// effect before the next step, also between the chunks of a long prompt. When the
// cache pool is full, work waits; work that can never fit fails naming the sizes.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "engine/runtime/job.h"
#include "engine/runtime/scheduler_options.h"

namespace sibyl::engine {

class Model;

struct StepReport {
  int64_t rows = 0;       // tokens run in the step (0: there was nothing to run)
  int64_t advanced = 0;   // requests that advanced without running rows (an accepted draft's next token)
  int64_t sequences = 0;  // requests in the step
  int64_t elapsed_us = 0;
  int64_t budget_us = 0;  // what the caller allowed (0: none)
  bool overrun = false;   // elapsed_us > budget_us
  int64_t pending = 0;    // requests not finished after the step
};

class Scheduler {
 public:
  Scheduler(Model& model, const SchedulerOptions& options);
  ~Scheduler();  // ends every request with Errc::model_destroyed
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Claims the job's session (Errc::busy when in use; `claimed`: the caller did) and queues
  // the job. Any thread.
  void submit(std::unique_ptr<Job> job, bool claimed = false);
  // Runs one step if any request can progress; budget_us > 0 sizes it to fit.
  StepReport step(int64_t budget_us = 0);
  bool has_workers() const { return options_.workers > 0; }
  // True on the thread running one of this scheduler's steps (inside an event callback):
  // a nested step would deadlock or corrupt it, so step() and blocking calls refuse.
  bool stepping_here() const;
  // True on one of this scheduler's worker threads.
  bool on_worker_thread() const;
  const SchedulerOptions& options() const { return options_; }
  void wake();  // a request was released or cancelled

 private:
  struct Active;
  void worker_main();
  void start_workers();
  void admit_locked(std::vector<std::unique_ptr<Job>>& ended);
  bool runnable_locked() const;
  void end_job(std::unique_ptr<Job>& job, StopReason stop, const Failure* error,
               std::vector<std::unique_ptr<Job>>& ended);
  void run_step_locked(int64_t budget_us, StepReport& report, std::vector<std::unique_ptr<Job>>& ended);
  bool progressed(const StepReport& r) const { return r.rows > 0 || r.advanced > 0; }
  void run_mtp_locked();
  int64_t row_budget(int64_t budget_us) const;

  Model& model_;
  SchedulerOptions options_;

  // Wakes the workers. Requests hold it too (release / cancel wake the scheduler), so it
  // outlives the scheduler: a request cancelled after its model is gone wakes nobody.
  struct Signal {
    std::mutex mutex;  // guards the scheduler's incoming_ and stop_ as well
    std::condition_variable cv;
    uint64_t wakes = 0;
    void wake();
  };
  std::shared_ptr<Signal> signal_ = std::make_shared<Signal>();
  std::deque<std::unique_ptr<Job>> incoming_;
  bool stop_ = false;

  // Under the model's step mutex:
  std::vector<std::unique_ptr<Job>> active_;
  size_t rotate_ = 0;        // fairness: where the next step starts taking prompt chunks
  double us_per_row_ = 0.0;  // measured cost (EMA)
  std::vector<float> logits_, hidden_;  // a step's outputs, reused (no allocation per step)
  double us_per_step_ = 0.0;

  std::once_flag workers_started_;
  std::vector<std::thread> workers_;
};

}  // namespace sibyl::engine
