// Checks a grammar's token masks against the exact answer: every token's bytes read by a copy
// of the matcher, at each point of a text the grammar accepts.
#pragma once
#include <gtest/gtest.h>

#include <random>
#include <string>

#include "engine/grammar/matcher.h"
#include "engine/text/tokenizer.h"

namespace sibyl::engine::test {

// The trie walk's mask equals reading each token's bytes with a copy of the matcher.
inline void expect_exact_masks(const Tokenizer& tok, const std::shared_ptr<const Grammar>& g, const std::string& text) {
  const TokenTrie& trie = tok.text_trie();
  GrammarMatcher m(g);
  TokenMask mask;
  std::mt19937 rng(7);
  size_t at = 0, checked = 0;
  while (at <= text.size()) {
    m.fill_mask(trie, mask);
    ASSERT_EQ(mask.size(), (static_cast<size_t>(tok.vocab_size()) + 63) / 64);
    size_t allowed = 0;
    for (int32_t id = 0; id < tok.vocab_size(); ++id) {
      bool expect = false;
      if (tok.is_valid(id) && !tok.is_added(id)) {
        GrammarMatcher copy = m;
        expect = copy.accept(tok.token_bytes(id));
      }
      ASSERT_EQ(mask_has(mask, id), expect) << "token " << id << " after \"" << text.substr(0, at) << "\"";
      allowed += expect;
    }
    EXPECT_GT(allowed + (m.can_end() ? 1 : 0), 0u);
    ++checked;
    if (at == text.size()) break;
    const size_t n = std::min(text.size() - at, static_cast<size_t>(1 + rng() % 4));
    ASSERT_TRUE(m.accept(std::string_view(text).substr(at, n)));
    at += n;
  }
  EXPECT_GT(checked, 5u);
}

}  // namespace sibyl::engine::test
