// The model's paged latent cache, host side: which pages are free, how many
// sessions (and the prefix index) hold each page, and the prefix index itself —
// full pages published under a hash of every token before their end, so a
// session whose prompt starts the same way shares them instead of computing them.
// Not thread-safe: the runtime calls it under its lock.
#pragma once
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "backends/backend.h"

namespace sibyl::engine {

struct KvPagesOptions {
  int64_t page_tokens = 64;
  int64_t budget_bytes = 0;  // the pool's size limit; whole pages
};

class KvPages {
 public:
  KvPages(backend::Backend& be, int64_t n_layers, int64_t row_width, const KvPagesOptions& options);
  ~KvPages();

  backend::KvPool& pool() { return *pool_; }
  int64_t page_tokens() const { return page_tokens_; }
  int64_t max_pages() const { return max_pages_; }
  size_t page_bytes() const { return page_bytes_; }
  // Pages anyone but the prefix index holds (the index's own pages can be evicted).
  int64_t pages_in_use() const;
  int64_t pages_cached() const { return static_cast<int64_t>(lru_.size()); }
  // Pages an allocation can still get (free, not yet created, or evictable from the index).
  int64_t pages_available() const;
  std::string describe() const;  // "N pages of P tokens (X MiB)"

  // A fresh page with one reference, or -1 when the budget is exhausted even after
  // evicting unused prefix pages. Grows the backend pool outside steps only.
  int32_t allocate();
  void retain(int32_t page);
  void release(int32_t page);
  int32_t refs(int32_t page) const { return refs_[static_cast<size_t>(page)]; }

  // The prefix index. A key covers all tokens from position 0 to the page's end
  // (chain_key); the page's own tokens are kept to rule out hash collisions.
  static uint64_t chain_key(uint64_t previous, const int32_t* page_tokens, int64_t n);
  void publish(uint64_t key, const int32_t* tokens, int32_t page);  // the index takes a reference
  int32_t find(uint64_t key, const int32_t* tokens);                // -1 when absent; marks it recently used
  void clear_index();

 private:
  struct Entry {
    int32_t page;
    std::vector<int32_t> tokens;
    std::list<uint64_t>::iterator lru;
  };
  bool evict_one();
  int64_t index_only() const;  // index pages no session holds

  backend::Backend& be_;
  std::unique_ptr<backend::KvPool> pool_;
  int64_t page_tokens_, max_pages_;
  size_t page_bytes_;
  std::vector<int32_t> refs_;  // per created page
  std::vector<int32_t> free_;  // created pages with no reference
  std::unordered_map<uint64_t, Entry> index_;
  std::list<uint64_t> lru_;  // index keys, least recently used first
};

// The pool as sessions hold it: `pages` is reset (under `mutex`) when the model goes, so
// a session outliving its model never touches freed memory. `mutex` is the model's step lock.
struct SharedKvPages {
  std::recursive_mutex mutex;
  std::unique_ptr<KvPages> pages;
};

}  // namespace sibyl::engine
