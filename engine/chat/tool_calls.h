// Tool calls in the DeepSeek format: the tool definitions written into the system prompt, the
// grammar a reply's calls follow (each tool's arguments constrained to its JSON Schema), and
// the calls read back from the generated tokens.
//
//   <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\n```json\nARGS\n```<｜tool▁call▁end｜>
//   (\n<｜tool▁call▁begin｜>…<｜tool▁call▁end｜>)* <｜tool▁calls▁end｜>
//
// In the grammar the five markers are the bytes F8-FC, which no UTF-8 text holds: only the
// marker tokens themselves can be read there (Tokenizer::text_trie leaves such bytes out), so
// a call cannot be spelled with ordinary tokens that merely look like the markers.
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/chat/chat_format.h"
#include "engine/grammar/grammar.h"
#include "engine/grammar/matcher.h"
#include "engine/grammar/token_constraint.h"
#include "engine/text/tokenizer.h"

namespace sibyl::engine {

struct ToolSpec {
  std::string name;         // 1-64 of A-Z a-z 0-9 _ . -, unique within a chat
  std::string description;  // may be empty
  std::string parameters;   // JSON Schema of the arguments; empty: any JSON object
};

enum class ToolChoice {
  automatic,  // the model answers, or calls tools
  none,       // the model knows the tools but may not call them
  required,   // the reply is one or more calls (of `forced` only, once, when it is named)
};

// The call format's special tokens.
struct ToolTokens {
  enum Marker : uint8_t { calls_begin, calls_end, call_begin, call_end, sep, count };
  static constexpr uint8_t kFirstByte = 0xF8;  // marker m is the byte kFirstByte + m in grammars

  int32_t id[count] = {-1, -1, -1, -1, -1};

  // Errc::unsupported naming the first marker the vocabulary lacks.
  static ToolTokens of(const Tokenizer& tokenizer);
  std::vector<SpecialToken> specials() const;  // each marker token reading its byte
  int marker_of(int32_t token) const;          // the Marker, or -1
};

class ToolSet {
 public:
  // Errc::invalid_argument naming the tool: no tools, a bad or repeated name, an invalid or
  // unsupported schema, a forced name that is not a tool (or given with another choice).
  ToolSet(std::vector<ToolSpec> tools, ToolChoice choice, std::string forced = {});

  const std::vector<ToolSpec>& tools() const { return tools_; }
  ToolChoice choice() const { return choice_; }
  const std::string& forced() const { return forced_; }

  // The definitions and the call format, as the system message a chat adds (the DeepSeek
  // templates render no tool definitions of their own); see docs/STRUCTURED_OUTPUT.md.
  std::string definitions() const;
  // The section of calls, from <｜tool▁calls▁begin｜> to <｜tool▁calls▁end｜>.
  const std::shared_ptr<const Grammar>& section() const { return section_; }
  // Its automata, shared by every chat with this set (masks computed once): the section, and
  // (choice required only) the section after up to 3 blanks, the answer.
  const std::shared_ptr<GrammarAutomaton>& section_automaton() const { return section_automaton_; }
  const std::shared_ptr<GrammarAutomaton>& answer_automaton() const { return answer_automaton_; }

 private:
  std::vector<ToolSpec> tools_;
  ToolChoice choice_;
  std::string forced_;
  std::shared_ptr<const Grammar> section_;
  std::shared_ptr<GrammarAutomaton> section_automaton_, answer_automaton_;
};

// Tool sets by content: chats that offer the same tools (an NPC's every turn) share one
// compiled set and its masks. Keeps the most recently used kKept. Thread-safe.
class ToolSetCache {
 public:
  static constexpr size_t kKept = 8;  // each set's masks may grow to 64 MB
  std::shared_ptr<const ToolSet> get(std::vector<ToolSpec> tools, ToolChoice choice, std::string forced);

 private:
  std::mutex mutex_;
  std::vector<std::pair<std::string, std::shared_ptr<const ToolSet>>> kept_;  // most recent last
};

// The conversation with the tool definitions appended as a trusted system message (the
// templates join every system message into the system prompt). Errc::unsupported for a
// format without tool calls.
std::vector<ChatMessage> with_tool_definitions(const std::vector<ChatMessage>& messages, const ToolSet& tools,
                                               const ChatFormat& format);

struct ToolCallOut {
  std::string name;
  std::string arguments;  // the JSON text exactly as generated
};

// Reads a section of calls as its tokens come (the grammar has checked them).
class ToolCallReader {
 public:
  explicit ToolCallReader(const ToolTokens& tokens) : tokens_(tokens) {}
  // `bytes`: the token's text (unused for markers). A call, when `token` completes one.
  std::optional<ToolCallOut> read(int32_t token, std::string_view bytes);
  bool ended() const { return ended_; }
  int calls() const { return calls_; }

 private:
  ToolTokens tokens_;
  std::string text_;  // since the last marker
  std::string type_;
  bool ended_ = false;
  int calls_ = 0;
};

}  // namespace sibyl::engine
