#include "engine/chat/tool_calls.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <set>

#include "engine/core/failure.h"
#include "engine/grammar/json_schema.h"

namespace sibyl::engine {
namespace {

constexpr std::string_view kMarkerText[ToolTokens::count] = {
    "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>", "<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>", "<｜tool▁sep｜>"};

constexpr size_t kMaxName = 64;
constexpr std::string_view kArgsOpen = "\n```json\n";
constexpr std::string_view kArgsClose = "\n```";

bool valid_name(const std::string& name) {
  if (name.empty() || name.size() > kMaxName) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
           c == '-';
  });
}

std::string marker_byte(ToolTokens::Marker m) {
  return std::string(1, static_cast<char>(ToolTokens::kFirstByte + m));
}

// Appends the bytes of `text` to `seq`, one terminal per byte.
void literal(GrammarBuilder& b, std::vector<GrammarElement>& seq, std::string_view text) {
  for (char c : text) {
    ByteSet set{};
    const auto byte = static_cast<uint8_t>(c);
    add_bytes(set, byte, byte);
    seq.push_back({GrammarElement::bytes, b.set_index(set)});
  }
}

GrammarElement rule(uint32_t r) { return {GrammarElement::rule, r}; }

}  // namespace

ToolTokens ToolTokens::of(const Tokenizer& tokenizer) {
  ToolTokens t;
  for (int m = 0; m < count; ++m) {
    std::optional<int32_t> id = tokenizer.token_id(std::string(kMarkerText[m]));
    if (!id)
      fail(Errc::unsupported, "the model's vocabulary has no " + std::string(kMarkerText[m]) +
                                  " token, which the DeepSeek tool-call format needs");
    t.id[m] = *id;
  }
  return t;
}

std::vector<SpecialToken> ToolTokens::specials() const {
  std::vector<SpecialToken> out;
  for (int m = 0; m < count; ++m) out.push_back({id[m], marker_byte(static_cast<Marker>(m))});
  return out;
}

int ToolTokens::marker_of(int32_t token) const {
  for (int m = 0; m < count; ++m)
    if (id[m] == token) return m;
  return -1;
}

ToolSet::ToolSet(std::vector<ToolSpec> tools, ToolChoice choice, std::string forced)
    : tools_(std::move(tools)), choice_(choice), forced_(std::move(forced)) {
  if (tools_.empty()) fail(Errc::invalid_argument, "tool calls need at least one tool");
  if (!forced_.empty() && choice_ != ToolChoice::required)
    fail(Errc::invalid_argument, "a forced tool (\"" + forced_ + "\") goes with the choice \"required\"");
  std::set<std::string> names;
  GrammarBuilder b;
  const uint32_t call = b.add_rule("tool-call");
  for (size_t i = 0; i < tools_.size(); ++i) {
    const ToolSpec& t = tools_[i];
    const std::string where = "tool " + std::to_string(i) + " (\"" + t.name + "\")";
    if (!valid_name(t.name))
      fail(Errc::invalid_argument, where + ": a tool name is 1 to 64 of the characters A-Z a-z 0-9 _ . -");
    if (!names.insert(t.name).second) fail(Errc::invalid_argument, where + ": the name is used by an earlier tool");
    std::shared_ptr<const Grammar> args;
    try {
      args = parse_json_schema(t.parameters.empty() ? std::string_view(R"({"type":"object"})") : t.parameters);
    } catch (const Failure& e) {
      fail(Errc::invalid_argument, where + ": parameters: " + e.what());
    }
    const auto root = nlohmann::json::parse(t.parameters.empty() ? std::string_view("{}") : t.parameters);
    if (root.contains("type") && root["type"] != "object")
      fail(Errc::invalid_argument, where + ": parameters must describe a JSON object (\"type\": \"object\")");
    if (!forced_.empty() && t.name != forced_) continue;
    // tool-call ::= <call_begin> "function" <sep> NAME "\n```json\n" ARGS "\n```" <call_end>
    std::vector<GrammarElement> seq;
    literal(b, seq, marker_byte(ToolTokens::call_begin) + "function" + marker_byte(ToolTokens::sep) + t.name);
    literal(b, seq, kArgsOpen);
    seq.push_back(rule(b.import(*args, "tool-" + std::to_string(i) + "-")));
    literal(b, seq, std::string(kArgsClose) + marker_byte(ToolTokens::call_end));
    b.add_alternative(call, seq);
  }
  if (!forced_.empty() && !names.count(forced_))
    fail(Errc::invalid_argument, "the forced tool \"" + forced_ + "\" is not among the tools");
  // section ::= <calls_begin> tool-call more <calls_end>; more ::= "\n" tool-call more | empty
  std::vector<GrammarElement> seq;
  literal(b, seq, marker_byte(ToolTokens::calls_begin));
  seq.push_back(rule(call));
  if (forced_.empty()) {
    const uint32_t more = b.add_rule("more-tool-calls");
    std::vector<GrammarElement> again;
    literal(b, again, "\n");
    again.push_back(rule(call));
    again.push_back(rule(more));
    b.add_alternative(more, again);
    b.add_alternative(more, {});
    seq.push_back(rule(more));
  }
  literal(b, seq, marker_byte(ToolTokens::calls_end));
  const uint32_t section = b.add_rule("tool-calls");
  b.add_alternative(section, seq);
  section_ = b.finish(section);
  section_automaton_ = std::make_shared<GrammarAutomaton>(section_);
  if (choice_ == ToolChoice::required)
    answer_automaton_ = std::make_shared<GrammarAutomaton>(after_whitespace(*section_, 3));
}

