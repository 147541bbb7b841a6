#include "engine/chat/chat_format.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cstdint>

#include "engine/text/byte_level.h"
#include "engine/core/failure.h"
#include "engine/formats/file_util.h"

namespace sibyl::engine {
namespace {

// ---------------------------------------------------------------------------------------------
// The templates Sibyl knows, as published in each model's tokenizer_config.json. Newlines inside
// Jinja string literals are written as the Jinja escape \n; recognition compares decoded values.

// DeepSeek-V3 (huggingface.co/deepseek-ai/DeepSeek-V3).
constexpr std::string_view kDeepseekV3 =
    R"J({% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %})J"
    R"J({% set ns = namespace(is_first=false, is_tool=false, is_output_first=true, system_prompt='', )J"
    R"J(is_first_sp=true) %}{%- for message in messages %}{%- if message['role'] == 'system' %})J"
    R"J({%- if ns.is_first_sp %}{% set ns.system_prompt = ns.system_prompt + message['content'] %})J"
    R"J({% set ns.is_first_sp = false %}{%- else %})J"
    R"J({% set ns.system_prompt = ns.system_prompt + '\n\n' + message['content'] %}{%- endif %})J"
    R"J({%- endif %}{%- endfor %}{{bos_token}}{{ns.system_prompt}}{%- for message in messages %})J"
    R"J({%- if message['role'] == 'user' %}{%- set ns.is_tool = false -%})J"
    R"J({{'<｜User｜>' + message['content']}}{%- endif %})J"
    R"J({%- if message['role'] == 'assistant' and message['content'] is none %})J"
    R"J({%- set ns.is_tool = false -%}{%- for tool in message['tool_calls']%}{%- if not ns.is_first %})J"
    R"J({{'<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + )J"
    R"J(tool['function']['name'] + '\n' + '```json' + '\n' + tool['function']['arguments'] + '\n' + )J"
    R"J('```' + '<｜tool▁call▁end｜>'}}{%- set ns.is_first = true -%}{%- else %})J"
    R"J({{'\n' + '<｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + )J"
    R"J('\n' + '```json' + '\n' + tool['function']['arguments'] + '\n' + '```' + '<｜tool▁call▁end｜>'}})J"
    R"J({{'<｜tool▁calls▁end｜><｜end▁of▁sentence｜>'}}{%- endif %}{%- endfor %}{%- endif %})J"
    R"J({%- if message['role'] == 'assistant' and message['content'] is not none %}{%- if ns.is_tool %})J"
    R"J({{'<｜tool▁outputs▁end｜>' + message['content'] + '<｜end▁of▁sentence｜>'}})J"
    R"J({%- set ns.is_tool = false -%}{%- else %})J"
    R"J({{'<｜Assistant｜>' + message['content'] + '<｜end▁of▁sentence｜>'}}{%- endif %}{%- endif %})J"
    R"J({%- if message['role'] == 'tool' %}{%- set ns.is_tool = true -%}{%- if ns.is_output_first %})J"
    R"J({{'<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}})J"
    R"J({%- set ns.is_output_first = false %}{%- else %})J"
    R"J({{'\n<｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}{%- endif %})J"
    R"J({%- endif %}{%- endfor -%}{% if ns.is_tool %}{{'<｜tool▁outputs▁end｜>'}}{% endif %})J"
    R"J({% if add_generation_prompt and not ns.is_tool %}{{'<｜Assistant｜>'}}{% endif %})J";

// DeepSeek-R1 (huggingface.co/deepseek-ai/DeepSeek-R1, the revision whose generation prompt
// opens the reasoning with "<think>\n").
constexpr std::string_view kDeepseekR1 =
    R"J({% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %})J"
    R"J({% set ns = namespace(is_first=false, is_tool=false, is_output_first=true, system_prompt='', )J"
    R"J(is_first_sp=true) %}{%- for message in messages %}{%- if message['role'] == 'system' %})J"
    R"J({%- if ns.is_first_sp %}{% set ns.system_prompt = ns.system_prompt + message['content'] %})J"
    R"J({% set ns.is_first_sp = false %}{%- else %})J"
    R"J({% set ns.system_prompt = ns.system_prompt + '\n\n' + message['content'] %}{%- endif %})J"
    R"J({%- endif %}{%- endfor %}{{ bos_token }}{{ ns.system_prompt }}{%- for message in messages %})J"
    R"J({%- if message['role'] == 'user' %}{%- set ns.is_tool = false -%})J"
    R"J({{'<｜User｜>' + message['content']}}{%- endif %})J"
    R"J({%- if message['role'] == 'assistant' and 'tool_calls' in message %})J"
    R"J({%- set ns.is_tool = false -%}{%- for tool in message['tool_calls'] %}{%- if not ns.is_first %})J"
    R"J({%- if message['content'] is none %})J"
    R"J({{'<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + )J"
    R"J(tool['function']['name'] + '\n' + '```json' + '\n' + tool['function']['arguments'] + '\n' + )J"
    R"J('```' + '<｜tool▁call▁end｜>'}}{%- else %})J"
    R"J({{'<｜Assistant｜>' + message['content'] + '<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>' + )J"
    R"J(tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\n' + '```json' + '\n' + )J"
    R"J(tool['function']['arguments'] + '\n' + '```' + '<｜tool▁call▁end｜>'}}{%- endif %})J"
    R"J({%- set ns.is_first = true -%}{%- else %})J"
    R"J({{'\n' + '<｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + )J"
    R"J('\n' + '```json' + '\n' + tool['function']['arguments'] + '\n' + '```' + '<｜tool▁call▁end｜>'}})J"
    R"J({%- endif %}{%- endfor %}{{'<｜tool▁calls▁end｜><｜end▁of▁sentence｜>'}}{%- endif %})J"
    R"J({%- if message['role'] == 'assistant' and 'tool_calls' not in message %}{%- if ns.is_tool %})J"
    R"J({{'<｜tool▁outputs▁end｜>' + message['content'] + '<｜end▁of▁sentence｜>'}})J"
    R"J({%- set ns.is_tool = false -%}{%- else %}{% set content = message['content'] %})J"
    R"J({% if '</think>' in content %}{% set content = content.split('</think>')[-1] %}{% endif %})J"
    R"J({{'<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>'}}{%- endif %}{%- endif %})J"
    R"J({%- if message['role'] == 'tool' %}{%- set ns.is_tool = true -%}{%- if ns.is_output_first %})J"
    R"J({{'<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}})J"
    R"J({%- set ns.is_output_first = false %}{%- else %})J"
    R"J({{'<｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}{%- endif %}{%- endif %})J"
    R"J({%- endfor -%}{% if ns.is_tool %}{{'<｜tool▁outputs▁end｜>'}}{% endif %})J"
    R"J({% if add_generation_prompt and not ns.is_tool %}{{'<｜Assistant｜><think>\n'}}{% endif %})J";

// tiny-reasoner (models/tiny-reasoner): R1 style without tools.
constexpr std::string_view kTinyReasoner =
    R"J({% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %})J"
    R"J({{ bos_token }}{% for message in messages %}{% if message['role'] == 'system' %})J"
    R"J({{ message['content'] }}{% elif message['role'] == 'user' %})J"
    R"J({{ '<｜User｜>' + message['content'] }}{% elif message['role'] == 'assistant' %})J"
    R"J({% set content = message['content'] %}{% if '</think>' in content %})J"
    R"J({% set content = content.split('</think>')[-1] %}{% endif %})J"
    R"J({{ '<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>' }}{% endif %}{% endfor %})J"
    R"J({% if add_generation_prompt %}{{ '<｜Assistant｜><think>\n' }}{% endif %})J";

struct KnownTemplate {
  ChatFormat::Kind kind;
  std::string_view name;
  std::string_view text;
};

constexpr std::array<KnownTemplate, 3> kKnown = {{
    {ChatFormat::Kind::deepseek_v3, "deepseek-v3", kDeepseekV3},
    {ChatFormat::Kind::deepseek_r1, "deepseek-r1", kDeepseekR1},
    {ChatFormat::Kind::tiny_reasoner, "tiny-reasoner", kTinyReasoner},
}};

// ---------------------------------------------------------------------------------------------
// Recognition. A template is reduced to the token stream Jinja's lexer would produce under
// transformers' settings (trim_blocks, lstrip_blocks, no trailing newline): whitespace-control
// markers are applied to the text between tags and then dropped, whitespace inside tags goes,
// and string literals are compared by their decoded value. Two templates with equal streams
// render identically; any other difference (one character of a literal, a text fragment, a
// name) makes the template unknown. This is a lexer only: nothing is evaluated.

struct Lexeme {
  enum class Kind : uint8_t { text, open_statement, open_expression, close, name, string, number, op };
  Kind kind;
  std::string value;
  size_t offset;  // where it starts in the (newline-normalised) template, for messages

