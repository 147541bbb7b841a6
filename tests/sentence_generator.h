// Random sentences of a grammar, for tests that check masks against the grammar's language.
#pragma once
#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "engine/grammar/grammar.h"

namespace sibyl::engine::test {

// Random sentences of a grammar, derived from its rules. Past `kDeep` levels only the
// alternatives that end soonest are taken, so derivations stop.
class SentenceGenerator {
 public:
  explicit SentenceGenerator(const Grammar& g) : g_(g), height_(g.rules.size(), kInfinite) {
    for (bool changed = true; changed;) {  // the least derivation height of each rule
      changed = false;
      for (size_t r = 0; r < g.rules.size(); ++r)
        for (uint32_t alt : g.rules[r]) {
          const uint32_t h = alternative_height(alt);
          if (h < height_[r]) {
            height_[r] = h;
            changed = true;
          }
        }
    }
  }

  std::string sentence(std::mt19937& rng) {
    std::string out;
    derive(g_.root, rng, 0, out);
    return out;
  }

 private:
  static constexpr uint32_t kInfinite = UINT32_MAX / 2;
  static constexpr int kDeep = 10;

  uint32_t alternative_height(uint32_t e) const {
    uint32_t h = 1;
    for (; g_.elements[e].kind != GrammarElement::end; ++e)
      if (g_.elements[e].kind == GrammarElement::rule) h = std::max(h, height_[g_.elements[e].index] + 1);
    return std::min(h, kInfinite);
  }

  void derive(uint32_t rule, std::mt19937& rng, int depth, std::string& out) {
    std::vector<uint32_t> choices;
    for (uint32_t alt : g_.rules[rule])
      if (depth < kDeep || alternative_height(alt) <= height_[rule]) choices.push_back(alt);
    for (uint32_t e = choices[rng() % choices.size()]; g_.elements[e].kind != GrammarElement::end; ++e) {
      const GrammarElement& el = g_.elements[e];
      if (el.kind == GrammarElement::rule) {
        derive(el.index, rng, depth + 1, out);
        continue;
      }
      std::vector<uint8_t> bytes;
      for (unsigned b = 0; b < 256; ++b)
        if (byte_in(g_.sets[el.index], static_cast<uint8_t>(b))) bytes.push_back(static_cast<uint8_t>(b));
      out += static_cast<char>(bytes[rng() % bytes.size()]);
    }
  }

  const Grammar& g_;
  std::vector<uint32_t> height_;
};

}  // namespace sibyl::engine::test
