// Byte-level text helpers for the tokenizer: the GPT-2 byte alphabet that byte-level BPE
// vocabularies are written in, and the UTF-8 rules used on the way in (strict validation)
// and on the way out (lossy decoding, as Rust's String::from_utf8_lossy does it).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace sibyl::engine {

// The character, as UTF-8, that stands for raw byte `b` in a byte-level vocabulary.
const std::string& byte_level_char(uint8_t b);

// Maps a byte-level token back to raw bytes. False when some character of `token` is not in
// the byte alphabet (then `bytes` is unspecified).
bool byte_level_to_bytes(std::string_view token, std::string& bytes);

// Appends code point `cp` as UTF-8; false (nothing appended) for a surrogate or past U+10FFFF.
bool append_utf8(std::string& out, uint32_t cp);

// How the UTF-8 sequence starting at s[i] reads.
struct Utf8Step {
  enum Kind { ok, invalid, truncated } kind;
  // ok: bytes of the character; invalid: bytes of the maximal invalid subpart (≥ 1), which
  // becomes one U+FFFD; truncated: bytes present of a well-formed start that runs off the end.
  size_t length;
};
Utf8Step utf8_step(std::string_view s, size_t i);

// Offset of the first byte that does not start well-formed UTF-8, or npos.
size_t utf8_first_invalid(std::string_view s);

// Appends `s` to `out` with every maximal invalid subpart replaced by U+FFFD. With
// `final == false` a well-formed but unfinished character at the very end is left out;
// returns how many bytes of `s` were consumed.
size_t utf8_append_lossy(std::string_view s, std::string& out, bool final);

}  // namespace sibyl::engine
