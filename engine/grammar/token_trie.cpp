#include "engine/grammar/token_trie.h"

#include <algorithm>
#include <atomic>

namespace sibyl::engine {

TokenTrie TokenTrie::build(const std::vector<std::string>& bytes) {
  static std::atomic<uint64_t> next_id{1};
  TokenTrie t;
  t.id = next_id++;
  t.vocab_size = static_cast<int32_t>(bytes.size());
  std::vector<int32_t> order;
  for (size_t id = 0; id < bytes.size(); ++id)
    if (!bytes[id].empty() && bytes[id].size() <= UINT16_MAX) order.push_back(static_cast<int32_t>(id));
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return bytes[a] < bytes[b]; });
  std::vector<uint32_t> open;  // open[d] = the node at depth d + 1 on the current path
  const std::string* previous = nullptr;
  for (int32_t id : order) {
    const std::string& s = bytes[id];
    size_t common = 0;
    if (previous)
      while (common < previous->size() && common < s.size() && (*previous)[common] == s[common]) ++common;
    for (; open.size() > common; open.pop_back()) t.nodes[open.back()].end = static_cast<uint32_t>(t.nodes.size());
    for (size_t d = common; d < s.size(); ++d) {
      Node n;
      n.byte = static_cast<uint8_t>(s[d]);
      n.depth = static_cast<uint16_t>(d + 1);
      open.push_back(static_cast<uint32_t>(t.nodes.size()));
      t.nodes.push_back(n);
    }
    Node& last = t.nodes[open.back()];
    if (last.n_tokens == 0) last.first_token = static_cast<uint32_t>(t.tokens.size());
    ++last.n_tokens;  // equal strings are adjacent in the order: their ids stay contiguous
    t.tokens.push_back(id);
    t.max_depth = std::max(t.max_depth, static_cast<uint16_t>(s.size()));
    previous = &s;
  }
  for (; !open.empty(); open.pop_back()) t.nodes[open.back()].end = static_cast<uint32_t>(t.nodes.size());
  return t;
}

}  // namespace sibyl::engine
