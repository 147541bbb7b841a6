#include "engine/grammar/gbnf.h"

#include <algorithm>
#include <unordered_map>
#include <utility>

#include "engine/core/failure.h"
#include "engine/grammar/utf8_ranges.h"

namespace sibyl::engine {
namespace {

constexpr uint32_t kMaxRepeat = 10000;
constexpr int kMaxNesting = 256;  // parenthesised groups inside one another
constexpr uint32_t kUnbounded = UINT32_MAX;

using Sequence = std::vector<GrammarElement>;
using Ranges = std::vector<std::pair<uint32_t, uint32_t>>;  // code points, inclusive

bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

class GbnfParser {
 public:
  explicit GbnfParser(std::string_view text) : s_(text) {}

  std::shared_ptr<const Grammar> parse(std::string_view root_name) {
    skip_space();
    if (at_end()) error("the grammar is empty");
    while (!at_end()) {
      const size_t at = pos_;
      const std::string name = parse_name();
      skip_space();
      if (s_.substr(pos_, 3) != "::=") error("expected '::=' after the rule name '" + name + "'");
      pos_ += 3;
      Rule& rule = rule_named(name, at);
      if (rule.defined) error_at(at, "grammar rule '" + name + "' is defined twice");
      rule.defined = true;
      parse_alternates(rule.id, name);
      skip_space();
      if (!at_end() && !starts_rule()) error("expected a new rule ('name ::= ...')");
    }
    const std::pair<const std::string, Rule>* undefined = nullptr;  // the first one used
    for (const auto& entry : rules_)
      if (!entry.second.defined && (!undefined || entry.second.first_use < undefined->second.first_use))
        undefined = &entry;
    if (undefined)
      error_at(undefined->second.first_use, "grammar rule '" + undefined->first + "' is used but not defined");
    const auto root = rules_.find(std::string(root_name));
    if (root == rules_.end())
      fail(Errc::invalid_argument, "the grammar defines no rule '" + std::string(root_name) + "' to start from");
    return b_.finish(root->second.id);
  }

 private:
  struct Rule {
    uint32_t id = 0;
    bool defined = false;
    size_t first_use = 0;
  };

  bool at_end() const { return pos_ >= s_.size(); }
  char peek(size_t ahead = 0) const { return pos_ + ahead < s_.size() ? s_[pos_ + ahead] : '\0'; }

  [[noreturn]] void error_at(size_t at, const std::string& what) const {
    size_t line = 1, column = 1;
    for (size_t i = 0; i < at && i < s_.size(); ++i) {
      if (s_[i] == '\n') {
        ++line;
        column = 1;
      } else if ((static_cast<uint8_t>(s_[i]) & 0xC0) != 0x80) {
        ++column;
      }
    }
    fail(Errc::invalid_argument,
         "grammar line " + std::to_string(line) + ", column " + std::to_string(column) + ": " + what);
  }
  [[noreturn]] void error(const std::string& what) const { error_at(pos_, what); }

  void skip_space() {
    while (!at_end()) {
      const char c = peek();
      if (c == '#') {
        while (!at_end() && peek() != '\n') ++pos_;
      } else if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
        ++pos_;
      } else {
        break;
      }
    }
  }

  // A rule definition starts here: a name followed by '::='.
  bool starts_rule() const {
    size_t p = pos_;
    while (p < s_.size() && is_name_char(s_[p])) ++p;
    if (p == pos_) return false;
    while (p < s_.size() && (s_[p] == ' ' || s_[p] == '\t')) ++p;
    return s_.substr(p, 3) == "::=";
  }

  std::string parse_name() {
    const size_t start = pos_;
    while (!at_end() && is_name_char(peek())) ++pos_;
    if (pos_ == start) error("expected a rule name");
    return std::string(s_.substr(start, pos_ - start));
  }

  Rule& rule_named(const std::string& name, size_t at) {
    auto [it, added] = rules_.try_emplace(name);
    if (added) {
      it->second.id = b_.add_rule(name);
      it->second.first_use = at;
    }
    return it->second;
  }

  uint32_t aux_rule(const std::string& owner) { return b_.add_rule(owner + "_" + std::to_string(++aux_count_)); }

  void parse_alternates(uint32_t rule, const std::string& owner) {
    for (;;) {
      b_.add_alternative(rule, parse_sequence(owner));
      skip_space();
      if (peek() != '|') return;
      ++pos_;
    }
  }

