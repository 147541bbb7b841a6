#include "engine/runtime/seq_pages.h"

#include "engine/core/failure.h"

namespace sibyl::engine {

bool SeqPages::prepare_write(KvPages& kv, int64_t from, int64_t to, std::vector<PageCopy>& copies) {
  const int64_t P = kv.page_tokens();
  if (to <= from) return true;
  // All pages first; the table changes only when every one was obtained, so a full pool
  // leaves it as it was (a shared page is never swapped for an uncopied one).
  struct Swap {
    int64_t slot;
    int32_t fresh, old;
  };
  std::vector<Swap> swaps;
  std::vector<int32_t> added;
  auto undo = [&] {
    for (const Swap& s : swaps) kv.release(s.fresh);
    for (int32_t p : added) kv.release(p);
    return false;
  };
  try {
    for (int64_t slot = from / P; slot <= (to - 1) / P; ++slot) {
      if (slot < static_cast<int64_t>(pages_.size())) {
        if (kv.refs(pages_[slot]) == 1) continue;
        const int32_t fresh = kv.allocate();
        if (fresh < 0) return undo();
        swaps.push_back({slot, fresh, pages_[slot]});
      } else {
        const int32_t fresh = kv.allocate();
        if (fresh < 0) return undo();
        added.push_back(fresh);
      }
    }
    copies.reserve(copies.size() + swaps.size());
    pages_.reserve(pages_.size() + added.size());
  } catch (...) {
    undo();
    throw;
  }
  for (const Swap& s : swaps) {
    copies.push_back({s.fresh, s.old});
    kv.release(s.old);
    pages_[s.slot] = s.fresh;
    keys_.resize(std::min(keys_.size(), static_cast<size_t>(s.slot)));  // its content will change
  }
  pages_.insert(pages_.end(), added.begin(), added.end());
  return true;
}

int64_t SeqPages::share_prefix(KvPages& kv, const std::vector<int32_t>& tokens, int64_t from, int64_t end,
                               int64_t keep) {
  const int64_t P = kv.page_tokens();
  if (from % P != 0 || static_cast<int64_t>(pages_.size()) != from / P) return 0;
  if (keys_.size() < pages_.size()) publish(kv, tokens, from);  // keys of the pages held so far
  if (keys_.size() < pages_.size()) return 0;
  int64_t pos = from;
  while (pos + P <= end - keep) {
    const uint64_t key = KvPages::chain_key(key_before(pages_.size()), tokens.data() + pos, P);
    const int32_t page = kv.find(key, tokens.data() + pos);
    if (page < 0) break;
    kv.retain(page);
    pages_.push_back(page);
    keys_.push_back(key);
    pos += P;
  }
  return pos - from;
}

void SeqPages::publish(KvPages& kv, const std::vector<int32_t>& tokens, int64_t n) {
  const int64_t P = kv.page_tokens();
  const size_t full = static_cast<size_t>(std::min<int64_t>(n / P, static_cast<int64_t>(pages_.size())));
  while (keys_.size() < full) {
    const size_t k = keys_.size();
    const uint64_t key = KvPages::chain_key(key_before(k), tokens.data() + k * P, P);
    keys_.push_back(key);
    kv.publish(key, tokens.data() + k * P, pages_[k]);
  }
}

void SeqPages::truncate(KvPages& kv, int64_t positions) {
  const int64_t P = kv.page_tokens();
  const size_t keep = static_cast<size_t>((positions + P - 1) / P);
  while (pages_.size() > keep) {
    kv.release(pages_.back());
    pages_.pop_back();
  }
  keys_.resize(std::min(keys_.size(), static_cast<size_t>(positions / P)));
}

void SeqPages::share_from(KvPages& kv, const SeqPages& other) {
  release(kv);
  pages_ = other.pages_;
  keys_ = other.keys_;
  for (int32_t p : pages_) kv.retain(p);
}

}  // namespace sibyl::engine
