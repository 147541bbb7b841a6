// Reading a grammar byte by byte, and which tokens may come next.
//
// A reader's state is a set of parse stacks sharing their tails (a graph-structured stack):
// each stack's top is a byte set the next byte may match; a rule called last in an
// alternative replaces its caller's frame, so repetitions do not grow the stacks. Frames and
// states are interned, which turns the reader into a deterministic automaton built lazily:
// a byte from a known state is one table lookup. That is what makes the mask cheap — the
// vocabulary's trie is walked with lookups, and a state's mask is kept once computed (a
// string's inside, a list's separator recur token after token). States that differ only
// deep in their stacks (the same string rule under different properties) share the bulk of
// their masks: the walk runs once on the state cut to its top frames, and only the tokens
// that read past the cut (a string's closing quote and what follows) are walked again from
// the whole state.
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "engine/grammar/grammar.h"
#include "engine/grammar/token_trie.h"

namespace sibyl::engine {

// How many states GrammarAutomaton::prepare explores by default.
constexpr size_t kPrepareStates = 4096;
// States an automaton holds before it starts over (each costs about 1 KiB of transitions).
constexpr size_t kMaxAutomatonStates = 16384;

// Bit `id` set: token id may come next.
using TokenMask = std::vector<uint64_t>;
inline bool mask_has(const TokenMask& m, int32_t id) { return (m[static_cast<size_t>(id) >> 6] >> (id & 63)) & 1; }
inline void mask_set(TokenMask& m, int32_t id) { m[static_cast<size_t>(id) >> 6] |= uint64_t{1} << (id & 63); }

// The automaton of one grammar, shared by every reader of it (thread-safe).
class GrammarAutomaton {
 public:
  static constexpr uint32_t kDead = UINT32_MAX;

  explicit GrammarAutomaton(std::shared_ptr<const Grammar> grammar, size_t max_states = kMaxAutomatonStates);
  const Grammar& grammar() const { return *g_; }

  // Past its budget of states (a grammar with deep recursion, used for long), the automaton
  // forgets everything and starts over; readers notice the new generation and read their
  // bytes again. Call with the lock held, before touching any state.
  void start_over_if_large();
  uint64_t generation() const { return generation_; }

  // The states below are only valid while `lock()` is held.
  std::unique_lock<std::mutex> lock() { return std::unique_lock<std::mutex>(mutex_); }
  uint32_t start() const { return start_; }
  uint32_t next(uint32_t state, uint8_t byte);  // kDead when the grammar rejects the byte
  bool accepting(uint32_t state) const { return states_[state].accepting; }
  bool finished(uint32_t state) const { return states_[state].n_heads == 0; }
  // The tokens of `trie` whose bytes can be read from `state`, as bits over its vocabulary.
  const TokenMask& mask(uint32_t state, const TokenTrie& trie);

  // Computes ahead, for this vocabulary, the masks of the cut states reachable within
  // `max_states` states of the start (breadth first, byte by byte): the grammar's compile step
  // for a vocabulary, so that first uses cost no walk of the whole trie. Locks the automaton.
  // Returns the states visited.
  size_t prepare(const TokenTrie& trie, size_t max_states);

  size_t state_count() const { return states_.size(); }

 private:
  static constexpr uint32_t kNone = UINT32_MAX, kUnknown = UINT32_MAX - 1, kCut = UINT32_MAX - 2;
  struct Frame {
    uint32_t pos;     // the element read next in this frame's alternative
    uint32_t parent;  // the frame to return to at the alternative's end (kNone: the root,
                      // kCut: a cut stack, whose caller is not known)
    uint32_t depth;   // frames from the stack's bottom, this one included
  };
  struct State {
    size_t first_head;  // into heads_
    uint32_t n_heads;
    bool accepting;     // the bytes read so far form a whole sentence
    bool cut_reached;   // a cut stack returned past its cut: what follows is not known here
  };
  // The mask of a cut state: tokens read without reaching the cut, and the trie nodes (with
  // their prefixes) where the cut was reached or kExactBytes were passed, whose subtrees
  // the whole state decides.
  struct CutMask {
    TokenMask accepted;
    std::vector<std::pair<uint32_t, std::string>> open;
  };
  // Masks by state, per trie (a grammar may serve models with different vocabularies).
  struct Memo {
    std::unordered_map<uint32_t, TokenMask> masks;
    std::unordered_map<uint32_t, CutMask> cut_masks;
  };
  struct KeyHash {
    size_t operator()(const std::vector<uint32_t>& k) const;
  };

