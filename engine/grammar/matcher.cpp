#include "engine/grammar/matcher.h"

#include <algorithm>

namespace sibyl::engine {
namespace {

constexpr size_t kMaskMemoBytes = size_t{64} << 20;  // masks kept per grammar, at most
constexpr uint32_t kCutDepth = 3;  // stack levels a cut state keeps below its deepest top
constexpr uint16_t kExactBytes = 32;  // a cut state's mask decides tokens up to this long
constexpr size_t kChainClamp = kExactBytes + 1;  // R_k, k > this, reads like R_kChainClamp

}  // namespace

size_t GrammarAutomaton::KeyHash::operator()(const std::vector<uint32_t>& k) const {
  uint64_t h = 0x9e3779b97f4a7c15ull ^ k.size();
  for (uint32_t v : k) h = (h ^ v) * 0x100000001b3ull;
  return static_cast<size_t>(h ^ (h >> 29));
}

GrammarAutomaton::GrammarAutomaton(std::shared_ptr<const Grammar> grammar, size_t max_states)
    : g_(std::move(grammar)), max_states_(max_states) {
  const Grammar& g = *g_;
  element_rule_.assign(g.elements.size(), 0);
  for (uint32_t r = 0; r < g.rules.size(); ++r)
    for (uint32_t e : g.rules[r])
      for (;; ++e) {
        element_rule_[e] = r;
        if (g.elements[e].kind == GrammarElement::end) break;
      }
  // R_k (k >= 2) are laid out alike: "x R_{k-1}" then the empty alternative.
  shift_.assign(g.rules.size(), 0);
  for (const std::vector<uint32_t>& chain : g.chains)
    for (size_t k = kChainClamp + 1; k <= chain.size(); ++k)
      shift_[chain[k - 1]] = static_cast<int64_t>(g.rules[chain[kChainClamp - 1]][0]) -
                             static_cast<int64_t>(g.rules[chain[k - 1]][0]);
  build_start();
}

void GrammarAutomaton::build_start() {
  tops_.clear();
  accepting_ = cut_reached_ = false;
  for (uint32_t alt : g_->rules[g_->root]) expand(alt, kNone);
  start_ = intern_state();
}

void GrammarAutomaton::start_over_if_large() {
  if (states_.size() <= max_states_) return;
  frames_.clear();
  frame_ids_.clear();
  states_.clear();
  heads_.clear();
  state_ids_.clear();
  next_.clear();
  cut_of_.clear();
  cut_reached_at_.clear();
  memos_.clear();
  build_start();
  ++generation_;
}

uint32_t GrammarAutomaton::frame(uint32_t pos, uint32_t parent) {
  const uint64_t key = (uint64_t{pos} << 32) | parent;
  auto [it, added] = frame_ids_.try_emplace(key, static_cast<uint32_t>(frames_.size()));
  if (added) frames_.push_back({pos, parent, parent == kNone || parent == kCut ? 1 : frames_[parent].depth + 1});
  return it->second;
}

void GrammarAutomaton::expand(uint32_t pos, uint32_t parent) {
  const Grammar& g = *g_;
  work_.assign(1, {pos, parent});
  while (!work_.empty()) {
    const auto [p, up] = work_.back();
    work_.pop_back();
    const GrammarElement& e = g.elements[p];
    if (e.kind == GrammarElement::bytes) {
      tops_.push_back(frame(p, up));
    } else if (e.kind == GrammarElement::end) {
      if (up == kNone)
        accepting_ = true;
      else if (up == kCut)
        cut_reached_ = true;
      else
        work_.push_back({frames_[up].pos, frames_[up].parent});
    } else {
      // A call in last place returns straight to the caller's caller.
      const uint32_t ret = g.elements[p + 1].kind == GrammarElement::end ? up : frame(p + 1, up);
      const std::vector<uint32_t>& alts = g.rules[e.index];
      for (auto it = alts.rbegin(); it != alts.rend(); ++it) work_.push_back({*it, ret});
    }
  }
}

uint32_t GrammarAutomaton::intern_state() {
  std::sort(tops_.begin(), tops_.end());
  tops_.erase(std::unique(tops_.begin(), tops_.end()), tops_.end());
  if (tops_.empty() && !accepting_ && !cut_reached_) return kDead;
  tops_.push_back((accepting_ ? 1 : 0) | (cut_reached_ ? 2 : 0));  // the key: the tops and the flags
  auto [it, added] = state_ids_.try_emplace(tops_, static_cast<uint32_t>(states_.size()));
  tops_.pop_back();
  if (added) {
    states_.push_back({heads_.size(), static_cast<uint32_t>(tops_.size()), accepting_, cut_reached_});
    heads_.insert(heads_.end(), tops_.begin(), tops_.end());
    next_.resize(next_.size() + 256, kUnknown);
    cut_of_.push_back(kUnknown);
    cut_reached_at_.push_back(cut_reached_ ? 1 : 0);
  }
  return it->second;
}

uint32_t GrammarAutomaton::next(uint32_t state, uint8_t byte) {
  uint32_t& cached = next_[size_t{state} * 256 + byte];
  if (cached != kUnknown) return cached;
  tops_.clear();
  accepting_ = cut_reached_ = false;
  const Grammar& g = *g_;
  const State s = states_[state];
  for (size_t i = 0; i < s.n_heads; ++i) {
    const Frame f = frames_[heads_[s.first_head + i]];
    if (byte_in(g.sets[g.elements[f.pos].index], byte)) expand(f.pos + 1, f.parent);
  }
  const uint32_t to = intern_state();
  next_[size_t{state} * 256 + byte] = to;  // `cached` may have moved with next_
  return to;
}

void GrammarAutomaton::forget_masks_if_large(const TokenTrie& trie) {
  size_t kept = 0;
  for (const auto& [id, memo] : memos_) kept += memo.masks.size() + memo.cut_masks.size();
  if (kept * (static_cast<size_t>(trie.vocab_size) / 8 + 64) >= kMaskMemoBytes) memos_.clear();
}

uint32_t GrammarAutomaton::cut(uint32_t state) {
  if (cut_of_[state] != kUnknown) return cut_of_[state];
  const State s = states_[state];
  tops_.clear();
  accepting_ = s.accepting;
  cut_reached_ = s.cut_reached;
  // Every stack is cut at the same level, counted from the deepest top: the closing quote of
  // a string and the characters inside it stay together, above the cut.
  uint32_t deepest = 0;
  for (size_t i = 0; i < s.n_heads; ++i) deepest = std::max(deepest, frames_[heads_[s.first_head + i]].depth);
  const uint32_t keep_above = deepest > kCutDepth ? deepest - kCutDepth : 0;
  std::vector<uint32_t>& chain = chain_;
  for (size_t i = 0; i < s.n_heads; ++i) {
    chain.clear();
    uint32_t f = heads_[s.first_head + i];
    for (; f != kNone && f != kCut && (chain.empty() || frames_[f].depth > keep_above); f = frames_[f].parent)
      chain.push_back(f);
    uint32_t up = f == kNone || f == kCut ? f : kCut;  // a shallow stack is kept whole
    for (auto it = chain.rbegin(); it != chain.rend(); ++it) up = frame(canonical(frames_[*it].pos), up);
    tops_.push_back(up);
  }
  const uint32_t c = intern_state();
  cut_of_[state] = c;
  return c;
}

void GrammarAutomaton::walk(uint32_t state, const TokenTrie& trie, uint32_t first, uint32_t end, TokenMask& out) {
  walk_[trie.nodes[first].depth - 1] = state;
  for (uint32_t i = first; i < end;) {
    const TokenTrie::Node& node = trie.nodes[i];
    const uint32_t from = walk_[node.depth - 1];
    uint32_t s = next_[size_t{from} * 256 + node.byte];
    if (s == kUnknown) s = next(from, node.byte);
    if (s == kDead) {
      i = node.end;  // no token with this prefix can come next
      continue;
    }
    walk_[node.depth] = s;
    for (uint32_t k = 0; k < node.n_tokens; ++k) mask_set(out, trie.tokens[node.first_token + k]);
    ++i;
  }
}

const GrammarAutomaton::CutMask& GrammarAutomaton::cut_mask(uint32_t cut_state, const TokenTrie& trie, Memo& memo) {
  if (auto it = memo.cut_masks.find(cut_state); it != memo.cut_masks.end()) return it->second;
  CutMask m;
  m.accepted.assign((static_cast<size_t>(trie.vocab_size) + 63) / 64, 0);
  walk_[0] = cut_state;
  const uint32_t n = static_cast<uint32_t>(trie.nodes.size());
  for (uint32_t i = 0; i < n;) {
    const TokenTrie::Node& node = trie.nodes[i];
    path_[node.depth - 1u] = static_cast<char>(node.byte);
    if (node.depth > kExactBytes) {  // longer than a cut state decides
      m.open.emplace_back(i, path_.substr(0, node.depth));
      i = node.end;
      continue;
    }
    const uint32_t from = walk_[node.depth - 1];
    uint32_t s = next_[size_t{from} * 256 + node.byte];
    if (s == kUnknown) s = next(from, node.byte);
    if (s == kDead || cut_reached_at_[s]) {
      if (s != kDead) m.open.emplace_back(i, path_.substr(0, node.depth));  // the whole state decides it
      i = node.end;
      continue;
    }
    walk_[node.depth] = s;
    for (uint32_t k = 0; k < node.n_tokens; ++k) mask_set(m.accepted, trie.tokens[node.first_token + k]);
    ++i;
  }
  return memo.cut_masks.emplace(cut_state, std::move(m)).first->second;
}

const TokenMask& GrammarAutomaton::mask(uint32_t state, const TokenTrie& trie) {
  if (auto m = memos_.find(trie.id); m != memos_.end())
    if (auto it = m->second.masks.find(state); it != m->second.masks.end()) return it->second;
  forget_masks_if_large(trie);
  Memo& memo = memos_[trie.id];
  walk_.resize(static_cast<size_t>(trie.max_depth) + 1);
  path_.resize(static_cast<size_t>(trie.max_depth) + 1);
  TokenMask out;
  const uint32_t c = cut(state);
  if (c == state) {
    out.assign((static_cast<size_t>(trie.vocab_size) + 63) / 64, 0);
    if (!trie.nodes.empty()) walk(state, trie, 0, static_cast<uint32_t>(trie.nodes.size()), out);
  } else {
    const CutMask& m = cut_mask(c, trie, memo);
    out = m.accepted;
    for (const auto& [node, prefix] : m.open) {
      uint32_t s = state;
      for (size_t k = 0; k + 1 < prefix.size() && s != kDead; ++k) s = next(s, static_cast<uint8_t>(prefix[k]));
      if (s != kDead) walk(s, trie, node, trie.nodes[node].end, out);
    }
  }
  return memo.masks.emplace(state, std::move(out)).first->second;
}

size_t GrammarAutomaton::prepare(const TokenTrie& trie, size_t max_states) {
  std::lock_guard lock(mutex_);
  start_over_if_large();
  max_states = std::min(max_states, max_states_ / 2);  // leave room: preparing must not start over
  walk_.resize(static_cast<size_t>(trie.max_depth) + 1);
  path_.resize(static_cast<size_t>(trie.max_depth) + 1);
  std::vector<uint32_t> queue{start_};
  std::vector<uint8_t> seen(states_.size(), 0);
  seen[start_] = 1;
  for (size_t head = 0; head < queue.size() && head < max_states; ++head) {
    const uint32_t state = queue[head];
    const uint32_t c = cut(state);
    if (c == state)
      mask(state, trie);  // nothing to share: its own mask
    else
      cut_mask(c, trie, memos_[trie.id]);
    for (unsigned b = 0; b < 256; ++b) {
      const uint32_t to = next(state, static_cast<uint8_t>(b));
      if (to == kDead) continue;
      if (to >= seen.size()) seen.resize(states_.size(), 0);
      if (!seen[to]) {
        seen[to] = 1;
        queue.push_back(to);
      }
    }
  }
  return std::min(queue.size(), max_states);
}

GrammarMatcher::GrammarMatcher(std::shared_ptr<const Grammar> grammar)
    : GrammarMatcher(std::make_shared<GrammarAutomaton>(std::move(grammar))) {}

GrammarMatcher::GrammarMatcher(std::shared_ptr<GrammarAutomaton> automaton) : a_(std::move(automaton)) { reset(); }

uint32_t GrammarMatcher::current() const {
  a_->start_over_if_large();
  if (generation_ != a_->generation()) {  // read again from the start
    uint32_t s = a_->start();
    for (char c : read_) s = a_->next(s, static_cast<uint8_t>(c));  // was accepted: never dead
    state_ = s;
    generation_ = a_->generation();
  }
  return state_;
}

void GrammarMatcher::reset() {
  auto lock = a_->lock();
  read_.clear();
  state_ = a_->start();
  generation_ = a_->generation();
}

bool GrammarMatcher::accept(std::string_view bytes) {
  auto lock = a_->lock();
  uint32_t s = current();
  for (char c : bytes) {
    s = a_->next(s, static_cast<uint8_t>(c));
    if (s == GrammarAutomaton::kDead) return false;
  }
  state_ = s;
  read_.append(bytes);
  return true;
}

bool GrammarMatcher::can_accept(std::string_view bytes) const {
  auto lock = a_->lock();
  uint32_t s = current();
  for (char c : bytes)
    if ((s = a_->next(s, static_cast<uint8_t>(c))) == GrammarAutomaton::kDead) return false;
  return true;
}

bool GrammarMatcher::can_end() const {
  auto lock = a_->lock();
  return a_->accepting(current());
}

bool GrammarMatcher::finished() const {
  auto lock = a_->lock();
  return a_->finished(current());
}

void GrammarMatcher::fill_mask(const TokenTrie& trie, TokenMask& allowed) const {
  auto lock = a_->lock();
  allowed = a_->mask(current(), trie);
}

}  // namespace sibyl::engine
