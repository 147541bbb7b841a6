// Code point ranges as UTF-8 byte ranges: [first, last] becomes a few sequences, each a byte
// range per position, whose byte strings are exactly the encodings of those code points.
#pragma once
#include <cstdint>
#include <vector>

namespace sibyl::engine {

struct Utf8Sequence {
  int length = 0;
  uint8_t lo[4] = {}, hi[4] = {};
};

// Surrogates (U+D800–U+DFFF) have no encoding and are left out; last is capped at U+10FFFF.
std::vector<Utf8Sequence> utf8_sequences(uint32_t first, uint32_t last);

}  // namespace sibyl::engine