  void build_start();
  uint32_t frame(uint32_t pos, uint32_t parent);
  // Adds the stack tops reached from frame (pos, parent) before the next byte to `tops_`.
  void expand(uint32_t pos, uint32_t parent);
  uint32_t intern_state();  // from tops_, accepting_ and cut_reached_
  // The state with every stack cut below its top frames, and positions deep inside a long
  // repetition moved to where the repetition has kChainClamp steps left (Grammar::chains):
  // the same tokens of up to kExactBytes bytes come next from both.
  uint32_t cut(uint32_t state);
  uint32_t canonical(uint32_t pos) const { return static_cast<uint32_t>(pos + shift_[element_rule_[pos]]); }
  const CutMask& cut_mask(uint32_t cut_state, const TokenTrie& trie, Memo& memo);
  // Sets the bits of the tokens in the subtree [first, end) of the trie readable from
  // `state`, the state at the subtree's parent.
  void walk(uint32_t state, const TokenTrie& trie, uint32_t first, uint32_t end, TokenMask& out);
  void forget_masks_if_large(const TokenTrie& trie);

  std::shared_ptr<const Grammar> g_;
  size_t max_states_;
  uint64_t generation_ = 0;
  std::mutex mutex_;
  std::vector<Frame> frames_;
  std::unordered_map<uint64_t, uint32_t> frame_ids_;
  std::vector<State> states_;
  std::vector<uint32_t> heads_;
  std::unordered_map<std::vector<uint32_t>, uint32_t, KeyHash> state_ids_;
  std::vector<uint32_t> next_;  // [state * 256 + byte]
  uint32_t start_ = 0;
  // Scratch of the state being built.
  std::vector<uint32_t> tops_;
  bool accepting_ = false, cut_reached_ = false;
  std::vector<std::pair<uint32_t, uint32_t>> work_;
  std::vector<uint32_t> cut_of_;  // by state: its cut state, or kUnknown
  std::vector<uint32_t> chain_;
  std::vector<uint32_t> element_rule_;  // by element: its rule
  std::vector<int64_t> shift_;          // by rule: to the same position of its chain's clamp rule
  std::vector<uint8_t> cut_reached_at_;  // by state: State::cut_reached, compact for the walk
  std::unordered_map<uint64_t, Memo> memos_;
  std::vector<uint32_t> walk_;
  std::string path_;
};

// One reader's position in a grammar: copyable (it keeps the bytes it read, to find its
// place again when the automaton starts over).
class GrammarMatcher {
 public:
  explicit GrammarMatcher(std::shared_ptr<const Grammar> grammar);
  explicit GrammarMatcher(std::shared_ptr<GrammarAutomaton> automaton);

  // Reads `bytes`; false, with the state unchanged, when the grammar rejects them.
  bool accept(std::string_view bytes);
  bool can_accept(std::string_view bytes) const;  // accept() would succeed (nothing is read)
  bool can_end() const;    // the bytes read form a whole sentence of the grammar
  bool finished() const;   // nothing more can be read
  // The trie's tokens whose bytes can come next; ids outside the trie (special tokens) are
  // clear, the caller decides about them.
  void fill_mask(const TokenTrie& trie, TokenMask& allowed) const;
  void reset();

 private:
  uint32_t current() const;  // the state of the bytes read (automaton locked)

  std::shared_ptr<GrammarAutomaton> a_;
  mutable uint32_t state_ = 0;
  mutable uint64_t generation_ = 0;
  std::string read_;
};

}  // namespace sibyl::engine
