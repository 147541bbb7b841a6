#include "cli_args.h"

#include "engine/model/default_model.h"

#include <algorithm>
#include <cerrno>
#include <filesystem>

namespace sibyl::cli {

Args::Args(int argc, char** argv, const std::vector<std::string>& flags, const char* usage,
           const std::vector<std::string>& switches)
    : usage_(usage) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      std::fputs(usage, stdout);
      std::exit(0);
    }
    if (std::find(switches.begin(), switches.end(), a) != switches.end()) {
      values_.insert_or_assign(a, std::string(1, '1'));
      continue;
    }
    if (std::find(flags.begin(), flags.end(), a) == flags.end()) die("unknown argument: " + a);
    if (i + 1 >= argc) die("missing value after " + a);
    values_[a] = argv[++i];
  }
}

std::string Args::get(const std::string& flag, const std::string& fallback) const {
  auto it = values_.find(flag);
  return it == values_.end() ? fallback : it->second;
}

long long Args::get_int(const std::string& flag, long long fallback) const {
  if (!has(flag)) return fallback;
  const std::string& s = values_.at(flag);
  char* end = nullptr;
  errno = 0;
  long long v = std::strtoll(s.c_str(), &end, 10);
  if (errno || end == s.c_str() || *end) die(flag + " expects an integer, got \"" + s + "\"");
  return v;
}

double Args::get_double(const std::string& flag, double fallback) const {
  if (!has(flag)) return fallback;
  const std::string& s = values_.at(flag);
  char* end = nullptr;
  errno = 0;
  double v = std::strtod(s.c_str(), &end);
  if (errno || end == s.c_str() || *end) die(flag + " expects a number, got \"" + s + "\"");
  return v;
}

void Args::die(const std::string& message) const {
  std::fprintf(stderr, "error: %s\n\n%s", message.c_str(), usage_);
  std::exit(2);
}

std::string default_model_dir() {
  std::string searched;
  std::string dir = engine::find_default_model(searched);
  if (dir.empty()) {
    std::fprintf(stderr, "error: no default model found (searched %s); pass --model PATH\n", searched.c_str());
    std::exit(2);
  }
  return dir;
}

bool parse_token_list(const std::string& text, std::vector<int32_t>& out) {
  std::string cur;
  auto flush = [&]() {
    if (cur.empty()) return true;
    char* end = nullptr;
    errno = 0;
    long long v = std::strtoll(cur.c_str(), &end, 10);
    if (errno || *end || v < INT32_MIN || v > INT32_MAX) return false;
    out.push_back(static_cast<int32_t>(v));
    cur.clear();
    return true;
  };
  for (char ch : text) {
    if (ch == ',' || ch == ' ' || ch == '\n' || ch == '\t' || ch == '\r') {
      if (!flush()) return false;
    } else {
      cur += ch;
    }
  }
  return flush();
}

}  // namespace sibyl::cli