  // Decodes one UTF-8 character of the grammar text.
  uint32_t next_char() {
    const auto b0 = static_cast<uint8_t>(peek());
    const int n = b0 < 0x80 ? 1 : (b0 >> 5) == 6 ? 2 : (b0 >> 4) == 14 ? 3 : (b0 >> 3) == 30 ? 4 : 0;
    if (n == 0 || pos_ + static_cast<size_t>(n) > s_.size()) error("invalid UTF-8 in the grammar");
    uint32_t cp = n == 1 ? b0 : b0 & (0x7F >> n);
    for (int k = 1; k < n; ++k) {
      const auto b = static_cast<uint8_t>(s_[pos_ + static_cast<size_t>(k)]);
      if ((b & 0xC0) != 0x80) error("invalid UTF-8 in the grammar");
      cp = (cp << 6) | (b & 0x3F);
    }
    pos_ += static_cast<size_t>(n);
    return cp;
  }

  uint32_t parse_hex(int digits) {
    uint32_t v = 0;
    for (int i = 0; i < digits; ++i) {
      const char c = peek();
      int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
      if (d < 0) error("expected " + std::to_string(digits) + " hexadecimal digits");
      v = v * 16 + static_cast<uint32_t>(d);
      ++pos_;
    }
    if (v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) error("the escape names no Unicode character");
    return v;
  }

  // One character of a literal or class, escapes resolved.
  uint32_t parse_char() {
    if (at_end()) error("unexpected end of the grammar");
    if (peek() != '\\') return next_char();
    ++pos_;
    const char c = peek();
    ++pos_;
    switch (c) {
      case 'n': return '\n';
      case 'r': return '\r';
      case 't': return '\t';
      case '0': return 0;
      case 'x': return parse_hex(2);
      case 'u': return parse_hex(4);
      case 'U': return parse_hex(8);
      case '\\': case '"': case '\'': case '[': case ']': case '-': case '/': case '^': return static_cast<uint8_t>(c);
      default: --pos_; error("unknown escape '\\" + std::string(1, c) + "'");
    }
  }

  GrammarElement byte_element(const ByteSet& set) { return {GrammarElement::bytes, b_.set_index(set)}; }

  void append_char(uint32_t cp, Sequence& out) {
    for (const Utf8Sequence& u : utf8_sequences(cp, cp))
      for (int k = 0; k < u.length; ++k) {
        ByteSet set{};
        add_bytes(set, u.lo[k], u.hi[k]);
        out.push_back(byte_element(set));
      }
  }

  // A set of code points: one byte set when it is ASCII, else a rule of UTF-8 sequences.
  GrammarElement class_element(const Ranges& ranges, const std::string& owner) {
    ByteSet ascii{};
    std::vector<Utf8Sequence> wide;
    for (const auto& [first, last] : ranges)
      for (const Utf8Sequence& u : utf8_sequences(first, last)) {
        if (u.length == 1)
          add_bytes(ascii, u.lo[0], u.hi[0]);
        else
          wide.push_back(u);
      }
    if (wide.empty()) return byte_element(ascii);
    const uint32_t rule = aux_rule(owner);
    if (ascii != ByteSet{}) b_.add_alternative(rule, {byte_element(ascii)});
    for (const Utf8Sequence& u : wide) {
      Sequence seq;
      for (int k = 0; k < u.length; ++k) {
        ByteSet set{};
        add_bytes(set, u.lo[k], u.hi[k]);
        seq.push_back(byte_element(set));
      }
      b_.add_alternative(rule, seq);
    }
    return {GrammarElement::rule, rule};
  }

  GrammarElement parse_class(const std::string& owner) {
    ++pos_;  // '['
    const bool negated = peek() == '^';
    if (negated) ++pos_;
    Ranges ranges;
    while (peek() != ']') {
      if (at_end()) error("unterminated character class");
      const uint32_t first = parse_char();
      uint32_t last = first;
      if (peek() == '-' && peek(1) != ']') {
        ++pos_;
        last = parse_char();
        if (last < first) error("the class range ends before it starts");
      }
      ranges.emplace_back(first, last);
    }
    ++pos_;
    if (negated) {
      std::sort(ranges.begin(), ranges.end());
      Ranges rest;
      uint32_t next = 0;
      for (const auto& [first, last] : ranges) {
        if (first > next) rest.emplace_back(next, first - 1);
        next = std::max(next, last + 1);
      }
      if (next <= 0x10FFFF) rest.emplace_back(next, 0x10FFFF);
      ranges = std::move(rest);
    }
    if (ranges.empty()) error("the character class matches nothing");
    return class_element(ranges, owner);
  }

  uint32_t parse_count() {
    const size_t start = pos_;
    uint64_t v = 0;
    while (peek() >= '0' && peek() <= '9') {
      v = v * 10 + static_cast<uint64_t>(peek() - '0');
      if (v > kMaxRepeat) error("repetition counts are limited to " + std::to_string(kMaxRepeat));
      ++pos_;
    }
    if (pos_ == start) error("expected a repetition count");
    return static_cast<uint32_t>(v);
  }

