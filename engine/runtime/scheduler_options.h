// How a model's scheduler runs its steps.
#pragma once
#include <cstdint>
#include <vector>

namespace sibyl::engine {

struct SchedulerOptions {
  // Library threads that run steps for submitted requests; 0: the application calls
  // Scheduler::step (blocking calls always drive steps themselves when no thread does).
  int workers = 1;
  int worker_nice = 10;          // Linux nice value of the worker threads (below normal: > 0)
  std::vector<int> worker_cpus;  // CPU affinity of the workers; empty: any
  int64_t step_tokens = 256;     // rows per step at most (decode rows + prompt chunks)
  // Speculative decoding with the model's MTP layer (models that have one): each decoding
  // request feeds its next token plus the MTP's draft of the one after, verified in the same
  // step. Drafting pauses while more than `mtp_max_batch` requests decode at once (verifying
  // then costs more than it saves; the MTP cache is still kept level). 1: measured on the CPU
  // backend (docs/PERFORMANCE.md), batches of 4 and 16 lost more than batch 1 gained.
  bool mtp = true;
  int64_t mtp_max_batch = 1;
};

}  // namespace sibyl::engine
