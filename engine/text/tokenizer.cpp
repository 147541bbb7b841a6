#include "engine/text/tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "engine/text/bpe.h"
#include "engine/text/byte_level.h"
#include "engine/core/failure.h"
#include "engine/formats/file_util.h"

namespace sibyl::engine {
namespace {

using nlohmann::json;

constexpr int64_t kMaxAddedId = int64_t{1} << 24;

std::string pcre2_message(int code) {
  PCRE2_UCHAR buf[256];
  int n = pcre2_get_error_message(code, buf, sizeof buf);
  return n < 0 ? "PCRE2 error " + std::to_string(code) : std::string(reinterpret_cast<char*>(buf));
}

struct MatchData {
  pcre2_match_data* md = pcre2_match_data_create(1, nullptr);
  MatchData() {
    if (!md) throw std::bad_alloc();
  }
  ~MatchData() { pcre2_match_data_free(md); }
  MatchData(const MatchData&) = delete;
  MatchData& operator=(const MatchData&) = delete;
};

// A compiled PCRE2 pattern, JIT-compiled when the platform allows it.
class Regex {
 public:
  Regex(const std::string& pattern, uint32_t options, const std::string& where) {
    int err = 0;
    PCRE2_SIZE offset = 0;
    code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), options | PCRE2_UTF | PCRE2_UCP,
                          &err, &offset, nullptr);
    // Hugging Face compiled it (with Oniguruma), so a failure here is a dialect gap.
    if (!code_)
      fail(Errc::unsupported, where + ": PCRE2 cannot compile regex /" + pattern + "/ at offset " +
                                  std::to_string(offset) + ": " + pcre2_message(err));
    // Without JIT (unsupported platform, no executable memory) the interpreter still works.
    pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE);
  }
  ~Regex() { pcre2_code_free(code_); }
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // The first match at or after `start`. The subject must be valid UTF-8 and `start` a
  // character boundary; look-arounds see only the subject.
  bool find(std::string_view subject, size_t start, MatchData& data, size_t& begin, size_t& end,
            uint32_t options = 0) const {
    options |= PCRE2_NO_UTF_CHECK;  // encode() validated the whole text once
    auto run = [&](uint32_t extra) {
      return pcre2_match(code_, reinterpret_cast<PCRE2_SPTR>(subject.data()), subject.size(), start, options | extra,
                         data.md, nullptr);
    };
    int rc = run(0);
    // The JIT's fixed stack can run out on huge inputs; the interpreter uses the heap.
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT) rc = run(PCRE2_NO_JIT);
    if (rc == PCRE2_ERROR_NOMATCH) return false;
    if (rc < 0) fail(Errc::internal, "tokenizer: regex match failed: " + pcre2_message(rc));
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(data.md);
    if (ov[1] < ov[0]) fail(Errc::unsupported, "tokenizer: a regex match ended before it began (\\K)");
    begin = ov[0];
    end = ov[1];
    return true;
  }

  // Whether the character at `at` matches (the pattern is one character class).
  bool matches_at(std::string_view subject, size_t at, MatchData& data) const {
    size_t b = 0, e = 0;
    return at < subject.size() && find(subject, at, data, b, e, PCRE2_ANCHORED);
  }

 private:
  pcre2_code* code_ = nullptr;
};

