#include "engine/grammar/token_constraint.h"

#include <algorithm>

#include "engine/core/failure.h"

namespace sibyl::engine {
namespace {

void set(TokenMask& m, int64_t vocab, int32_t id, bool on) {
  if (id < 0 || id >= vocab) return;
  const uint64_t bit = uint64_t{1} << (id & 63);
  uint64_t& word = m[static_cast<size_t>(id) >> 6];
  word = on ? word | bit : word & ~bit;
}

}  // namespace

TokenConstraint::TokenConstraint(std::shared_ptr<GrammarAutomaton> grammar, const Tokenizer& tokenizer,
                                 std::vector<int32_t> eos, int64_t vocab, std::vector<SpecialToken> specials)
    : matcher_(std::move(grammar)),
      tokenizer_(tokenizer),
      eos_(std::move(eos)),
      specials_(std::move(specials)),
      vocab_(vocab) {}

const TokenMask& TokenConstraint::mask() {
  matcher_.fill_mask(tokenizer_.text_trie(), mask_);
  mask_.resize(static_cast<size_t>((vocab_ + 63) / 64), 0);
  const bool can_end = matcher_.can_end();
  for (int32_t id : eos_) set(mask_, vocab_, id, can_end);
  for (const SpecialToken& special : specials_) set(mask_, vocab_, special.id, matcher_.can_accept(special.bytes));
  return mask_;
}

void TokenConstraint::follow(int32_t token) {
  if (token < 0 || token >= vocab_ || static_cast<size_t>(token) >= mask_.size() * 64 || !mask_has(mask_, token))
    fail(Errc::invalid_argument,
         "no token the grammar allows here can be chosen (all of them are banned by the logit bias or unprintable)");
  if (std::find(eos_.begin(), eos_.end(), token) != eos_.end()) return;
  std::string bytes = tokenizer_.token_bytes(token);
  for (const SpecialToken& special : specials_)
    if (special.id == token) bytes = special.bytes;
  if (!matcher_.accept(bytes))  // the mask said it could
    fail(Errc::internal, "the grammar rejected token " + std::to_string(token) + ", which its mask allowed");
}

bool TokenConstraint::read(std::string_view text) { return matcher_.accept(text); }

TokenMask all_tokens_but(int64_t vocab, const std::vector<int32_t>& banned) {
  TokenMask m(static_cast<size_t>((vocab + 63) / 64), ~uint64_t{0});
  for (int32_t id : banned) set(m, vocab, id, false);
  return m;
}

}  // namespace sibyl::engine
