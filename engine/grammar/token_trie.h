// The vocabulary's token byte strings as a trie laid out in preorder: a constrained step
// walks it once, reading each shared prefix once and skipping a whole subtree as soon as
// the grammar rejects its prefix.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace sibyl::engine {

struct TokenTrie {
  struct Node {
    uint8_t byte = 0;
    uint16_t depth = 0;        // 1 for a token's first byte
    uint32_t end = 0;          // one past the last node of this node's subtree
    uint32_t first_token = 0;  // the ids spelled exactly by this prefix: tokens[first_token ..]
    uint32_t n_tokens = 0;
  };
  std::vector<Node> nodes;  // preorder, the (empty) root left out
  std::vector<int32_t> tokens;
  int32_t vocab_size = 0;
  uint16_t max_depth = 0;
  uint64_t id = 0;  // unique per build: what caches of masks are keyed by

  // bytes[id] is token id's text; ids with empty text are left out (special tokens, holes).
  static TokenTrie build(const std::vector<std::string>& bytes);
};

}  // namespace sibyl::engine
