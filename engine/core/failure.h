// Internal error type. Engine code throws Failure; the C ABI catches it and turns
// it into a sibyl_status plus the thread-local message. Codes equal sibyl_status.
#pragma once
#include <exception>
#include <string>

namespace sibyl::engine {

enum class Errc : int {
  invalid_argument = 1,
  struct_size = 2,
  io = 3,
  format = 4,
  unsupported = 5,
  out_of_memory = 6,
  invalid_token = 7,
  context_full = 8,
  model_destroyed = 9,
  no_logits = 10,
  backend = 11,
  internal = 12,
  buffer_too_small = 13,
  busy = 14,
};

class Failure : public std::exception {
 public:
  Failure(Errc code, std::string message) : code_(code), message_(std::move(message)) {}
  Errc code() const noexcept { return code_; }
  const char* what() const noexcept override { return message_.c_str(); }

 private:
  Errc code_;
  std::string message_;
};

[[noreturn]] inline void fail(Errc code, std::string message) { throw Failure(code, std::move(message)); }

}  // namespace sibyl::engine