// Split patterns are written for Oniguruma (what `tokenizers` uses); PCRE2 with UCP reads
// them the same way except for these escapes, rewritten to Oniguruma's meaning:
//   \s \S  Oniguruma: [\t-\r\x85\p{Z}] = White_Space; PCRE2 leaves out U+0085
//   \w \W  Oniguruma: letter, mark, number, connector punctuation; PCRE2: letter, number, _
//   \h \H  Oniguruma: hex digit; PCRE2: horizontal space
//   \uHHHH Oniguruma: a code point; PCRE2: an error
// Oniguruma-only syntax (nested classes, && intersections, (?m) = dot-all) is refused.
// \b keeps PCRE2's word definition; no DeepSeek pattern uses it.
std::string onig_to_pcre2(std::string_view p, const std::string& where) {
  static constexpr std::string_view kWord = "\\p{L}\\p{M}\\p{N}\\p{Pc}";
  auto refuse = [&](const std::string& what) {
    fail(Errc::unsupported, where + ": " + what + " in regex /" + std::string(p) + "/ is not supported");
  };
  std::string out;
  bool in_class = false;
  size_t class_body = 0;  // first offset of the class body: a ']' there is literal
  for (size_t i = 0; i < p.size(); ++i) {
    char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      char n = p[++i];
      switch (n) {
        case 's':
          out += "\\p{White_Space}";
          break;
        case 'S':
          out += "\\P{White_Space}";
          break;
        case 'w':
          out += in_class ? std::string(kWord) : "[" + std::string(kWord) + "]";
          break;
        case 'h':
          out += in_class ? "0-9a-fA-F" : "[0-9a-fA-F]";
          break;
        case 'W':
        case 'H':
          if (in_class) refuse(std::string("\\") + n + " inside a character class");
          out += n == 'W' ? "[^" + std::string(kWord) + "]" : "[^0-9a-fA-F]";
          break;
        case 'u':
          if (i + 4 < p.size() && std::all_of(p.begin() + i + 1, p.begin() + i + 5, [](char h) {
                return std::isxdigit(static_cast<unsigned char>(h)) != 0;
              })) {
            out += "\\x{" + std::string(p.substr(i + 1, 4)) + "}";
            i += 4;
            break;
          }
          refuse("\\u without four hex digits");
          break;
        default:
          out += '\\';
          out += n;
      }
      continue;
    }
    if (in_class) {
      if (c == '[') {
        if (i + 1 < p.size() && p[i + 1] == ':') {  // POSIX bracket [:alpha:]: same in both
          size_t close = p.find(":]", i + 2);
          if (close == std::string_view::npos) refuse("an unterminated POSIX bracket");
          out += p.substr(i, close + 2 - i);
          i = close + 1;
          continue;
        }
        refuse("a nested character class");
      }
      if (c == '&' && i + 1 < p.size() && p[i + 1] == '&') refuse("a class intersection (&&)");
      if (c == ']' && i > class_body) in_class = false;
      out += c;
      continue;
    }
    if (c == '[') {
      in_class = true;
      out += c;
      if (i + 1 < p.size() && p[i + 1] == '^') out += p[++i];
      class_body = i + 1;
      continue;
    }
    if (c == '(' && i + 1 < p.size() && p[i + 1] == '?') {
      size_t j = i + 2;
      while (j < p.size() && (std::isalpha(static_cast<unsigned char>(p[j])) || p[j] == '-')) ++j;
      std::string_view flags = p.substr(i + 2, j - i - 2);
      if (j < p.size() && (p[j] == ')' || p[j] == ':') && flags.find('m') != std::string_view::npos)
        refuse("the inline option m (dot-all in Oniguruma)");
    }
    out += c;
  }
  return out;
}

// The pre-tokenizer of GPT-2, which ByteLevel applies when use_regex is true.
constexpr const char* kGpt2Split = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

struct AddedToken {
  int32_t id = 0;
  std::string content;
  bool single_word = false, lstrip = false, rstrip = false, normalized = false, special = false;
};

// Byte trie over added-token texts, answering leftmost-longest matches like the
// Aho-Corasick automaton `tokenizers` builds (MatchKind::LeftmostLongest).
class AddedTrie {
 public:
  AddedTrie() { root_.fill(-1); }
  bool empty() const { return nodes_.empty(); }

  void insert(std::string_view text, int32_t value) {
    int32_t node = root_[static_cast<uint8_t>(text[0])];
    if (node < 0) node = root_[static_cast<uint8_t>(text[0])] = new_node();
    for (size_t i = 1; i < text.size(); ++i) {
      int32_t next = child(node, text[i]);
      if (next < 0) {
        next = new_node();
        nodes_[node].children.emplace_back(static_cast<uint8_t>(text[i]), next);
      }
      node = next;
    }
    nodes_[node].value = value;
  }