  // Replaces the atom at seq[start..] by `min` copies of it followed by up to max - min more.
  void repeat(Sequence& seq, size_t start, uint32_t min, uint32_t max, const std::string& owner) {
    Sequence atom(seq.begin() + static_cast<std::ptrdiff_t>(start), seq.end());
    seq.resize(start);
    if (atom.size() > 1 && (max == kUnbounded || max > min)) {  // one element to refer to
      const uint32_t rule = aux_rule(owner);
      b_.add_alternative(rule, atom);
      atom = {{GrammarElement::rule, rule}};
    }
    for (uint32_t i = 0; i < min; ++i) seq.insert(seq.end(), atom.begin(), atom.end());
    if (max == kUnbounded) {  // R ::= atom R | ε
      const uint32_t rule = aux_rule(owner);
      Sequence loop = atom;
      loop.push_back({GrammarElement::rule, rule});
      b_.add_alternative(rule, loop);
      b_.add_alternative(rule, {});
      seq.push_back({GrammarElement::rule, rule});
      return;
    }
    // R_1 ::= atom | ε, R_k ::= atom R_{k-1} | ε: up to max - min more.
    uint32_t inner = 0;
    std::vector<uint32_t> chain;
    for (uint32_t k = 1; k <= max - min; ++k) {
      const uint32_t rule = aux_rule(owner);
      Sequence alt = atom;
      if (k > 1) alt.push_back({GrammarElement::rule, inner});
      b_.add_alternative(rule, alt);
      b_.add_alternative(rule, {});
      inner = rule;
      chain.push_back(rule);
    }
    if (max > min) seq.push_back({GrammarElement::rule, inner});
    if (chain.size() > 1) b_.add_chain(std::move(chain));
  }

  Sequence parse_sequence(const std::string& owner) {
    Sequence seq;
    size_t atom_start = 0;
    bool has_atom = false;
    for (;;) {
      skip_space();
      const char c = peek();
      if (at_end() || c == '|' || c == ')' || starts_rule()) return seq;
      if (c == '*' || c == '+' || c == '?' || c == '{') {
        if (!has_atom) error("a repetition needs something to repeat");
        uint32_t min = 0, max = kUnbounded;
        ++pos_;
        if (c == '+') min = 1;
        if (c == '?') max = 1;
        if (c == '{') {
          skip_space();
          min = max = parse_count();
          skip_space();
          if (peek() == ',') {
            ++pos_;
            skip_space();
            max = peek() == '}' ? kUnbounded : parse_count();
            skip_space();
          }
          if (peek() != '}') error("expected '}' to close the repetition count");
          ++pos_;
          if (max < min) error("the repetition's maximum is below its minimum");
        }
        repeat(seq, atom_start, min, max, owner);
        has_atom = false;  // x** is not GBNF
        continue;
      }
      atom_start = seq.size();
      has_atom = true;
      if (c == '"') {
        ++pos_;
        while (peek() != '"') {
          if (at_end() || peek() == '\n') error("unterminated string literal");
          append_char(parse_char(), seq);
        }
        ++pos_;
        if (seq.size() == atom_start) has_atom = false;  // "" matches the empty string
      } else if (c == '[') {
        seq.push_back(parse_class(owner));
      } else if (c == '.') {
        ++pos_;
        seq.push_back(class_element({{0, 0x10FFFF}}, owner));
      } else if (c == '(') {
        if (++nesting_ > kMaxNesting) error("groups nest deeper than " + std::to_string(kMaxNesting) + " levels");
        ++pos_;
        const uint32_t rule = aux_rule(owner);
        parse_alternates(rule, owner);
        --nesting_;
        skip_space();
        if (peek() != ')') error("expected ')'");
        ++pos_;
        seq.push_back({GrammarElement::rule, rule});
      } else if (is_name_char(c)) {
        const size_t at = pos_;
        seq.push_back({GrammarElement::rule, rule_named(parse_name(), at).id});
      } else {
        error("unexpected character '" + std::string(1, c) + "'");
      }
    }
  }

  std::string_view s_;
  size_t pos_ = 0;
  GrammarBuilder b_;
  std::unordered_map<std::string, Rule> rules_;
  uint32_t aux_count_ = 0;
  int nesting_ = 0;
};

}  // namespace

std::shared_ptr<const Grammar> parse_gbnf(std::string_view text, std::string_view root) {
  return GbnfParser(text).parse(root);
}

}  // namespace sibyl::engine