  bool same_as(const Lexeme& o) const { return kind == o.kind && value == o.value; }
};

struct Lexed {
  std::string text;  // the template with newlines normalised, which offsets refer to
  std::vector<Lexeme> lexemes;
  size_t error_at = std::string::npos;  // where lexing failed; npos when it did not
};

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool is_name_char(char c) { return is_name_start(c) || (c >= '0' && c <= '9'); }
bool is_digit(char c) { return c >= '0' && c <= '9'; }

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Decodes a literal's body as Jinja does (Python "unicode-escape"). Escapes this cannot decode
// exactly (\N{...}, a backslash before a non-ASCII character) return false: the template is
// then unknown rather than possibly misread.
bool decode_string(std::string_view body, std::string& out) {
  for (size_t i = 0; i < body.size(); ++i) {
    char c = body[i];
    if (c != '\\') {
      out += c;
      continue;
    }
    if (++i == body.size()) return false;
    char e = body[i];
    auto hex = [&](int digits) {  // exactly `digits` hex digits
      uint32_t cp = 0;
      for (int k = 1; k <= digits; ++k) {
        if (i + k >= body.size()) return false;
        int v = hex_value(body[i + k]);
        if (v < 0) return false;
        cp = cp * 16 + static_cast<uint32_t>(v);
      }
      i += static_cast<size_t>(digits);
      return append_utf8(out, cp);
    };
    switch (e) {
      case '\n': break;  // line continuation
      case '\\': out += '\\'; break;
      case '\'': out += '\''; break;
      case '"': out += '"'; break;
      case 'a': out += '\a'; break;
      case 'b': out += '\b'; break;
      case 'f': out += '\f'; break;
      case 'n': out += '\n'; break;
      case 'r': out += '\r'; break;
      case 't': out += '\t'; break;
      case 'v': out += '\v'; break;
      case 'x': if (!hex(2)) return false; break;
      case 'u': if (!hex(4)) return false; break;
      case 'U': if (!hex(8)) return false; break;
      default:
        if (e >= '0' && e <= '7') {
          uint32_t cp = static_cast<uint32_t>(e - '0');
          for (int k = 0; k < 2 && i + 1 < body.size() && body[i + 1] >= '0' && body[i + 1] <= '7'; ++k)
            cp = cp * 8 + static_cast<uint32_t>(body[++i] - '0');
          if (!append_utf8(out, cp)) return false;
        } else if (static_cast<unsigned char>(e) >= 0x80 || e == 'N') {
          return false;
        } else {
          out += '\\';  // Python keeps an unknown escape as written
          out += e;
        }
    }
  }
  return true;
}

class TemplateLexer {
 public:
  explicit TemplateLexer(std::string_view text) {
    // Jinja first turns \r\n and \r into \n and drops one trailing newline.
    for (size_t i = 0; i < text.size(); ++i) {
      if (text[i] == '\r') {
        if (i + 1 < text.size() && text[i + 1] == '\n') ++i;
        src_ += '\n';
      } else {
        src_ += text[i];
      }
    }
    if (!src_.empty() && src_.back() == '\n') src_.pop_back();
  }

