#include "engine/runtime/kv_pages.h"

#include <xxhash.h>

#include <algorithm>

#include "engine/core/failure.h"

namespace sibyl::engine {

KvPages::KvPages(backend::Backend& be, int64_t n_layers, int64_t row_width, const KvPagesOptions& options)
    : be_(be),
      pool_(be.create_kv_pool(n_layers, row_width, options.page_tokens)),
      page_tokens_(options.page_tokens),
      page_bytes_(static_cast<size_t>(n_layers * row_width * options.page_tokens) * 4) {
  if (page_tokens_ <= 0) fail(Errc::invalid_argument, "KV page size must be positive");
  max_pages_ = static_cast<int64_t>(static_cast<uint64_t>(options.budget_bytes) / page_bytes_);
  if (max_pages_ < 1)
    fail(Errc::invalid_argument, "the KV cache budget of " + std::to_string(options.budget_bytes) +
                                     " bytes is smaller than one page (" + std::to_string(page_bytes_) + " bytes)");
  max_pages_ = std::min<int64_t>(max_pages_, INT32_MAX);
}

KvPages::~KvPages() = default;

int64_t KvPages::index_only() const {
  return std::count_if(index_.begin(), index_.end(), [&](const auto& e) { return refs_[e.second.page] == 1; });
}

int64_t KvPages::pages_in_use() const { return static_cast<int64_t>(refs_.size() - free_.size()) - index_only(); }

int64_t KvPages::pages_available() const {
  return max_pages_ - static_cast<int64_t>(refs_.size()) + static_cast<int64_t>(free_.size()) + index_only();
}

std::string KvPages::describe() const {
  return std::to_string(max_pages_) + " pages of " + std::to_string(page_tokens_) + " tokens (" +
         std::to_string(static_cast<double>(max_pages_) * static_cast<double>(page_bytes_) / (1 << 20)) + " MiB)";
}

int32_t KvPages::allocate() {
  if (free_.empty() && static_cast<int64_t>(refs_.size()) >= max_pages_) {
    while (free_.empty() && evict_one()) {
    }
    if (free_.empty()) return -1;
  }
  if (free_.empty()) {  // create pages: grow the backend pool geometrically, within the budget
    const int64_t have = static_cast<int64_t>(refs_.size());
    const int64_t want = std::min<int64_t>(max_pages_, std::max<int64_t>(have + 1, have + have / 2 + 16));
    if (pool_->n_pages() < want) pool_->grow(want);
    for (int64_t p = want - 1; p >= have; --p) free_.push_back(static_cast<int32_t>(p));
    refs_.resize(static_cast<size_t>(want), 0);
  }
  const int32_t page = free_.back();
  free_.pop_back();
  refs_[page] = 1;
  return page;
}

void KvPages::retain(int32_t page) { ++refs_[static_cast<size_t>(page)]; }

void KvPages::release(int32_t page) {
  if (page < 0 || page >= static_cast<int32_t>(refs_.size()) || refs_[page] <= 0)
    fail(Errc::internal, "KV page " + std::to_string(page) + " released more often than held");
  if (--refs_[page] == 0) free_.push_back(page);
}

uint64_t KvPages::chain_key(uint64_t previous, const int32_t* tokens, int64_t n) {
  return XXH3_64bits_withSeed(tokens, static_cast<size_t>(n) * sizeof(int32_t), previous);
}

void KvPages::publish(uint64_t key, const int32_t* tokens, int32_t page) {
  auto it = index_.find(key);
  if (it != index_.end()) {  // already known (or a collision): keep the first
    lru_.splice(lru_.end(), lru_, it->second.lru);
    return;
  }
  lru_.push_back(key);
  try {
    index_.emplace(key, Entry{page, std::vector<int32_t>(tokens, tokens + page_tokens_), std::prev(lru_.end())});
  } catch (...) {
    lru_.pop_back();
    throw;
  }
  retain(page);
}

int32_t KvPages::find(uint64_t key, const int32_t* tokens) {
  auto it = index_.find(key);
  if (it == index_.end() || !std::equal(it->second.tokens.begin(), it->second.tokens.end(), tokens)) return -1;
  lru_.splice(lru_.end(), lru_, it->second.lru);
  return it->second.page;
}

bool KvPages::evict_one() {
  for (auto k = lru_.begin(); k != lru_.end(); ++k) {
    auto it = index_.find(*k);
    if (refs_[it->second.page] != 1) continue;  // a session still uses it
    release(it->second.page);
    lru_.erase(k);
    index_.erase(it);
    return true;
  }
  return false;
}

void KvPages::clear_index() {
  for (auto& [key, e] : index_) release(e.page);
  index_.clear();
  lru_.clear();
}

}  // namespace sibyl::engine
