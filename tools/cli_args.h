// Minimal "--flag value" parsing shared by the command-line tools.
#pragma once
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

namespace sibyl::cli {

class Args {
 public:
  // `flags` take a value ("--seed 3"); `switches` stand alone ("--no-think"); anything
  // else is an error.
  Args(int argc, char** argv, const std::vector<std::string>& flags, const char* usage,
       const std::vector<std::string>& switches = {});
  bool has(const std::string& flag) const { return values_.count(flag) != 0; }
  std::string get(const std::string& flag, const std::string& fallback = "") const;
  long long get_int(const std::string& flag, long long fallback) const;
  double get_double(const std::string& flag, double fallback) const;
  [[noreturn]] void die(const std::string& message) const;

 private:
  std::map<std::string, std::string> values_;
  const char* usage_;
};

// The embedded default model (engine/model/default_model.h: $SIBYL_DEFAULT_MODEL, the install layout
// beside this program, the source tree); exits with status 2 naming the places tried when none.
std::string default_model_dir();
inline std::string default_model_dir_or(const Args& args) {
  return args.has("--model") ? args.get("--model") : default_model_dir();
}

// Parses ids separated by commas and/or whitespace; false on a bad id.
bool parse_token_list(const std::string& text, std::vector<int32_t>& out);

}  // namespace sibyl::cli