  bool find(std::string_view text, size_t from, size_t& begin, size_t& end, int32_t& value) const {
    for (size_t i = from; i < text.size(); ++i) {
      int32_t node = root_[static_cast<uint8_t>(text[i])];
      int32_t best = -1;
      for (size_t j = i + 1; node >= 0; ++j) {
        if (nodes_[node].value >= 0) {
          best = nodes_[node].value;
          end = j;
        }
        if (j == text.size()) break;
        node = child(node, text[j]);
      }
      if (best >= 0) {
        begin = i;
        value = best;
        return true;
      }
    }
    return false;
  }

 private:
  struct Node {
    int32_t value = -1;
    std::vector<std::pair<uint8_t, int32_t>> children;
  };
  int32_t new_node() {
    nodes_.emplace_back();
    return static_cast<int32_t>(nodes_.size()) - 1;
  }
  int32_t child(int32_t node, char c) const {
    for (const auto& [byte, next] : nodes_[node].children)
      if (byte == static_cast<uint8_t>(c)) return next;
    return -1;
  }
  std::array<int32_t, 256> root_;
  std::vector<Node> nodes_;
};

struct Span {
  size_t begin, end;
  int32_t added;  // index into Impl::added, or −1 for ordinary text
};

bool flag(const json& t, const char* key, bool fallback, const std::string& where) {
  if (!t.contains(key) || t[key].is_null()) return fallback;
  if (!t[key].is_boolean()) fail(Errc::format, where + "." + key + " must be a boolean");
  return t[key].get<bool>();
}

std::string type_of(const json& j) {
  return j.is_object() && j.contains("type") && j["type"].is_string() ? j["type"].get<std::string>() : "";
}

// The normalizers that change nothing: none, or a Sequence of such.
void check_normalizer(const json& n, const std::string& source) {
  if (n.is_null()) return;
  if (type_of(n) == "Sequence" && n.contains("normalizers") && n["normalizers"].is_array()) {
    for (const json& inner : n["normalizers"]) check_normalizer(inner, source);
    return;
  }
  fail(Errc::unsupported, source + ": normalizer " + n.dump().substr(0, 120) + " is not supported (only none)");
}

std::string describe_invalid_utf8(std::string_view s, size_t at) {
  auto in = [](uint8_t x, uint8_t lo, uint8_t hi) { return x >= lo && x <= hi; };
  uint8_t b = static_cast<uint8_t>(s[at]);
  uint8_t n = at + 1 < s.size() ? static_cast<uint8_t>(s[at + 1]) : 0;
  const char* why = "missing continuation byte";
  if (utf8_step(s, at).kind == Utf8Step::truncated)
    why = "truncated multi-byte sequence";
  else if (in(b, 0x80, 0xBF))
    why = "continuation byte without a lead byte";
  else if (b == 0xC0 || b == 0xC1 || (b == 0xE0 && in(n, 0x80, 0x9F)) || (b == 0xF0 && in(n, 0x80, 0x8F)))
    why = "overlong encoding";
  else if (b == 0xED && in(n, 0xA0, 0xBF))
    why = "encoded UTF-16 surrogate";
  else if (b == 0xF4 && in(n, 0x90, 0xBF))
    why = "code point above U+10FFFF";
  else if (b >= 0xF5)
    why = "byte that never occurs in UTF-8";
  char hex[8];
  std::snprintf(hex, sizeof hex, "0x%02X", b);
  return "text is not valid UTF-8 at byte offset " + std::to_string(at) + " (" + hex + ": " + why + ")";
}

}  // namespace

struct Tokenizer::Impl {
  std::unique_ptr<BpeModel> model;
  std::vector<std::unique_ptr<Regex>> splits;  // applied in order, each isolating its matches
  std::vector<AddedToken> added;
  AddedTrie raw_trie;         // added tokens with normalized=false, matched first
  AddedTrie normalized_trie;  // normalized=true, matched in what is left (the normalizer is identity)
  std::unordered_map<std::string, int32_t> added_ids;
  std::vector<std::string> bytes;  // by id: what the token decodes to
  std::vector<uint8_t> kinds;      // by id: kValid | kSpecial | kAdded
  // Rust-regex classes that `tokenizers` uses for single_word / lstrip / rstrip.
  std::unique_ptr<Regex> word_char, space_char;
  std::once_flag trie_once;
  TokenTrie trie;

