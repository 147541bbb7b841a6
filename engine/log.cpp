#include "log.h"

#include <cstdio>
#include <mutex>

namespace sibyl {
namespace {
std::mutex g_mutex;
LogSink g_sink = nullptr;
void* g_user_data = nullptr;
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

void set_log_sink(LogSink sink, void* user_data, LogLevel min_level) {
  std::lock_guard lock(g_mutex);
  g_sink = sink;
  g_user_data = user_data;
  g_min_level = min_level;
}

void log(LogLevel level, const std::string& message) {
  LogSink sink;
  void* user_data;
  {
    std::lock_guard lock(g_mutex);
    if (level < g_min_level || level == LogLevel::off) return;
    sink = g_sink;
    user_data = g_user_data;
  }
  if (sink)
    sink(static_cast<int>(level), message.c_str(), user_data);
  else
    std::fprintf(stderr, "sibyl %s: %s\n", level_name(level), message.c_str());
}

}  // namespace sibyl
