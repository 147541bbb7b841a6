#include "runtime/blocking.h"

#include <thread>

namespace sibyl::engine {

Event run_blocking(Scheduler& scheduler, std::unique_ptr<Job> job, const std::shared_ptr<Request>& request,
                   const std::atomic<bool>* cancel, const std::function<bool(const Event&)>& on_event) {
  scheduler.submit(std::move(job));
  for (;;) {
    if (cancel && cancel->load(std::memory_order_acquire)) request->cancel();
    Event e;
    bool any = false;
    while (request->poll(e)) {
      any = true;
      if (e.kind == EventKind::done) return e;
      if (on_event && on_event(e)) request->stop_soft();
    }
    if (any) {
      request->release();
      continue;
    }
    if (scheduler.has_workers()) {
      request->wait(cancel ? 2000 : -1);
    } else if (scheduler.step().rows == 0 && !request->done()) {
      std::this_thread::yield();  // others hold the pages or the step; let them run
      request->wait(200);
    }
  }
}

}  // namespace sibyl::engine
