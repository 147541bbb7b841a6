// One sequence's page table: the pages holding its positions, in order, and the
// prefix keys of its full pages. Shared pages are copied before a write
// (copy-on-write); fork shares every page; truncate releases the pages past a position.
#pragma once
#include <cstdint>
#include <vector>

#include "engine/runtime/kv_pages.h"

namespace sibyl::engine {

struct PageCopy {
  int32_t dst, src;
};

class SeqPages {
 public:
  const std::vector<int32_t>& pages() const { return pages_; }

  // Makes positions [from, to) writable: allocates missing pages and replaces shared ones
  // by private copies (listed in `copies`, to run before the write). False when the pool
  // has no page left; the pages obtained so far stay in the table.
  bool prepare_write(KvPages& kv, int64_t from, int64_t to, std::vector<PageCopy>& copies);
  // Shares cached pages of `tokens` (the sequence's whole history, `from` of them already
  // in the table at a page boundary) while full pages match the prefix index, leaving at
  // least `keep` tokens unmatched. Returns how many tokens were covered.
  int64_t share_prefix(KvPages& kv, const std::vector<int32_t>& tokens, int64_t from, int64_t end, int64_t keep);
  // Publishes the full pages among the first `n` tokens that are not yet published.
  void publish(KvPages& kv, const std::vector<int32_t>& tokens, int64_t n);
  void truncate(KvPages& kv, int64_t positions);
  void share_from(KvPages& kv, const SeqPages& other);
  void release(KvPages& kv) { truncate(kv, 0); }

 private:
  uint64_t key_before(size_t page) const { return page == 0 ? 0x5eedu : keys_[page - 1]; }

  std::vector<int32_t> pages_;
  std::vector<uint64_t> keys_;  // chain key of each full page counted so far (keys_.size() <= pages_.size())
};

}  // namespace sibyl::engine
