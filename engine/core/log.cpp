#include "engine/core/log.h"

#include <cstdio>
#include <memory>
#include <mutex>

namespace sibyl::engine {
namespace {
std::mutex g_mutex;
std::shared_ptr<const LogSink> g_sink;  // copied out under the lock, called outside it
LogLevel g_min_level = LogLevel::warn;
const char* level_name(LogLevel l) {
  switch (l) {
    case LogLevel::debug: return "debug";
    case LogLevel::info: return "info";
    case LogLevel::warn: return "warning";
    case LogLevel::error: return "error";
    default: return "";
  }
}
}  // namespace

void set_log_sink(LogSink sink, LogLevel min_level) {
  auto shared = sink ? std::make_shared<const LogSink>(std::move(sink)) : nullptr;
  std::lock_guard lock(g_mutex);
  g_sink = std::move(shared);
  g_min_level = min_level;
}

void log(LogLevel level, const std::string& message) {
  std::shared_ptr<const LogSink> sink;
  {
    std::lock_guard lock(g_mutex);
    if (level < g_min_level || level == LogLevel::off) return;
    sink = g_sink;
  }
  if (sink)
    (*sink)(level, message.c_str());
  else
    std::fprintf(stderr, "sibyl %s: %s\n", level_name(level), message.c_str());
}

}  // namespace sibyl::engine
