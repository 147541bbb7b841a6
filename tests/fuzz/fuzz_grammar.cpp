// libFuzzer target: GBNF and JSON Schema text compile to a grammar or throw a Failure, and a
// compiled grammar reads any bytes and computes token masks without crashing. The first
// byte picks the language; the rest is the grammar, then (after a NUL) the bytes to read.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "engine/core/failure.h"
#include "engine/grammar/gbnf.h"
#include "engine/grammar/json_schema.h"
#include "engine/grammar/matcher.h"

namespace {

// A small vocabulary: every byte, and some words, JSON pieces and UTF-8.
const sibyl::engine::TokenTrie& trie() {
  static const sibyl::engine::TokenTrie t = [] {
    std::vector<std::string> words;
    for (int b = 0; b < 256; ++b) words.emplace_back(1, static_cast<char>(b));
    for (const char* w : {"{\"", "\":", "\", \"", "true", "false", "null", "  ", "\n  ", "the", " sword", "123",
                          "-4.5e6", "\\n", "\\u00e9", "caf\xc3\xa9", "\xe6\x97\xa5", "\xf0\x9f", "\x98\x80", "\"}"})
      words.emplace_back(w);
    return sibyl::engine::TokenTrie::build(words);
  }();
  return t;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view all(reinterpret_cast<const char*>(data) + 1, size - 1);
  const size_t split = all.find('\0');
  const std::string text(all.substr(0, split));
  const std::string_view input = split == std::string_view::npos ? std::string_view() : all.substr(split + 1);
  try {
    auto grammar = data[0] & 1 ? sibyl::engine::parse_json_schema(text) : sibyl::engine::parse_gbnf(text);
    sibyl::engine::GrammarMatcher m(grammar);
    sibyl::engine::TokenMask mask;
    m.fill_mask(trie(), mask);
    for (size_t i = 0; i < input.size() && i < 256; ++i) {
      if (!m.accept(input.substr(i, 1))) break;
      if (i % 16 == 0) m.fill_mask(trie(), mask);
    }
    (void)m.can_end();
  } catch (const sibyl::engine::Failure&) {
  }
  return 0;
}
