// A byte range [begin, end) of a text (a rendered prompt's untrusted content).
#pragma once
#include <cstddef>

namespace sibyl::engine {

struct TextRange {
  size_t begin = 0, end = 0;
};

}  // namespace sibyl::engine
