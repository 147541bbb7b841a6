// sibyl-tokenize: encode JSON strings (or plain text lines) to token ids, or decode id arrays
// to JSON strings, one per line, with the tokenizer.json of a model folder.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "cli_args.h"
#include "engine/text/tokenizer.h"

static const char* kUsage =
    "usage: sibyl-tokenize [--model DIR] [--decode | --text] [--timing]\n"
    "  --model DIR   a model folder holding tokenizer.json, or the file itself\n"
    "                (default: the embedded tiny-reasoner)\n"
    "  --decode      read JSON arrays of ids and write JSON strings (default: the reverse)\n"
    "  --text        encode each line as it is (plain text, not a JSON string)\n"
    "  --timing      print load and encode/decode times on stderr\n"
    "Reads one JSON value per line on stdin and writes one per line on stdout; encoding is\n"
    "Hugging Face encode(text, add_special_tokens=False), decoding keeps special tokens.\n";

namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

// `count` and `ms` add up the tokens and the time spent inside the tokenizer.
// The line as JSON, or an error that says what was expected and where it went wrong.
nlohmann::json parse_line(const std::string& line, const char* expected) {
  try {
    return nlohmann::json::parse(line);
  } catch (const nlohmann::json::parse_error& e) {
    throw std::runtime_error("not JSON (at byte " + std::to_string(e.byte) + "); expected " + expected);
  }
}

std::string encode_line(const sibyl::engine::Tokenizer& tok, const std::string& line, bool text, size_t& count,
                        double& ms) {
  std::string utf8 = line;
  if (!text) {
    nlohmann::json in = parse_line(line, "a JSON string such as \"Hello\" (--text reads plain lines)");
    if (!in.is_string()) throw std::runtime_error("expected a JSON string such as \"Hello\" (--text reads plain lines)");
    utf8 = in.get<std::string>();
  }
  auto t = Clock::now();
  std::vector<int32_t> ids = tok.encode(utf8);
  ms += ms_since(t);
  count += ids.size();
  return nlohmann::json(ids).dump();
}

std::string decode_line(const sibyl::engine::Tokenizer& tok, const std::string& line, size_t& count, double& ms) {
  nlohmann::json in = parse_line(line, "a JSON array of token ids such as [1, 2]");
  if (!in.is_array()) throw std::runtime_error("expected a JSON array of token ids such as [1, 2]");
  std::vector<int32_t> ids;
  for (const auto& v : in) {
    if (!v.is_number_integer() || v.get<int64_t>() < INT32_MIN || v.get<int64_t>() > INT32_MAX)
      throw std::runtime_error("not a token id: " + v.dump());
    ids.push_back(static_cast<int32_t>(v.get<int64_t>()));
  }
  count += ids.size();
  auto t = Clock::now();
  std::string text = tok.decode(ids);
  ms += ms_since(t);
  return nlohmann::json(text).dump();
}

}  // namespace

int main(int argc, char** argv) {
  sibyl::cli::Args args(argc, argv, {"--model"}, kUsage, {"--decode", "--text", "--timing"});
  const std::string model = sibyl::cli::default_model_dir_or(args);
  const bool decode = args.has("--decode"), text = args.has("--text"), timing = args.has("--timing");
  if (decode && text) args.die("--decode and --text exclude each other");

  auto t0 = Clock::now();
  std::unique_ptr<sibyl::engine::Tokenizer> tok;
  try {
    tok = sibyl::engine::Tokenizer::load(model);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: cannot load tokenizer: %s\n", e.what());
    return 1;
  }
  double load_ms = ms_since(t0);

  std::ios::sync_with_stdio(false);
  std::string line;
  size_t line_no = 0, tokens = 0;
  double work_ms = 0;
  while (std::getline(std::cin, line)) {
    ++line_no;
    if (!text && line.find_first_not_of(" \t\r") == std::string::npos) continue;  // --text: "" is []
    std::string out;
    try {
      out = decode ? decode_line(*tok, line, tokens, work_ms) : encode_line(*tok, line, text, tokens, work_ms);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "error: line %zu: %s\n", line_no, e.what());
      return 1;
    }
    std::cout << out << '\n' << std::flush;
  }
  if (timing)
    std::fprintf(stderr, "loaded %s in %.1f ms; %s %zu tokens in %.1f ms (%.0f tokens/s)\n", model.c_str(), load_ms,
                 decode ? "decoded" : "encoded", tokens, work_ms, work_ms > 0 ? tokens / (work_ms / 1000.0) : 0.0);
  return 0;
}