  static constexpr uint8_t kValid = 1, kSpecial = 2, kAdded = 4;

  void read_pre_tokenizer(const json& p, bool& byte_level_seen, const std::string& source);
  void read_added_tokens(const json& list, const std::string& source);
  void build_tables();
  // `plain`: byte ranges of the whole text (the sentence starts at `base`) where no added
  // token may be matched.
  void find_added(const AddedTrie& trie, std::string_view sentence, MatchData& md, std::vector<Span>& out,
                  const std::vector<TextRange>* plain = nullptr, size_t base = 0) const;
  void encode_words(std::string_view text, MatchData& md, std::vector<int32_t>& ids) const;
};

void Tokenizer::Impl::read_pre_tokenizer(const json& p, bool& byte_level_seen, const std::string& source) {
  std::string type = type_of(p);
  if (p.is_null()) fail(Errc::unsupported, source + ": a tokenizer without pre_tokenizer is not byte-level");
  if (byte_level_seen) fail(Errc::unsupported, source + ": pre-tokenizer steps after ByteLevel are not supported");
  if (type == "Sequence") {
    if (!p.contains("pretokenizers") || !p["pretokenizers"].is_array())
      fail(Errc::format, source + ": Sequence pre-tokenizer without a \"pretokenizers\" list");
    for (const json& step : p["pretokenizers"]) read_pre_tokenizer(step, byte_level_seen, source);
  } else if (type == "Split") {
    std::string where = source + ": Split pre-tokenizer";
    const json& pattern = p.contains("pattern") ? p["pattern"] : json();
    std::string behavior = p.contains("behavior") && p["behavior"].is_string() ? p["behavior"].get<std::string>() : "";
    if (behavior != "Isolated")
      fail(Errc::unsupported, where + ": behavior \"" + behavior + "\" is not supported (only Isolated)");
    if (flag(p, "invert", false, where)) fail(Errc::unsupported, where + ": invert=true is not supported");
    if (pattern.is_object() && pattern.contains("Regex") && pattern["Regex"].is_string()) {
      std::string onig = pattern["Regex"].get<std::string>();
      // Oniguruma's Ruby syntax: ^ and $ are line anchors.
      splits.push_back(std::make_unique<Regex>(onig_to_pcre2(onig, where), PCRE2_MULTILINE, where));
    } else if (pattern.is_object() && pattern.contains("String") && pattern["String"].is_string()) {
      std::string literal = pattern["String"].get<std::string>();
      if (!literal.empty()) splits.push_back(std::make_unique<Regex>(literal, PCRE2_LITERAL, where));
    } else {
      fail(Errc::format, where + ": pattern must be {\"Regex\": ...} or {\"String\": ...}");
    }
  } else if (type == "ByteLevel") {
    std::string where = source + ": ByteLevel pre-tokenizer";
    if (flag(p, "add_prefix_space", false, where))
      fail(Errc::unsupported, where + ": add_prefix_space=true is not supported");
    if (flag(p, "use_regex", true, where))
      splits.push_back(std::make_unique<Regex>(onig_to_pcre2(kGpt2Split, where), 0, where));
    byte_level_seen = true;
  } else {
    fail(Errc::unsupported, source + ": pre-tokenizer \"" + (type.empty() ? p.dump().substr(0, 80) : type) +
                                "\" is not supported (only Sequence, Split, ByteLevel)");
  }
}

