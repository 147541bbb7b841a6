// A submitted request as its owner sees it: a thread-safe queue of events (tokens,
// text pieces per channel, the end with its stop reason or error), a cancel flag
// that the scheduler honours before its next step, and an optional hold after
// every event so a blocking caller's callbacks can stop generation exactly.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "engine/core/failure.h"

namespace sibyl::engine {

enum class Channel { reasoning = 0, answer = 1 };
enum class StopReason { eos = 0, max_tokens = 1, stop_string = 2, callback = 3, cancelled = 4, error = 5 };
enum class EventKind { token = 0, text = 1, done = 2, tool_call = 3 };

struct Event {
  EventKind kind = EventKind::done;
  int32_t token = -1;                 // token: the sampled id
  Channel channel = Channel::answer;  // text
  std::string text;                   // text: complete UTF-8 characters; tool_call: the arguments (JSON)
  std::string name;                   // tool_call: the tool
  StopReason stop = StopReason::eos;  // done
  int error = 0;                      // done: 0, or the Errc of the failure
  std::string message;                // done with an error: why
};

// What a chat or generate request did (final once the request is done).
struct RequestStats {
  int64_t prompt_tokens = 0;     // tokens run for the prompt (after prefix reuse)
  int64_t reused_tokens = 0;     // prompt tokens the session already held or shared from the cache
  int64_t generated = 0;         // tokens sampled
  int64_t reasoning_tokens = 0;  // chat: generated inside the think block (forced ones excluded)
  int64_t answer_tokens = 0;     // chat: generated after it (end-of-sequence included)
  int64_t tool_calls = 0;        // chat: calls made
  int64_t drafted = 0;           // MTP drafts verified (speculative decoding)
  int64_t draft_accepted = 0;    // of them, the ones that were the next token
  int64_t submit_us = 0, first_token_us = 0, done_us = 0;  // steady-clock microseconds
};

class Request {
 public:
  // hold: after each event the request waits for release() before its next step
  // (blocking calls: the caller's callback may stop it).
  explicit Request(bool hold = false) : hold_(hold) {}

  // ---- owner side (any thread)
  bool poll(Event& out);          // false when nothing is queued
  bool wait(int64_t timeout_us);  // until an event is queued or the request is done
  void cancel();
  bool done() const { return done_.load(std::memory_order_acquire); }
  void release();  // see hold
  RequestStats stats() const;
  StopReason stop_reason() const;  // how it ended (error until it has)
  // Called after events are queued (on the scheduler's thread): e.g. a callback delivery.
  // Setting another (or none) waits until a call of the previous one that is running on
  // another thread has returned, so its user data can be freed afterwards.
  void set_notify(std::function<void()> notify);
  // Blocking callers: end after the token in flight is appended (a callback said stop).
  void stop_soft() { soft_stop_.store(true, std::memory_order_release); }

  // ---- scheduler side
  bool cancelled() const { return cancel_.load(std::memory_order_acquire); }
  bool soft_stopped() const { return soft_stop_.load(std::memory_order_acquire); }
  bool held() const;
  void set_wake(std::function<void()> wake);  // the scheduler: called on release() and cancel()
  void push(Event e);
  void finish(StopReason stop, int error = 0, std::string message = {});
  void update_stats(const RequestStats& s);

 private:
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<Event> events_;
  RequestStats stats_;
  StopReason stop_ = StopReason::error;
  std::function<void()> notify_, wake_;
  const bool hold_;
  bool holding_ = false;
  int notifying_ = 0;         // notify_ calls running
  std::thread::id notifier_;  // the thread running them
  void call_notify(std::unique_lock<std::mutex>& lock);
  std::atomic<bool> cancel_{false}, soft_stop_{false}, done_{false};
};

int64_t now_us();

}  // namespace sibyl::engine