  Lexed run() {
    out_.text = src_;
    size_t pos = 0;
    bool line_starting = true;  // the text before the next tag starts a line
    for (;;) {
      size_t open = next_tag(pos);
      std::string_view text = std::string_view(src_).substr(pos, open == std::string::npos ? open : open - pos);
      if (open == std::string::npos) {
        add_text(std::string(text), pos);
        return std::move(out_);
      }
      char type = src_[open + 1];
      size_t inner = open + 2;
      char left = inner < src_.size() && (src_[inner] == '-' || src_[inner] == '+') ? src_[inner] : 0;
      if (left) ++inner;
      std::string before(text);
      if (left == '-') {
        while (!before.empty() && is_space(before.back())) before.pop_back();
      } else if (left != '+' && type != '{') {  // lstrip_blocks: blocks and comments, not {{ }}
        size_t line = before.rfind('\n');
        size_t from = line == std::string::npos ? 0 : line + 1;
        if ((line != std::string::npos || line_starting) &&
            std::all_of(before.begin() + static_cast<ptrdiff_t>(from), before.end(), is_space))
          before.resize(from);
      }
      add_text(std::move(before), pos);

      size_t end = type == '#' ? comment(inner) : tag(open, inner, type);
      if (end == std::string::npos) return fail_at(open);
      // After the tag: '-' strips all whitespace; trim_blocks one newline after %} and #}.
      size_t after = end;
      if (right_ == '-') {
        while (after < src_.size() && is_space(src_[after])) ++after;
      } else if (right_ != '+' && type != '{' && after < src_.size() && src_[after] == '\n') {
        ++after;
      }
      line_starting = after > end && src_[after - 1] == '\n';
      pos = after;
    }
  }