void Tokenizer::Impl::read_added_tokens(const json& list, const std::string& source) {
  if (list.is_null()) return;
  if (!list.is_array()) fail(Errc::format, source + ": added_tokens must be a list");
  for (size_t i = 0; i < list.size(); ++i) {
    const json& t = list[i];
    std::string where = source + ": added_tokens[" + std::to_string(i) + "]";
    if (!t.is_object() || !t.contains("content") || !t["content"].is_string() || !t.contains("id") ||
        !t["id"].is_number_integer())
      fail(Errc::format, where + " needs an integer \"id\" and a string \"content\"");
    AddedToken a;
    a.content = t["content"].get<std::string>();
    int64_t id = t["id"].get<int64_t>();
    if (id < 0 || id >= kMaxAddedId) fail(Errc::format, where + " has an invalid id " + std::to_string(id));
    if (utf8_first_invalid(a.content) != std::string::npos) fail(Errc::format, where + " is not valid UTF-8");
    a.special = flag(t, "special", false, where);
    a.single_word = flag(t, "single_word", false, where);
    a.lstrip = flag(t, "lstrip", false, where);
    a.rstrip = flag(t, "rstrip", false, where);
    a.normalized = flag(t, "normalized", !a.special, where);
    if (a.content.empty()) continue;  // Hugging Face ignores these too
    // Text already in the vocabulary keeps its vocabulary id, as in Hugging Face.
    if (auto vid = model->id_of(a.content)) {
      a.id = *vid;
    } else {
      a.id = static_cast<int32_t>(id);
      if (const std::string* other = model->token_of(a.id))
        fail(Errc::format, where + " \"" + a.content + "\" has id " + std::to_string(id) +
                               ", which the vocabulary gives to \"" + *other + "\"");
    }
    added.push_back(std::move(a));
  }
  // A later entry for the same id replaces an earlier one.
  std::unordered_map<int32_t, size_t> last;
  for (size_t i = 0; i < added.size(); ++i) last[added[i].id] = i;
  std::vector<AddedToken> kept;
  for (size_t i = 0; i < added.size(); ++i)
    if (last[added[i].id] == i) kept.push_back(std::move(added[i]));
  added = std::move(kept);
  for (size_t i = 0; i < added.size(); ++i) {
    const AddedToken& a = added[i];
    added_ids[a.content] = a.id;
    (a.normalized ? normalized_trie : raw_trie).insert(a.content, static_cast<int32_t>(i));
  }
}

void Tokenizer::Impl::build_tables() {
  int32_t max_id = model->max_id();
  for (const AddedToken& a : added) max_id = std::max(max_id, a.id);
  bytes.assign(static_cast<size_t>(max_id) + 1, std::string());
  kinds.assign(static_cast<size_t>(max_id) + 1, 0);
  // ByteLevel decoding of one token: its characters mapped back to bytes, or, when one is
  // outside the byte alphabet (e.g. "<｜end▁of▁sentence｜>"), the token's own UTF-8.
  auto set = [&](int32_t id, const std::string& text, uint8_t kind) {
    if (!byte_level_to_bytes(text, bytes[id])) bytes[id] = text;
    kinds[id] = kind;
  };
  for (int32_t id = 0; id <= model->max_id(); ++id)
    if (const std::string* t = model->token_of(id)) set(id, *t, kValid);
  // Added tokens take precedence when decoding, as in Hugging Face.
  for (const AddedToken& a : added) set(a.id, a.content, a.special ? kValid | kSpecial | kAdded : kValid | kAdded);
}

// Hugging Face's AddedVocabulary::find_matches on one sentence: leftmost-longest matches,
// each checked for single_word and widened by lstrip / rstrip; the automaton resumes after
// the raw match whatever happens to it.
void Tokenizer::Impl::find_added(const AddedTrie& trie, std::string_view s, MatchData& md, std::vector<Span>& out,
                                 const std::vector<TextRange>* plain, size_t base) const {
  if (trie.empty()) {
    out.push_back({0, s.size(), -1});
    return;
  }
  auto char_before = [&](size_t at) {
    size_t i = at - 1;
    while (i > 0 && (static_cast<uint8_t>(s[i]) & 0xC0) == 0x80) --i;
    return i;
  };
  size_t from = 0, start_offset = 0, begin = 0, end = 0;
  int32_t index = -1;
  while (trie.find(s, from, begin, end, index)) {
    from = end;
    if (plain && std::any_of(plain->begin(), plain->end(), [&](const TextRange& r) {
          return base + begin < r.end && r.begin < base + end;
        }))
      continue;  // inside untrusted text: stays text
    const AddedToken& a = added[index];
    if (a.single_word) {
      bool word_before = begin > 0 && word_char->matches_at(s, char_before(begin), md);
      bool word_after = end < s.size() && word_char->matches_at(s, end, md);
      if (word_before || word_after) continue;
    }
    if (a.lstrip) {
      size_t b = begin;
      while (b > 0 && space_char->matches_at(s, char_before(b), md)) b = char_before(b);
      begin = std::max(b, start_offset);
    }
    if (a.rstrip) {
      size_t e = end;
      while (e < s.size() && space_char->matches_at(s, e, md)) e += utf8_step(s, e).length;
      end = e;
    }
    if (start_offset < begin) out.push_back({start_offset, begin, -1});
    out.push_back({begin, end, index});
    start_offset = end;
  }
  if (start_offset != s.size()) out.push_back({start_offset, s.size(), -1});
}

