#include "engine/grammar/utf8_ranges.h"

#include <algorithm>
#include <string>

#include "engine/text/byte_level.h"

namespace sibyl::engine {
namespace {

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
  std::string a, b;  // first and last never are surrogates: same length, at most 4 bytes
  append_utf8(a, first);
  append_utf8(b, last);
  Utf8Sequence s;
  s.length = static_cast<int>(std::min<size_t>(a.size(), 4));
  for (int k = 0; k < s.length; ++k) {
    s.lo[k] = static_cast<uint8_t>(a[static_cast<size_t>(k)]);
    s.hi[k] = static_cast<uint8_t>(b[static_cast<size_t>(k)]);
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
