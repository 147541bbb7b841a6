// A grammar as requests use it, compiled once and shared by every request and session (its
// automaton and cached masks grow with use): one reader for an answer, which may start after
// a blank line, and one for a whole output.
#pragma once
#include <memory>

#include "engine/grammar/matcher.h"

namespace sibyl::engine {

struct CompiledGrammar {
  explicit CompiledGrammar(const std::shared_ptr<const Grammar>& grammar)
      : answer(std::make_shared<GrammarAutomaton>(after_whitespace(*grammar, 3))),
        whole(std::make_shared<GrammarAutomaton>(grammar)) {}
  std::shared_ptr<GrammarAutomaton> answer, whole;
};

}  // namespace sibyl::engine