// Pre-tokenizes text that holds no added token, then BPE-encodes each piece.
void Tokenizer::Impl::encode_words(std::string_view text, MatchData& md, std::vector<int32_t>& ids) const {
  std::vector<Span> pieces{{0, text.size(), -1}}, next;
  for (const auto& re : splits) {
    next.clear();
    for (const Span& p : pieces) {
      std::string_view sub = text.substr(p.begin, p.end - p.begin);
      size_t prev = 0, pos = 0, b = 0, e = 0;
      while (pos < sub.size() && re->find(sub, pos, md, b, e)) {
        if (b > prev) next.push_back({p.begin + prev, p.begin + b, -1});
        if (e > b) next.push_back({p.begin + b, p.begin + e, -1});
        prev = e;
        pos = e > b ? e : e + utf8_step(sub, e).length;  // step over an empty match
      }
      if (prev < sub.size()) next.push_back({p.begin + prev, p.end, -1});
    }
    pieces.swap(next);
  }
  for (const Span& p : pieces) model->encode(text.substr(p.begin, p.end - p.begin), ids);
}

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;

std::unique_ptr<Tokenizer> Tokenizer::load(const std::string& path) {
  std::string file = path;
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) file = (std::filesystem::path(path) / "tokenizer.json").string();
  return from_json(read_text_file(file), file);
}

std::unique_ptr<Tokenizer> Tokenizer::from_json(const std::string& json_text, const std::string& source) {
  json j;
  try {
    j = json::parse(json_text);
  } catch (const json::exception& e) {
    fail(Errc::format, source + ": not valid JSON: " + e.what());
  }
  if (!j.is_object()) fail(Errc::format, source + ": not a tokenizer.json (the top level is not an object)");
  auto impl = std::make_unique<Impl>();
  try {
    if (j.contains("version") && j["version"] != "1.0")
      fail(Errc::unsupported, source + ": tokenizer.json version " + j["version"].dump() + " is not supported");
    for (const char* key : {"truncation", "padding"})
      if (j.contains(key) && !j[key].is_null())
        fail(Errc::unsupported, source + ": " + key + " is not supported (it must be null)");
    if (j.contains("normalizer")) check_normalizer(j["normalizer"], source);
    if (!j.contains("model")) fail(Errc::format, source + ": no \"model\"");
    impl->model = BpeModel::from_json(j["model"], source);

    bool byte_level = false;
    impl->read_pre_tokenizer(j.contains("pre_tokenizer") ? j["pre_tokenizer"] : json(), byte_level, source);
    if (!byte_level) fail(Errc::unsupported, source + ": the pre-tokenizer has no ByteLevel step (not byte-level BPE)");

    const json& dec = j.contains("decoder") ? j["decoder"] : json();
    bool byte_level_decoder = type_of(dec) == "ByteLevel" ||
                              (type_of(dec) == "Sequence" && dec.contains("decoders") && dec["decoders"].is_array() &&
                               dec["decoders"].size() == 1 && type_of(dec["decoders"][0]) == "ByteLevel");
    if (!byte_level_decoder)
      fail(Errc::unsupported, source + ": decoder " + dec.dump().substr(0, 120) + " is not supported (only ByteLevel)");
    // The post-processor only adds special tokens and adjusts offsets, neither of which
    // encode(add_special_tokens=False) involves, so it is not read.

    impl->read_added_tokens(j.contains("added_tokens") ? j["added_tokens"] : json(), source);
    impl->build_tables();
    impl->word_char = std::make_unique<Regex>("[\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\p{Join_Control}]", 0, source);
    impl->space_char = std::make_unique<Regex>("\\p{White_Space}", 0, source);
  } catch (const json::exception& e) {
    fail(Errc::format, source + ": unexpected content: " + e.what());
  }
  return std::unique_ptr<Tokenizer>(new Tokenizer(std::move(impl)));
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, const std::vector<TextRange>& plain) const {
  size_t bad = utf8_first_invalid(text);
  if (bad != std::string_view::npos) fail(Errc::invalid_argument, describe_invalid_utf8(text, bad));
  const Impl& im = *impl_;
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 1);
  MatchData md;
  std::vector<Span> outer, inner;
  const std::vector<TextRange>* keep = plain.empty() ? nullptr : &plain;
  im.find_added(im.raw_trie, text, md, outer, keep);
  for (const Span& o : outer) {
    if (o.added >= 0) {
      ids.push_back(im.added[o.added].id);
      continue;
    }
    std::string_view piece = text.substr(o.begin, o.end - o.begin);
    inner.clear();
    im.find_added(im.normalized_trie, piece, md, inner, keep, o.begin);
    for (const Span& s : inner) {
      if (s.added >= 0)
        ids.push_back(im.added[s.added].id);
      else if (s.end > s.begin)
        im.encode_words(piece.substr(s.begin, s.end - s.begin), md, ids);
    }
  }
  return ids;
}

