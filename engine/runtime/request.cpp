#include "engine/runtime/request.h"

#include <chrono>

namespace sibyl::engine {

int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

bool Request::poll(Event& out) {
  std::lock_guard lock(mutex_);
  if (events_.empty()) return false;
  out = std::move(events_.front());
  events_.pop_front();
  return true;
}

bool Request::wait(int64_t timeout_us) {
  std::unique_lock lock(mutex_);
  auto ready = [&] { return !events_.empty() || done_.load(std::memory_order_acquire); };
  constexpr int64_t kForever = int64_t{1} << 50;  // ~35 years: beyond it the deadline would overflow
  if (timeout_us < 0 || timeout_us >= kForever) {
    changed_.wait(lock, ready);
    return true;
  }
  return changed_.wait_for(lock, std::chrono::microseconds(timeout_us), ready);
}

void Request::release() {
  std::function<void()> wake;
  {
    std::lock_guard lock(mutex_);
    holding_ = false;
    wake = wake_;
  }
  if (wake) wake();
}

void Request::cancel() {
  cancel_.store(true, std::memory_order_release);
  std::function<void()> wake;
  {
    std::lock_guard lock(mutex_);
    wake = wake_;
  }
  if (wake) wake();
}

void Request::set_wake(std::function<void()> wake) {
  std::lock_guard lock(mutex_);
  wake_ = std::move(wake);
}

bool Request::held() const {
  std::lock_guard lock(mutex_);
  return holding_;
}

RequestStats Request::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

StopReason Request::stop_reason() const {
  std::lock_guard lock(mutex_);
  return stop_;
}

void Request::set_notify(std::function<void()> notify) {
  std::unique_lock lock(mutex_);
  notify_ = std::move(notify);
  if (notifier_ != std::this_thread::get_id()) changed_.wait(lock, [&] { return notifying_ == 0; });
}

void Request::call_notify(std::unique_lock<std::mutex>& lock) {
  if (!notify_) return;
  std::function<void()> notify = notify_;
  ++notifying_;
  notifier_ = std::this_thread::get_id();
  lock.unlock();
  notify();
  lock.lock();
  if (--notifying_ == 0) notifier_ = {};
  changed_.notify_all();
}

void Request::push(Event e) {
  std::unique_lock lock(mutex_);
  events_.push_back(std::move(e));
  if (hold_) holding_ = true;  // until the owner has seen it (release)
  changed_.notify_all();
  call_notify(lock);
}

void Request::update_stats(const RequestStats& s) {
  std::lock_guard lock(mutex_);
  stats_ = s;
}

void Request::finish(StopReason stop, int error, std::string message) {
  Event e;
  e.kind = EventKind::done;
  e.stop = stop;
  e.error = error;
  e.message = std::move(message);
  std::unique_lock lock(mutex_);
  stats_.done_us = now_us();
  stop_ = stop;
  events_.push_back(std::move(e));
  done_.store(true, std::memory_order_release);
  changed_.notify_all();
  call_notify(lock);
}

}  // namespace sibyl::engine
