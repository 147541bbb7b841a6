// GBNF, the grammar text llama.cpp users know: `name ::= alternatives`, "literals",
// [character classes] (with ^, ranges and escapes), `.` for any character, ( groups ),
// the repetitions * + ? {m} {m,} {m,n}, and # comments. Rules may span lines; a new rule
// starts where `name ::=` appears.
#pragma once
#include <memory>
#include <string_view>

#include "engine/grammar/grammar.h"

namespace sibyl::engine {

// Errc::invalid_argument naming the line and column for malformed text, an undefined rule,
// a missing root rule or left recursion.
std::shared_ptr<const Grammar> parse_gbnf(std::string_view text, std::string_view root = "root");

}  // namespace sibyl::engine
