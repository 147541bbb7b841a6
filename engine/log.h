// Library-wide logging: one sink (stderr by default, or the app's callback).
#pragma once
#include <string>

namespace sibyl {

enum class LogLevel : int { debug = 0, info = 1, warn = 2, error = 3, off = 4 };

using LogSink = void (*)(int level, const char* message, void* user_data);

void set_log_sink(LogSink sink, void* user_data, LogLevel min_level);
void log(LogLevel level, const std::string& message);

}  // namespace sibyl
