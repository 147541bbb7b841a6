#include "engine/text/bpe.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "engine/text/byte_level.h"
#include "engine/core/failure.h"

namespace sibyl::engine {
namespace {

using nlohmann::json;

constexpr int64_t kMaxId = int64_t{1} << 24;  // far above any real vocabulary; bounds memory
constexpr size_t kMaxCachedPiece = 256;       // longer pieces are rare and not worth keeping
constexpr size_t kMaxCacheEntries = 1 << 16;  // then the cache starts over

bool is_null_or_absent(const json& m, const char* key) { return !m.contains(key) || m[key].is_null(); }

bool read_bool(const json& m, const char* key, const std::string& source) {
  if (is_null_or_absent(m, key)) return false;
  if (!m[key].is_boolean()) fail(Errc::format, source + ": model." + key + " must be a boolean");
  return m[key].get<bool>();
}

// A merge as the two token texts it joins: "a b" (legacy) or ["a", "b"].
bool merge_parts(const json& entry, std::string& a, std::string& b, bool& skip) {
  skip = false;
  if (entry.is_string()) {
    const std::string& line = entry.get_ref<const std::string&>();
    if (line.rfind("#version", 0) == 0) {  // a merges.txt header that made it into the JSON
      skip = true;
      return true;
    }
    size_t space = line.find(' ');
    if (space == std::string::npos || line.find(' ', space + 1) != std::string::npos) return false;
    a = line.substr(0, space);
    b = line.substr(space + 1);
    return true;
  }
  if (entry.is_array() && entry.size() == 2 && entry[0].is_string() && entry[1].is_string()) {
    a = entry[0].get<std::string>();
    b = entry[1].get<std::string>();
    return true;
  }
  return false;
}

}  // namespace

std::unique_ptr<BpeModel> BpeModel::from_json(const json& m, const std::string& source) {
  if (!m.is_object()) fail(Errc::format, source + ": \"model\" must be an object");
  // Hugging Face reads a model without "type" as BPE when it has merges.
  std::string type = m.contains("type") && m["type"].is_string() ? m["type"].get<std::string>()
                     : m.contains("merges")                      ? "BPE"
                                                                 : "(none)";
  if (type != "BPE")
    fail(Errc::unsupported, source + ": model type \"" + type + "\" is not supported (only byte-level BPE)");
  if (!is_null_or_absent(m, "dropout") && (!m["dropout"].is_number() || m["dropout"].get<double>() != 0.0))
    fail(Errc::unsupported, source + ": BPE dropout is not supported (tokenization must be deterministic)");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (is_null_or_absent(m, key)) continue;
    if (!m[key].is_string()) fail(Errc::format, source + ": model." + key + " must be a string or null");
    if (!m[key].get<std::string>().empty())
      fail(Errc::unsupported, source + ": BPE " + key + " is not supported (byte-level BPE has none)");
  }
  if (read_bool(m, "byte_fallback", source))
    fail(Errc::unsupported, source + ": BPE byte_fallback is not supported (byte-level BPE needs none)");
  if (!m.contains("vocab") || !m["vocab"].is_object())
    fail(Errc::format, source + ": model.vocab is missing or not an object");
  if (!m.contains("merges") || !m["merges"].is_array())
    fail(Errc::format, source + ": model.merges is missing or not an array");

  auto bpe = std::unique_ptr<BpeModel>(new BpeModel());
  bpe->ignore_merges_ = read_bool(m, "ignore_merges", source);
  bpe->fuse_unk_ = read_bool(m, "fuse_unk", source);

  const json& vocab = m["vocab"];
  bpe->vocab_.reserve(vocab.size());
  for (const auto& [text, value] : vocab.items()) {
    if (!value.is_number_integer() || value.get<int64_t>() < 0 || value.get<int64_t>() >= kMaxId)
      fail(Errc::format, source + ": vocab entry \"" + text + "\" has an invalid id " + value.dump());
    auto id = static_cast<int32_t>(value.get<int64_t>());
    if (static_cast<size_t>(id) >= bpe->tokens_.size()) bpe->tokens_.resize(static_cast<size_t>(id) + 1);
    if (bpe->tokens_[id]) fail(Errc::format, source + ": vocab id " + std::to_string(id) + " is used twice");
    bpe->tokens_[id] = text;
    bpe->vocab_.emplace(text, id);
  }

  if (!is_null_or_absent(m, "unk_token")) {
    if (!m["unk_token"].is_string()) fail(Errc::format, source + ": model.unk_token must be a string or null");
    // As in Hugging Face, an unk_token outside the vocabulary only matters once it is needed.
    bpe->unk_id_ = bpe->id_of(m["unk_token"].get<std::string>()).value_or(-2);
  }

