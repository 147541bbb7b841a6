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
};

}  // namespace sibyl::engine
