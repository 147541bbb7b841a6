// Library-wide logging: one sink (stderr by default, or the app's callback).
#pragma once
#include <functional>
#include <string>

namespace sibyl::engine {

enum class LogLevel : int { debug = 0, info = 1, warn = 2, error = 3, off = 4 };

using LogSink = std::function<void(LogLevel level, const char* message)>;

// An empty sink restores the default: stderr.
void set_log_sink(LogSink sink, LogLevel min_level);
void log(LogLevel level, const std::string& message);

}  // namespace sibyl::engine
