#include "grammar/utf8_ranges.h"

namespace sibyl::engine {
namespace {

int encode(uint32_t cp, uint8_t out[4]) {
  if (cp < 0x80) {
    out[0] = static_cast<uint8_t>(cp);
    return 1;
  }
  if (cp < 0x800) {
    out[0] = static_cast<uint8_t>(0xC0 | (cp >> 6));
    out[1] = static_cast<uint8_t>(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    out[0] = static_cast<uint8_t>(0xE0 | (cp >> 12));
    out[1] = static_cast<uint8_t>(0x80 | ((cp >> 6) & 0x3F));
    out[2] = static_cast<uint8_t>(0x80 | (cp & 0x3F));
    return 3;
  }
  out[0] = static_cast<uint8_t>(0xF0 | (cp >> 18));
  out[1] = static_cast<uint8_t>(0x80 | ((cp >> 12) & 0x3F));
  out[2] = static_cast<uint8_t>(0x80 | ((cp >> 6) & 0x3F));
  out[3] = static_cast<uint8_t>(0x80 | (cp & 0x3F));
  return 4;
}

// [first, last] within one encoded length: split until every continuation position spans
// either a whole 64-value block or lies under one fixed prefix, so that position-wise byte
// ranges describe exactly the range.
void split(uint32_t first, uint32_t last, std::vector<Utf8Sequence>& out) {
  for (int i = 1; i < 4; ++i) {
    const uint32_t m = (uint32_t{1} << (6 * i)) - 1;
    if ((first & ~m) == (last & ~m)) continue;
    if ((first & m) != 0) {
      split(first, first | m, out);
      split((first | m) + 1, last, out);
      return;
    }
    if ((last & m) != m) {
      split(first, (last & ~m) - 1, out);
      split(last & ~m, last, out);
      return;
    }
  }
  Utf8Sequence s;
  uint8_t a[4], b[4];
  s.length = encode(first, a);
  encode(last, b);
  for (int k = 0; k < s.length; ++k) {
    s.lo[k] = a[k];
    s.hi[k] = b[k];
  }
  out.push_back(s);
}

}  // namespace

std::vector<Utf8Sequence> utf8_sequences(uint32_t first, uint32_t last) {
  std::vector<Utf8Sequence> out;
  if (last > 0x10FFFF) last = 0x10FFFF;
  // Pieces that share an encoded length and skip the surrogates.
  const uint32_t bounds[][2] = {{0, 0x7F}, {0x80, 0x7FF}, {0x800, 0xD7FF}, {0xE000, 0xFFFF}, {0x10000, 0x10FFFF}};
  for (const auto& b : bounds) {
    const uint32_t lo = first > b[0] ? first : b[0], hi = last < b[1] ? last : b[1];
    if (lo <= hi) split(lo, hi, out);
  }
  return out;
}

}  // namespace sibyl::engine