const std::string& Tokenizer::bytes_of(int32_t id) const {
  if (!is_valid(id)) fail(Errc::invalid_token, "token id " + std::to_string(id) + " is not in the vocabulary");
  return impl_->bytes[id];
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string raw;
  for (int32_t id : ids) raw += bytes_of(id);
  std::string out;
  out.reserve(raw.size());
  utf8_append_lossy(raw, out, true);
  return out;
}

std::optional<int32_t> Tokenizer::token_id(std::string_view token_content) const {
  auto it = impl_->added_ids.find(std::string(token_content));
  if (it != impl_->added_ids.end()) return it->second;
  return impl_->model->id_of(token_content);
}

bool Tokenizer::is_valid(int32_t id) const {
  return id >= 0 && static_cast<size_t>(id) < impl_->kinds.size() && impl_->kinds[id] != 0;
}

bool Tokenizer::is_special(int32_t id) const { return is_valid(id) && (impl_->kinds[id] & Impl::kSpecial); }

int32_t Tokenizer::vocab_size() const { return static_cast<int32_t>(impl_->kinds.size()); }

std::string Tokenizer::token_bytes(int32_t id) const { return bytes_of(id); }

bool Tokenizer::is_added(int32_t id) const { return is_valid(id) && (impl_->kinds[id] & Impl::kAdded); }

const TokenTrie& Tokenizer::text_trie() const {
  std::call_once(impl_->trie_once, [this] {
    // Added tokens are left out even when not marked special (R1's <think>, V3's <｜User｜>):
    // they are the format's markup, and every text has a spelling in the vocabulary's own tokens.
    // Bytes F8-FF never occur in UTF-8 text; grammars use them for markers that only a
    // special token may read (tool_calls.h), so no text token holding one is kept.
    std::vector<std::string> text(impl_->bytes.size());
    for (size_t id = 0; id < text.size(); ++id) {
      const std::string& b = impl_->bytes[id];
      if (impl_->kinds[id] == Impl::kValid &&
          std::none_of(b.begin(), b.end(), [](char c) { return static_cast<unsigned char>(c) >= 0xF8; }))
        text[id] = b;
    }
    impl_->trie = TokenTrie::build(text);
  });
  return impl_->trie;
}

std::string StreamDecoder::push(int32_t id) {
  pending_ += tokenizer_.bytes_of(id);
  std::string out;
  pending_.erase(0, utf8_append_lossy(pending_, out, false));
  return out;
}

std::string StreamDecoder::finish() {
  std::string out;
  utf8_append_lossy(pending_, out, true);
  pending_.clear();
  return out;
}

}  // namespace sibyl::engine