std::shared_ptr<const ToolSet> ToolSetCache::get(std::vector<ToolSpec> tools, ToolChoice choice, std::string forced) {
  std::string key = std::to_string(static_cast<int>(choice)) + '\0' + forced;
  for (const ToolSpec& t : tools)  // NUL separates: C strings hold none
    for (const std::string* part : {&t.name, &t.description, &t.parameters}) (key += '\0') += *part;
  {
    std::lock_guard lock(mutex_);
    for (size_t i = 0; i < kept_.size(); ++i)
      if (kept_[i].first == key) {
        std::rotate(kept_.begin() + static_cast<std::ptrdiff_t>(i), kept_.begin() + static_cast<std::ptrdiff_t>(i) + 1,
                    kept_.end());
        return kept_.back().second;
      }
  }
  auto set = std::make_shared<const ToolSet>(std::move(tools), choice, std::move(forced));  // may throw
  std::lock_guard lock(mutex_);
  for (const auto& [k, kept] : kept_)  // another thread compiled it meanwhile: share that one
    if (k == key) return kept;
  if (kept_.size() == kKept) kept_.erase(kept_.begin());
  kept_.emplace_back(std::move(key), set);
  return set;
}

// Independent of the tool choice, so that turns with different choices share the prompt's
// cached prefix (the constraint enforces the choice).
std::string ToolSet::definitions() const {
  using nlohmann::ordered_json;
  std::string s =
      "## Tools\n\nYou can call the tools below. To call tools, reply with exactly this and nothing else:\n";
  s += std::string(kMarkerText[ToolTokens::calls_begin]) + std::string(kMarkerText[ToolTokens::call_begin]) +
       "function" + std::string(kMarkerText[ToolTokens::sep]) + "TOOL_NAME" + std::string(kArgsOpen) + "ARGUMENTS" +
       std::string(kArgsClose) + std::string(kMarkerText[ToolTokens::call_end]) +
       std::string(kMarkerText[ToolTokens::calls_end]) +
       "\nwhere TOOL_NAME is one of the names below and ARGUMENTS a JSON object that follows its parameters. "
       "For several calls, separate their " + std::string(kMarkerText[ToolTokens::call_begin]) + "…" +
       std::string(kMarkerText[ToolTokens::call_end]) + " parts with a line break. The results come back as tool "
       "outputs.\n";
  for (const ToolSpec& t : tools_) {
    s += "\n### " + t.name + "\n";
    if (!t.description.empty()) s += "Description: " + t.description + "\n";
    const std::string params = t.parameters.empty() ? "{\"type\":\"object\"}" : ordered_json::parse(t.parameters).dump();
    s += "Parameters: " + params + "\n";
  }
  return s;
}

std::vector<ChatMessage> with_tool_definitions(const std::vector<ChatMessage>& messages, const ToolSet& tools,
                                               const ChatFormat& format) {
  if (!format.supports_tools())
    fail(Errc::unsupported, "the " + std::string(format.name()) +
                                " chat format has no tool calls; use a model whose template renders them "
                                "(DeepSeek-V3, R1)");
  std::vector<ChatMessage> out = messages;
  ChatMessage system;
  system.role = "system";
  system.content = tools.definitions();
  system.trusted = true;  // the application's own text: its markers are the real tokens
  out.push_back(std::move(system));
  return out;
}

std::optional<ToolCallOut> ToolCallReader::read(int32_t token, std::string_view bytes) {
  switch (tokens_.marker_of(token)) {
    case ToolTokens::calls_begin:
    case ToolTokens::call_begin: text_.clear(); return std::nullopt;
    case ToolTokens::sep:
      type_ = text_;
      text_.clear();
      return std::nullopt;
    case ToolTokens::calls_end: ended_ = true; return std::nullopt;
    case ToolTokens::call_end: {
      // NAME "\n```json\n" ARGS "\n```"
      const size_t open = text_.find(kArgsOpen);
      if (type_ != "function" || open == std::string::npos || text_.size() < open + kArgsOpen.size() + kArgsClose.size() ||
          text_.compare(text_.size() - kArgsClose.size(), kArgsClose.size(), kArgsClose) != 0)
        fail(Errc::internal, "a tool call does not have the format its grammar gives it");
      ToolCallOut call;
      call.name = text_.substr(0, open);
      call.arguments = text_.substr(open + kArgsOpen.size(), text_.size() - open - kArgsOpen.size() - kArgsClose.size());
      text_.clear();
      ++calls_;
      return call;
    }
    default: text_.append(bytes); return std::nullopt;
  }
}

}  // namespace sibyl::engine
