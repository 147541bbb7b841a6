// Byte-level BPE tokenizer read from a Hugging Face tokenizer.json, as the DeepSeek family
// ships it: added tokens matched in the raw text, a Sequence of regex Splits ending in
// ByteLevel, BPE merges by rank, ByteLevel decoding. encode/decode give what `tokenizers`
// gives for encode(text, add_special_tokens=False) and decode(ids, skip_special_tokens=False).
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/grammar/token_trie.h"
#include "engine/text/text_range.h"

namespace sibyl::engine {

class Tokenizer {
 public:
  // `path` is a tokenizer.json or a folder holding one. Errc::io when it cannot be read,
  // Errc::format when it is malformed, Errc::unsupported for features outside byte-level BPE.
  static std::unique_ptr<Tokenizer> load(const std::string& path);
  // `source` names the text in error messages.
  static std::unique_ptr<Tokenizer> from_json(const std::string& json_text, const std::string& source);
  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // Errc::invalid_argument, naming the byte offset, when `utf8` is not well-formed UTF-8.
  // Safe to call from several threads at once. Within the `plain` byte ranges no added token
  // is matched: text that spells a control token stays text there (untrusted chat content).
  std::vector<int32_t> encode(std::string_view utf8, const std::vector<TextRange>& plain = {}) const;
  // Invalid UTF-8 produced by the tokens becomes U+FFFD; Errc::invalid_token for an unknown id.
  std::string decode(const std::vector<int32_t>& ids) const;

  // Exact lookup of an added token's or a vocabulary token's text ("<think>", "Ġthe").
  std::optional<int32_t> token_id(std::string_view token_content) const;
  bool is_special(int32_t id) const;  // an added token marked special
  bool is_valid(int32_t id) const;    // id names a token (vocab_size() may include holes)
  bool is_added(int32_t id) const;    // an added token (tokenizer.json "added_tokens"), special or not
  int32_t vocab_size() const;         // largest id + 1
  // The raw bytes the token decodes to (possibly part of a UTF-8 character); Errc::invalid_token.
  std::string token_bytes(int32_t id) const;
  // The vocabulary's own tokens (added tokens left out, special or not: they are markup) as a
  // trie for constrained decoding; built on first use (tens of milliseconds for a 129k
  // vocabulary) and kept. Thread-safe.
  const TokenTrie& text_trie() const;

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  const std::string& bytes_of(int32_t id) const;
  std::unique_ptr<Impl> impl_;
  friend class StreamDecoder;
};

// Detokenizes one id at a time and returns only complete UTF-8 text: the bytes of a character
// split across tokens are held until it completes. The pushes plus finish() equal decode().
// The tokenizer must outlive the decoder.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer) : tokenizer_(tokenizer) {}
  std::string push(int32_t id);  // Errc::invalid_token for an unknown id (nothing is consumed)
  // What is still held (an unfinished character becomes U+FFFD); the decoder starts over.
  std::string finish();

 private:
  const Tokenizer& tokenizer_;
  std::string pending_;
};

}  // namespace sibyl::engine
