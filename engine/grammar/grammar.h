// A context-free grammar over bytes, the form constrained decoding runs on. Rules are
// alternatives of sequences; every terminal is a set of bytes, so Unicode character classes
// become short UTF-8 byte sequences and a token is matched byte by byte (a character may be
// split across tokens). Compiled from GBNF (gbnf.h) or a JSON Schema (json_schema.h).
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace sibyl::engine {

using ByteSet = std::array<uint64_t, 4>;

inline bool byte_in(const ByteSet& set, uint8_t b) { return (set[b >> 6] >> (b & 63)) & 1; }
inline void add_bytes(ByteSet& set, uint8_t lo, uint8_t hi) {
  for (unsigned b = lo; b <= hi; ++b) set[b >> 6] |= uint64_t{1} << (b & 63);
}

struct GrammarElement {
  enum Kind : uint8_t { end, bytes, rule };  // end closes an alternative
  Kind kind = end;
  uint32_t index = 0;  // bytes: into Grammar::sets; rule: into Grammar::rules
};

struct Grammar {
  std::vector<GrammarElement> elements;     // the alternatives, each closed by an `end`
  std::vector<std::vector<uint32_t>> rules;  // per rule: the first element of each alternative
  std::vector<std::string> names;            // per rule, for messages
  std::vector<ByteSet> sets;
  uint32_t root = 0;
  // Bounded repetitions (x{m,n}) as chains of rules R_k ::= x R_{k-1} | empty (R_1 ::= x |
  // empty): chains[c][k - 1] is R_k. For reading at most d bytes, R_k with k > d behaves as
  // R_{d+1}: deep inside a long repetition, states share their masks.
  std::vector<std::vector<uint32_t>> chains;
};

// The grammar with up to `most` bytes of ASCII whitespace before it: an answer's grammar,
// where the format's blank line after </think> comes first (the answer channel trims it).
// Bounded, so that a model cannot put the answer off forever.
std::shared_ptr<const Grammar> after_whitespace(const Grammar& grammar, int most);

// Builds a Grammar rule by rule, sharing identical byte sets, and checks it when done.
class GrammarBuilder {
 public:
  uint32_t add_rule(std::string name);  // an empty rule, filled with add_alternative
  uint32_t set_index(const ByteSet& set);
  // An alternative of `rule`: its elements without the closing `end` (none: the empty string).
  void add_alternative(uint32_t rule, const std::vector<GrammarElement>& sequence);
  void add_chain(std::vector<uint32_t> rules) { g_.chains.push_back(std::move(rules)); }
  // Copies every rule of `g` in, named `prefix` + its name (grammars combined side by side);
  // returns the rule `g.root` became.
  uint32_t import(const Grammar& g, const std::string& prefix);
  // Errc::invalid_argument naming the rule when a rule has no alternative, or can reach
  // itself before reading a byte (left recursion, or a repetition of something that can be
  // empty): the matcher reads left to right and would never stop expanding it.
  std::shared_ptr<const Grammar> finish(uint32_t root);
  size_t size() const { return g_.elements.size(); }

 private:
  Grammar g_;
};

}  // namespace sibyl::engine
