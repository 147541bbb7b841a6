#include "engine/runtime/blocking.h"

#include <thread>

#include "engine/core/failure.h"

namespace sibyl::engine {

static Event deliver(Scheduler& scheduler, const std::shared_ptr<Request>& request, const std::atomic<bool>* cancel,
                     const std::function<bool(const Event&)>& on_event);

Event run_blocking(Scheduler& scheduler, std::unique_ptr<Job> job, const std::shared_ptr<Request>& request,
                   const std::atomic<bool>* cancel, const std::function<bool(const Event&)>& on_event,
                   const std::function<void()>& submitted) {
  if (scheduler.stepping_here())
    fail(Errc::busy, "a blocking call cannot run inside an event callback of the same model; submit a request");
  scheduler.submit(std::move(job));
  try {
    if (submitted) submitted();
    return deliver(scheduler, request, cancel, on_event);
  } catch (...) {
    // A callback threw (or worse): the request must still end, or its session stays busy.
    request->cancel();
    for (Event e; !request->done();) {
      while (request->poll(e)) {
      }
      request->release();
      const StepReport r = scheduler.step();
      if (r.rows == 0 && r.advanced == 0 && !request->done()) request->wait(1000);
    }
    throw;
  }
}

// Delivers the request's events to on_event on this thread, driving steps, until it ends.
static Event deliver(Scheduler& scheduler, const std::shared_ptr<Request>& request, const std::atomic<bool>* cancel,
                     const std::function<bool(const Event&)>& on_event) {
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
    // Drive steps on this thread (no hand-off to a worker per token); when nothing could
    // run (another thread's step is running ours, or pages are short) wait a little.
    const StepReport r = scheduler.step();
    if (r.rows == 0 && r.advanced == 0 && !request->done()) {
      std::this_thread::yield();
      request->wait(cancel ? 500 : 2000);
    }
  }
}

}  // namespace sibyl::engine
