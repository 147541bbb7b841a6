// A grammar applied to a request's tokens: the mask of what may come next — the text tokens
// whose bytes the grammar reads, end-of-sequence where it accepts, chosen special tokens read
// as their text — and the grammar following each token chosen.
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "engine/grammar/matcher.h"
#include "engine/text/tokenizer.h"

namespace sibyl::engine {

// A special token the grammar reads, as the bytes it stands for there: its own text (the
// think markers of a whole-output grammar) or a marker byte (tool_calls.h).
struct SpecialToken {
  int32_t id;
  std::string bytes;
};

class TokenConstraint {
 public:
  // `eos`: the model's end-of-sequence ids. The tokenizer must outlive this.
  TokenConstraint(std::shared_ptr<GrammarAutomaton> grammar, const Tokenizer& tokenizer, std::vector<int32_t> eos,
                  int64_t vocab, std::vector<SpecialToken> specials = {});

  const TokenMask& mask();  // for what was read so far
  // Reads the chosen token. Errc::invalid_argument when the mask allowed it not: every token
  // the grammar allows was banned otherwise (logit bias, unprintable ids).
  void follow(int32_t token);
  bool read(std::string_view text);  // forced text; false (nothing read) when the grammar rejects it

 private:
  GrammarMatcher matcher_;
  const Tokenizer& tokenizer_;
  std::vector<int32_t> eos_;
  std::vector<SpecialToken> specials_;
  int64_t vocab_;
  TokenMask mask_;
};

// Every id of the vocabulary but `banned` (the reasoning before a constrained answer may not
// end the reply).
TokenMask all_tokens_but(int64_t vocab, const std::vector<int32_t>& banned);

}  // namespace sibyl::engine
