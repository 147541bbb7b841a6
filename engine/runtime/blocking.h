// The blocking calls (generate, chat) as users of the scheduler: submit the job,
// drive steps on this thread (a library thread may run them too), and deliver its events
// to a callback on this thread. The request is held after each step with events,
// so a callback that says stop ends generation right after the token it saw.
#pragma once
#include <atomic>
#include <functional>
#include <memory>

#include "engine/runtime/scheduler.h"

namespace sibyl::engine {

// Returns the request's final event (its stop reason, or the error it ended with).
// on_event returning true stops the request softly (the token in flight is kept);
// `cancel` (may be null) is checked between steps. `submitted` (may be empty) runs once the
// scheduler has taken the job (the session was not busy).
Event run_blocking(Scheduler& scheduler, std::unique_ptr<Job> job, const std::shared_ptr<Request>& request,
                   const std::atomic<bool>* cancel, const std::function<bool(const Event&)>& on_event,
                   const std::function<void()>& submitted = {});

}  // namespace sibyl::engine
