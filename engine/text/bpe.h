// The BPE model of a byte-level tokenizer.json: vocabulary, merges by rank, and the merge
// loop of Hugging Face `tokenizers` (lowest rank first, leftmost on ties), run on the raw
// bytes of one pre-tokenized piece. Repeated pieces are answered from a cache.
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace sibyl::engine {

class BpeModel {
 public:
  // Reads the "model" object of a tokenizer.json. Errc::format for malformed content,
  // Errc::unsupported for options outside byte-level BPE; messages start with `source`.
  static std::unique_ptr<BpeModel> from_json(const nlohmann::json& model, const std::string& source);

  // Appends the ids of one piece of raw text (bytes, not byte-level characters).
  void encode(std::string_view piece, std::vector<int32_t>& out) const;

  std::optional<int32_t> id_of(std::string_view token) const;
  // Token text as written in the vocabulary (byte-level characters); nullptr for a hole.
  const std::string* token_of(int32_t id) const;
  int32_t max_id() const { return static_cast<int32_t>(tokens_.size()) - 1; }

 private:
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  struct Merge {
    int32_t rank;
    int32_t new_id;
  };

  static uint64_t pair_key(int32_t a, int32_t b) {
    return static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32 | static_cast<uint32_t>(b);
  }
  const Merge* find_merge(int32_t a, int32_t b) const;
  void merge_piece(std::string_view piece, std::vector<int32_t>& out) const;

  std::unordered_map<std::string, int32_t, Hash, std::equal_to<>> vocab_;
  std::vector<std::optional<std::string>> tokens_;  // by id
  std::unordered_map<uint64_t, Merge> merges_;
  std::array<int32_t, 256> byte_ids_{};  // id of each single byte's token, −1 if absent
  bool ignore_merges_ = false;
  // Raw bytes → id of every vocabulary token; only built for ignore_merges.
  std::unordered_map<std::string, int32_t, Hash, std::equal_to<>> whole_words_;
  int32_t unk_id_ = -1;
  bool fuse_unk_ = false;

  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int32_t>, Hash, std::equal_to<>> cache_;
};

}  // namespace sibyl::engine
