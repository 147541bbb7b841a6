#include "engine/text/byte_level.h"

#include <array>

namespace sibyl::engine {

bool append_utf8(std::string& out, uint32_t cp) {
  if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return true;
}

namespace {

// GPT-2's table: printable Latin-1 bytes stand for themselves; the other 68 bytes (controls,
// space, DEL, NBSP, soft hyphen) take the code points from U+0100 up, in byte order, so that
// every token is visible text.
struct Alphabet {
  std::array<std::string, 256> char_of;
  std::array<int16_t, 324> byte_of;  // code point → byte, −1 outside the alphabet

  Alphabet() {
    byte_of.fill(-1);
    uint32_t next = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      uint32_t cp = printable ? b : next++;
      append_utf8(char_of[b], cp);
      byte_of[cp] = static_cast<int16_t>(b);
    }
  }
};

const Alphabet& alphabet() {
  static const Alphabet a;
  return a;
}

uint32_t decode_valid(std::string_view s, size_t i, size_t len) {
  auto b = [&](size_t k) { return static_cast<uint8_t>(s[i + k]); };
  switch (len) {
    case 1:
      return b(0);
    case 2:
      return (b(0) & 0x1Fu) << 6 | (b(1) & 0x3Fu);
    case 3:
      return (b(0) & 0x0Fu) << 12 | (b(1) & 0x3Fu) << 6 | (b(2) & 0x3Fu);
    default:
      return (b(0) & 0x07u) << 18 | (b(1) & 0x3Fu) << 12 | (b(2) & 0x3Fu) << 6 | (b(3) & 0x3Fu);
  }
}

}  // namespace

const std::string& byte_level_char(uint8_t b) { return alphabet().char_of[b]; }

bool byte_level_to_bytes(std::string_view token, std::string& bytes) {
  const Alphabet& a = alphabet();
  bytes.clear();
  for (size_t i = 0; i < token.size();) {
    Utf8Step st = utf8_step(token, i);
    if (st.kind != Utf8Step::ok) return false;
    uint32_t cp = decode_valid(token, i, st.length);
    if (cp >= a.byte_of.size() || a.byte_of[cp] < 0) return false;
    bytes += static_cast<char>(a.byte_of[cp]);
    i += st.length;
  }
  return true;
}

Utf8Step utf8_step(std::string_view s, size_t i) {
  auto byte = [&](size_t k) { return static_cast<uint8_t>(s[k]); };
  uint8_t c = byte(i);
  if (c < 0x80) return {Utf8Step::ok, 1};
  // Continuation count and the allowed range of the second byte (excludes overlongs,
  // surrogates and code points above U+10FFFF), as in the Unicode well-formedness table.
  size_t need;
  uint8_t lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) {
    need = 1;
  } else if (c >= 0xE0 && c <= 0xEF) {
    need = 2;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    need = 3;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return {Utf8Step::invalid, 1};
  }
  for (size_t k = 1; k <= need; ++k) {
    if (i + k >= s.size()) return {Utf8Step::truncated, k};
    uint8_t d = byte(i + k);
    if (d < lo || d > hi) return {Utf8Step::invalid, k};
    lo = 0x80;
    hi = 0xBF;
  }
  return {Utf8Step::ok, need + 1};
}

size_t utf8_first_invalid(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    // ASCII fast path: most text is mostly ASCII.
    if (static_cast<uint8_t>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    Utf8Step st = utf8_step(s, i);
    if (st.kind != Utf8Step::ok) return i;
    i += st.length;
  }
  return std::string_view::npos;
}

size_t utf8_append_lossy(std::string_view s, std::string& out, bool final) {
  static constexpr std::string_view kReplacement = "\xEF\xBF\xBD";
  size_t i = 0;
  while (i < s.size()) {
    Utf8Step st = utf8_step(s, i);
    if (st.kind == Utf8Step::ok) {
      out.append(s.substr(i, st.length));
    } else if (st.kind == Utf8Step::truncated && !final) {
      return i;
    } else {
      out.append(kReplacement);
    }
    i += st.length;
  }
  return i;
}

}  // namespace sibyl::engine
