#include "engine/grammar/grammar.h"

#include "engine/core/failure.h"

namespace sibyl::engine {
namespace {

constexpr size_t kMaxElements = size_t{1} << 22;  // a bound on what a grammar may expand to

std::vector<bool> nullable_rules(const Grammar& g) {
  std::vector<bool> nullable(g.rules.size(), false);
  for (bool changed = true; changed;) {
    changed = false;
    for (size_t r = 0; r < g.rules.size(); ++r) {
      if (nullable[r]) continue;
      for (uint32_t e : g.rules[r]) {
        while (g.elements[e].kind == GrammarElement::rule && nullable[g.elements[e].index]) ++e;
        if (g.elements[e].kind == GrammarElement::end) {
          nullable[r] = changed = true;
          break;
        }
      }
    }
  }
  return nullable;
}

// A rule reachable from itself through leading references (skipping empty-able ones).
void check_left_recursion(const Grammar& g) {
  const std::vector<bool> nullable = nullable_rules(g);
  std::vector<std::vector<uint32_t>> leads(g.rules.size());
  for (size_t r = 0; r < g.rules.size(); ++r)
    for (uint32_t e : g.rules[r])
      for (; g.elements[e].kind == GrammarElement::rule; ++e) {
        leads[r].push_back(g.elements[e].index);
        if (!nullable[g.elements[e].index]) break;
      }
  // Iterative depth-first search: 1 = on the current path, 2 = done.
  std::vector<uint8_t> state(g.rules.size(), 0);
  for (uint32_t start = 0; start < g.rules.size(); ++start) {
    if (state[start]) continue;
    std::vector<std::pair<uint32_t, size_t>> path{{start, 0}};
    state[start] = 1;
    while (!path.empty()) {
      auto& [r, next] = path.back();
      if (next == leads[r].size()) {
        state[r] = 2;
        path.pop_back();
        continue;
      }
      const uint32_t q = leads[r][next++];
      if (state[q] == 1)
        fail(Errc::invalid_argument,
             "grammar rule '" + g.names[q] +
                 "' can reach itself before reading any text (left recursion, or a repetition of something "
                 "that can be empty); write it so that every repetition reads something");
      if (state[q] == 0) {
        state[q] = 1;
        path.push_back({q, 0});
      }
    }
  }
}

}  // namespace

uint32_t GrammarBuilder::add_rule(std::string name) {
  g_.rules.emplace_back();
  g_.names.push_back(std::move(name));
  return static_cast<uint32_t>(g_.rules.size() - 1);
}

uint32_t GrammarBuilder::set_index(const ByteSet& set) {
  for (size_t i = 0; i < g_.sets.size(); ++i)
    if (g_.sets[i] == set) return static_cast<uint32_t>(i);
  g_.sets.push_back(set);
  return static_cast<uint32_t>(g_.sets.size() - 1);
}

void GrammarBuilder::add_alternative(uint32_t rule, const std::vector<GrammarElement>& sequence) {
  if (g_.elements.size() + sequence.size() + 1 > kMaxElements)
    fail(Errc::invalid_argument, "the grammar expands to more than " + std::to_string(kMaxElements) +
                                     " elements (repetition counts too large?)");
  g_.rules[rule].push_back(static_cast<uint32_t>(g_.elements.size()));
  g_.elements.insert(g_.elements.end(), sequence.begin(), sequence.end());
  g_.elements.push_back(GrammarElement{});
}

uint32_t GrammarBuilder::import(const Grammar& g, const std::string& prefix) {
  const uint32_t first = static_cast<uint32_t>(g_.rules.size());
  for (const std::string& name : g.names) add_rule(prefix + name);
  std::vector<uint32_t> sets(g.sets.size());
  for (size_t i = 0; i < g.sets.size(); ++i) sets[i] = set_index(g.sets[i]);
  for (size_t r = 0; r < g.rules.size(); ++r)
    for (uint32_t e : g.rules[r]) {
      std::vector<GrammarElement> sequence;
      for (; g.elements[e].kind != GrammarElement::end; ++e) {
        const GrammarElement& x = g.elements[e];
        sequence.push_back({x.kind, x.kind == GrammarElement::bytes ? sets[x.index] : first + x.index});
      }
      add_alternative(first + static_cast<uint32_t>(r), sequence);
    }
  for (const std::vector<uint32_t>& chain : g.chains) {
    std::vector<uint32_t> moved;
    for (uint32_t r : chain) moved.push_back(first + r);
    add_chain(std::move(moved));
  }
  return first + g.root;
}

std::shared_ptr<const Grammar> after_whitespace(const Grammar& grammar, int most) {
  auto g = std::make_shared<Grammar>(grammar);
  ByteSet space{};
  for (uint8_t b : {' ', '\t', '\r', '\n'}) add_bytes(space, b, b);
  g->sets.push_back(space);
  const GrammarElement s{GrammarElement::bytes, static_cast<uint32_t>(g->sets.size() - 1)};
  std::vector<uint32_t> alternatives;  // lead ::= root | s root | s s root | ...
  for (int n = 0; n <= most; ++n) {
    alternatives.push_back(static_cast<uint32_t>(g->elements.size()));
    g->elements.insert(g->elements.end(), static_cast<size_t>(n), s);
    g->elements.push_back({GrammarElement::rule, grammar.root});
    g->elements.push_back({});
  }
  g->rules.push_back(std::move(alternatives));
  g->names.push_back("leading-whitespace");
  g->root = static_cast<uint32_t>(g->rules.size() - 1);
  return g;
}

std::shared_ptr<const Grammar> GrammarBuilder::finish(uint32_t root) {
  for (size_t r = 0; r < g_.rules.size(); ++r)
    if (g_.rules[r].empty()) fail(Errc::invalid_argument, "grammar rule '" + g_.names[r] + "' has no alternative");
  if (root >= g_.rules.size()) fail(Errc::invalid_argument, "the grammar has no root rule");
  g_.root = root;
  check_left_recursion(g_);
  return std::make_shared<const Grammar>(std::move(g_));
}

}  // namespace sibyl::engine