 private:
  size_t next_tag(size_t from) const {
    for (size_t i = src_.find('{', from); i != std::string::npos; i = src_.find('{', i + 1))
      if (i + 1 < src_.size() && (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#')) return i;
    return std::string::npos;
  }

  void add_text(std::string text, size_t offset) {
    if (text.empty()) return;
    if (!out_.lexemes.empty() && out_.lexemes.back().kind == Lexeme::Kind::text) {
      out_.lexemes.back().value += text;  // text on both sides of a dropped comment
      return;
    }
    out_.lexemes.push_back({Lexeme::Kind::text, std::move(text), offset});
  }

  // Returns the position after the closing "#}" (npos when there is none).
  size_t comment(size_t inner) {
    size_t close = src_.find("#}", inner);
    if (close == std::string::npos) return close;
    right_ = close > inner && (src_[close - 1] == '-' || src_[close - 1] == '+') ? src_[close - 1] : 0;
    return close + 2;
  }

  // Lexes {% ... %} or {{ ... }}; returns the position after the closing delimiter.
  size_t tag(size_t open, size_t i, char type) {
    const char* close = type == '%' ? "%}" : "}}";
    out_.lexemes.push_back({type == '%' ? Lexeme::Kind::open_statement : Lexeme::Kind::open_expression, "", open});
    int depth = 0;  // like Jinja, a closing delimiter inside brackets is an operator
    for (;;) {
      while (i < src_.size() && is_space(src_[i])) ++i;
      if (i >= src_.size()) return std::string::npos;
      if (depth == 0) {
        right_ = src_[i] == '-' || src_[i] == '+' ? src_[i] : 0;
        size_t at = right_ ? i + 1 : i;
        if (src_.compare(at, 2, close) == 0) {
          out_.lexemes.push_back({Lexeme::Kind::close, "", i});
          return at + 2;
        }
      }
      char c = src_[i];
      size_t start = i;
      if (c == '\'' || c == '"') {
        size_t j = i + 1;
        while (j < src_.size() && src_[j] != c) j += src_[j] == '\\' ? 2 : 1;
        if (j >= src_.size()) return std::string::npos;
        std::string value;
        if (!decode_string(std::string_view(src_).substr(i + 1, j - i - 1), value)) return std::string::npos;
        out_.lexemes.push_back({Lexeme::Kind::string, std::move(value), start});
        i = j + 1;
      } else if (is_name_start(c)) {
        while (i < src_.size() && is_name_char(src_[i])) ++i;
        out_.lexemes.push_back({Lexeme::Kind::name, src_.substr(start, i - start), start});
      } else if (is_digit(c)) {
        while (i < src_.size() && (is_name_char(src_[i]) || src_[i] == '.')) ++i;
        out_.lexemes.push_back({Lexeme::Kind::number, src_.substr(start, i - start), start});
      } else {
        static constexpr std::array<std::string_view, 6> kTwo = {"==", "!=", ">=", "<=", "//", "**"};
        size_t n = 1;
        for (std::string_view two : kTwo)
          if (src_.compare(i, 2, two) == 0) n = 2;
        if (c == '(' || c == '[' || c == '{') ++depth;
        if ((c == ')' || c == ']' || c == '}') && depth > 0) --depth;
        out_.lexemes.push_back({Lexeme::Kind::op, src_.substr(i, n), start});
        i += n;
      }
    }
  }

  Lexed fail_at(size_t offset) {
    out_.error_at = offset;
    return std::move(out_);
  }

  std::string src_;
  Lexed out_;
  char right_ = 0;  // the whitespace-control mark before the last tag's closing delimiter
};

Lexed lex_template(std::string_view text) { return TemplateLexer(text).run(); }

const std::vector<Lexed>& known_lexed() {
  static const std::vector<Lexed> lexed = [] {
    std::vector<Lexed> v;
    for (const KnownTemplate& k : kKnown) v.push_back(lex_template(k.text));
    return v;
  }();
  return lexed;
}

size_t common_prefix(const std::vector<Lexeme>& a, const std::vector<Lexeme>& b) {
  size_t n = 0;
  while (n < a.size() && n < b.size() && a[n].same_as(b[n])) ++n;
  return n;
}

std::string excerpt(std::string_view text, size_t at) {
  if (at >= text.size()) return "the end of the template";
  size_t n = std::min<size_t>(48, text.size() - at);
  while (at + n < text.size() && (static_cast<unsigned char>(text[at + n]) & 0xC0) == 0x80) ++n;  // whole UTF-8
  std::string s = "\"";
  s.append(text.substr(at, n));
  s += at + n < text.size() ? "…\"" : "\"";
  return s;
}

std::string known_names() {
  std::string s;
  for (const KnownTemplate& k : kKnown) s += (s.empty() ? "" : ", ") + std::string(k.name);
  return s;
}

const KnownTemplate& recognise(const std::string& text, const std::string& source) {
  Lexed lexed = lex_template(text);
  std::string why;
  if (lexed.error_at != std::string::npos) {
    why = "it could not be read as a Jinja template near " + excerpt(lexed.text, lexed.error_at);
  } else {
    size_t best = 0, best_len = 0;
    for (size_t i = 0; i < kKnown.size(); ++i) {
      const std::vector<Lexeme>& known = known_lexed()[i].lexemes;
      size_t n = common_prefix(lexed.lexemes, known);
      if (n == known.size() && n == lexed.lexemes.size()) return kKnown[i];
      if (n > best_len) best = i, best_len = n;
    }
    size_t at = best_len < lexed.lexemes.size() ? lexed.lexemes[best_len].offset : lexed.text.size();
    why = best_len < 8 ? std::string("it resembles none of them")
                       : "the nearest, " + std::string(kKnown[best].name) + ", differs at " + excerpt(lexed.text, at);
  }
  fail(Errc::unsupported, source + ": the chat template is not one Sibyl knows (" + known_names() + "); " +
                              why + ". Sibyl renders only templates it recognises exactly, so that a prompt is "
                                    "never silently wrong");
}

// ---------------------------------------------------------------------------------------------
// tokenizer_config.json

using nlohmann::json;

std::string special_token(const json& root, const char* key, const std::string& source) {
  if (!root.contains(key) || root[key].is_null())
    fail(Errc::format, source + ": \"" + std::string(key) + "\" is required");
  const json& v = root[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  fail(Errc::format, source + ": \"" + std::string(key) + "\" must be a string or an object with a string \"content\"");
}

std::string template_text(const json& root, const std::string& source) {
  if (!root.contains("chat_template") || root["chat_template"].is_null())
    fail(Errc::unsupported, source + ": has no \"chat_template\"; Sibyl needs the model's own chat template to build "
                                     "prompts (known: " + known_names() + ")");
  const json& t = root["chat_template"];
  if (t.is_string()) return t.get<std::string>();
  if (!t.is_array()) fail(Errc::format, source + ": \"chat_template\" must be a string or a list of {name, template}");
  for (const json& entry : t) {
    if (!entry.is_object() || !entry.contains("name") || !entry["name"].is_string() || !entry.contains("template") ||
        !entry["template"].is_string())
      fail(Errc::format, source + ": every \"chat_template\" entry must be {\"name\": string, \"template\": string}");
    if (entry["name"] == "default") return entry["template"].get<std::string>();
  }
  fail(Errc::unsupported, source + ": \"chat_template\" lists named templates but none called \"default\"");
}

// ---------------------------------------------------------------------------------------------
// Rendering: each function does what its template's Jinja does, quirks included (DeepSeek's
// is_first / is_output_first flags are never reset, so later tool rounds differ from the first).

constexpr std::string_view kUser = "<｜User｜>";
constexpr std::string_view kAssistant = "<｜Assistant｜>";
constexpr std::string_view kEnd = "<｜end▁of▁sentence｜>";  // written literally by the templates
constexpr std::string_view kCallsBegin = "<｜tool▁calls▁begin｜>";
constexpr std::string_view kCallsEnd = "<｜tool▁calls▁end｜>";
constexpr std::string_view kOutputsBegin = "<｜tool▁outputs▁begin｜>";
constexpr std::string_view kOutputsEnd = "<｜tool▁outputs▁end｜>";
constexpr std::string_view kOutputBegin = "<｜tool▁output▁begin｜>";
constexpr std::string_view kOutputEnd = "<｜tool▁output▁end｜>";
constexpr std::string_view kThinkPrompt = "<think>\n";

bool is(const ChatMessage& m, std::string_view role) { return m.role == role; }

// The prompt being written: template markup, and message content whose range is recorded
// unless the message is trusted.
class Out {
 public:
  explicit Out(RenderedChat& r) : r_(r) {}
  Out& append(std::string_view markup) {
    r_.text.append(markup);
    return *this;
  }
  Out& content(const ChatMessage& m, std::string_view text) {
    const size_t begin = r_.text.size();
    r_.text.append(text);
    if (!m.trusted && !text.empty()) r_.plain.push_back({begin, r_.text.size()});
    return *this;
  }

 private:
  RenderedChat& r_;
};

// The templates test `content is none`; see ChatMessage.
bool content_is_null(const ChatMessage& m) { return m.content.empty() && !m.tool_calls.empty(); }

void tool_call(Out& out, const ChatMessage& m, const ChatToolCall& c) {
  out.append("<｜tool▁call▁begin｜>").content(m, c.type).append("<｜tool▁sep｜>").content(m, c.name);
  out.append("\n```json\n").content(m, c.arguments).append("\n```<｜tool▁call▁end｜>");
}

// content.split('</think>')[-1]: what follows the last "</think>".
std::string_view after_reasoning(std::string_view content) {
  size_t at = content.rfind("</think>");
  return at == std::string_view::npos ? content : content.substr(at + 8);
}

// Both DeepSeek templates start with every system message, in order, joined by a blank line.
void system_prompt(Out& out, const std::vector<ChatMessage>& messages) {
  bool first = true;
  for (const ChatMessage& m : messages) {
    if (!is(m, "system")) continue;
    if (!first) out.append("\n\n");
    out.content(m, m.content);
    first = false;
  }
}

void add_tool_output(Out& out, const ChatMessage& m, bool& output_first, std::string_view separator) {
  if (output_first) {
    out.append(kOutputsBegin);
    output_first = false;
  } else {
    out.append(separator);
  }
  out.append(kOutputBegin).content(m, m.content).append(kOutputEnd);
}

void render_v3(Out& out, const std::vector<ChatMessage>& messages, bool generation_prompt, const std::string& bos) {
  out.append(bos);
  system_prompt(out, messages);
  bool is_first = false, is_tool = false, output_first = true;
  for (const ChatMessage& m : messages) {
    if (is(m, "user")) {
      is_tool = false;
      out.append(kUser).content(m, m.content);
    } else if (is(m, "assistant") && content_is_null(m)) {
      is_tool = false;
      for (const ChatToolCall& c : m.tool_calls) {
        if (!is_first) {
          out.append(kAssistant).append(kCallsBegin);
          tool_call(out, m, c);
          is_first = true;
        } else {  // V3 closes the calls only after a second call
          out.append("\n");
          tool_call(out, m, c);
          out.append(kCallsEnd).append(kEnd);
        }
      }
    } else if (is(m, "assistant")) {
      if (!m.tool_calls.empty())  // the template would drop them without a word
        fail(Errc::invalid_argument, "an assistant message with content and tool calls: the DeepSeek-V3 template "
                                     "drops such calls; give the calls with empty content");
      out.append(is_tool ? kOutputsEnd : kAssistant).content(m, m.content).append(kEnd);
      is_tool = false;
    } else if (is(m, "tool")) {
      is_tool = true;
      add_tool_output(out, m, output_first, "\n");
    }
  }
  if (is_tool) out.append(kOutputsEnd);
  if (generation_prompt && !is_tool) out.append(kAssistant);
}

void render_r1(Out& out, const std::vector<ChatMessage>& messages, bool generation_prompt, const std::string& bos) {
  out.append(bos);
  system_prompt(out, messages);
  bool is_first = false, is_tool = false, output_first = true;
  for (const ChatMessage& m : messages) {
    if (is(m, "user")) {
      is_tool = false;
      out.append(kUser).content(m, m.content);
    } else if (is(m, "assistant") && !m.tool_calls.empty()) {
      is_tool = false;
      for (const ChatToolCall& c : m.tool_calls) {
        if (!is_first) {  // content (none or not) before the first call, reasoning kept
          out.append(kAssistant).content(m, m.content).append(kCallsBegin);
          tool_call(out, m, c);
          is_first = true;
        } else {
          out.append("\n");
          tool_call(out, m, c);
        }
      }
      out.append(kCallsEnd).append(kEnd);
    } else if (is(m, "assistant")) {
      if (is_tool)  // an answer after tool outputs keeps its reasoning
        out.append(kOutputsEnd).content(m, m.content).append(kEnd);
      else
        out.append(kAssistant).content(m, after_reasoning(m.content)).append(kEnd);
      is_tool = false;
    } else if (is(m, "tool")) {
      is_tool = true;
      add_tool_output(out, m, output_first, "");
    }
  }
  if (is_tool) out.append(kOutputsEnd);
  if (generation_prompt && !is_tool) out.append(kAssistant).append(kThinkPrompt);
}

void render_tiny_reasoner(Out& out, const std::vector<ChatMessage>& messages, bool generation_prompt,
                          const std::string& bos) {
  out.append(bos);
  for (size_t i = 0; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    // The template silently drops what it has no branch for; a prompt missing a tool result
    // would be wrong, so refuse instead.
    if (is(m, "tool") || !m.tool_calls.empty())
      fail(Errc::unsupported, "message " + std::to_string(i) + ": the tiny-reasoner chat format has no tool calls or "
                                                               "tool messages");
    if (is(m, "system"))
      out.content(m, m.content);
    else if (is(m, "user"))
      out.append(kUser).content(m, m.content);
    else if (is(m, "assistant"))
      out.append(kAssistant).content(m, after_reasoning(m.content)).append(kEnd);
  }
  if (generation_prompt) out.append(kAssistant).append(kThinkPrompt);
}

}  // namespace

ChatFormat ChatFormat::from_tokenizer_config(const std::string& json_text, const std::string& source) {
  json root = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) fail(Errc::format, source + ": not valid JSON");
  if (!root.is_object()) fail(Errc::format, source + ": must be a JSON object");
  const KnownTemplate& known = recognise(template_text(root, source), source);
  return ChatFormat(known.kind, special_token(root, "bos_token", source), special_token(root, "eos_token", source));
}

ChatFormat ChatFormat::load(const std::string& tokenizer_config_path) {
  return from_tokenizer_config(read_text_file(tokenizer_config_path), tokenizer_config_path);
}

std::string ChatFormat::render(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const {
  return render_marked(messages, add_generation_prompt).text;
}

RenderedChat ChatFormat::render_marked(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const {
  for (size_t i = 0; i < messages.size(); ++i) {
    const std::string& r = messages[i].role;
    if (r != "system" && r != "user" && r != "assistant" && r != "tool")
      fail(Errc::invalid_argument, "message " + std::to_string(i) + " has role \"" + r +
                                       "\"; roles are system, user, assistant and tool");
  }
  RenderedChat r;
  Out out(r);
  switch (kind_) {
    case Kind::deepseek_v3: render_v3(out, messages, add_generation_prompt, bos_); return r;
    case Kind::deepseek_r1: render_r1(out, messages, add_generation_prompt, bos_); return r;
    case Kind::tiny_reasoner: render_tiny_reasoner(out, messages, add_generation_prompt, bos_); return r;
  }
  fail(Errc::internal, "unknown chat format");
}

std::string_view ChatFormat::name() const {
  for (const KnownTemplate& k : kKnown)
    if (k.kind == kind_) return k.name;
  return "unknown";
}

bool ChatFormat::prompt_opens_thinking() const { return kind_ != Kind::deepseek_v3; }

std::string_view ChatFormat::known_template(std::string_view name) {
  for (const KnownTemplate& k : kKnown)
    if (k.name == name) return k.text;
  return {};
}

}  // namespace sibyl::engine