  const json& merges = m["merges"];
  bpe->merges_.reserve(merges.size());
  std::string a, b, joined;
  int32_t rank = 0;
  for (size_t i = 0; i < merges.size(); ++i) {
    bool skip = false;
    if (!merge_parts(merges[i], a, b, skip))
      fail(Errc::format, source + ": merge #" + std::to_string(i) + " is neither \"a b\" nor [\"a\", \"b\"]");
    if (skip) continue;
    auto ia = bpe->id_of(a), ib = bpe->id_of(b);
    joined = a + b;
    auto ij = bpe->id_of(joined);
    if (!ia || !ib || !ij)
      fail(Errc::format, source + ": merge #" + std::to_string(i) + " (\"" + a + "\", \"" + b +
                             "\") uses a token that is not in the vocabulary: \"" +
                             (!ia   ? a
                              : !ib ? b
                                    : joined) +
                             "\"");
    // A repeated pair keeps its last rank, as Hugging Face's map does.
    bpe->merges_[pair_key(*ia, *ib)] = Merge{rank++, *ij};
  }

  for (int b = 0; b < 256; ++b) bpe->byte_ids_[b] = bpe->id_of(byte_level_char(static_cast<uint8_t>(b))).value_or(-1);

  if (bpe->ignore_merges_) {
    std::string bytes;
    for (const auto& [text, id] : bpe->vocab_)
      if (byte_level_to_bytes(text, bytes)) bpe->whole_words_.emplace(bytes, id);
  }
  return bpe;
}

std::optional<int32_t> BpeModel::id_of(std::string_view token) const {
  auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* BpeModel::token_of(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= tokens_.size() || !tokens_[id]) return nullptr;
  return &*tokens_[id];
}

const BpeModel::Merge* BpeModel::find_merge(int32_t a, int32_t b) const {
  auto it = merges_.find(pair_key(a, b));
  return it == merges_.end() ? nullptr : &it->second;
}

void BpeModel::encode(std::string_view piece, std::vector<int32_t>& out) const {
  if (piece.empty()) return;
  if (ignore_merges_) {
    auto it = whole_words_.find(piece);
    if (it != whole_words_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  bool cacheable = piece.size() <= kMaxCachedPiece;
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    auto it = cache_.find(piece);
    if (it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> ids;
  merge_piece(piece, ids);
  out.insert(out.end(), ids.begin(), ids.end());
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    if (cache_.size() >= kMaxCacheEntries) cache_.clear();
    cache_.emplace(std::string(piece), std::move(ids));
  }
}

// The merge loop of Hugging Face's BPE (models/bpe/word.rs), which the reference ids come
// from: a heap of candidate pairs by (rank, position); a popped pair is used only if the two
// symbols still form a pair that merges into the same token, and each merge offers the new
// pairs with its neighbours.
void BpeModel::merge_piece(std::string_view piece, std::vector<int32_t>& out) const {
  struct Symbol {
    int32_t id, prev, next, len;  // len 0: merged into its left neighbour
  };
  std::vector<Symbol> symbols;
  symbols.reserve(piece.size());
  auto add = [&](int32_t id, int32_t len) {
    auto n = static_cast<int32_t>(symbols.size());
    if (n > 0) symbols.back().next = n;
    symbols.push_back({id, n - 1, -1, len});
  };

  int32_t unk_len = 0;  // bytes of a pending unknown run
  for (char c : piece) {
    int32_t id = byte_ids_[static_cast<uint8_t>(c)];
    if (id >= 0) {
      if (unk_len > 0) add(unk_id_, unk_len);
      unk_len = 0;
      add(id, 1);
    } else if (unk_id_ != -1) {  // with no unk_token, a byte outside the vocabulary is dropped
      if (unk_id_ < 0) fail(Errc::format, "tokenizer: the BPE unk_token is not in the vocabulary");
      if (unk_len > 0 && !fuse_unk_) {
        add(unk_id_, unk_len);
        unk_len = 0;
      }
      ++unk_len;
    }
  }
  if (unk_len > 0) add(unk_id_, unk_len);

  struct Candidate {
    int32_t rank, pos, new_id;
  };
  auto later = [](const Candidate& x, const Candidate& y) {
    return x.rank != y.rank ? x.rank > y.rank : x.pos > y.pos;
  };
  std::vector<Candidate> heap;
  for (size_t i = 0; i + 1 < symbols.size(); ++i)
    if (const Merge* m = find_merge(symbols[i].id, symbols[i + 1].id))
      heap.push_back({m->rank, static_cast<int32_t>(i), m->new_id});
  std::make_heap(heap.begin(), heap.end(), later);

  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), later);
    Candidate top = heap.back();
    heap.pop_back();
    Symbol& left = symbols[top.pos];
    if (left.len == 0 || left.next < 0) continue;
    Symbol right = symbols[left.next];
    const Merge* m = find_merge(left.id, right.id);
    if (!m || m->new_id != top.new_id) continue;  // stale: a neighbour changed since

    symbols[left.next].len = 0;
    left.id = top.new_id;
    left.len += right.len;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = top.pos;

    if (left.prev >= 0)
      if (const Merge* p = find_merge(symbols[left.prev].id, left.id)) {
        heap.push_back({p->rank, left.prev, p->new_id});
        std::push_heap(heap.begin(), heap.end(), later);
      }
    if (left.next >= 0)
      if (const Merge* n = find_merge(left.id, symbols[left.next].id)) {
        heap.push_back({n->rank, top.pos, n->new_id});
        std::push_heap(heap.begin(), heap.end(), later);
      }
  }
  for (const Symbol& s : symbols)
    if (s.len != 0) out.push_back(s.id);
}

}  // namespace sibyl::engine
