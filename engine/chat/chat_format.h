// Conversation → prompt text, exactly as a model's own Jinja chat template renders it
// (Hugging Face apply_chat_template). Sibyl does not interpret Jinja: it recognises the
// templates it knows and renders them natively; any other template is Errc::unsupported.
#pragma once
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/text/text_range.h"

namespace sibyl::engine {

struct ChatToolCall {
  std::string type = "function";
  std::string name;
  std::string arguments;  // JSON text, written into the prompt as is
};

// roles: system, user, assistant, tool. An assistant message with tool calls and empty
// content stands for the OpenAI-style `content: null` that the templates test for.
struct ChatMessage {
  std::string role;
  std::string content;
  std::vector<ChatToolCall> tool_calls;
  // false (default): the content (and tool-call names and arguments) is plain text — strings
  // that spell the model's control tokens ("<｜User｜>", "</think>") are tokenized as text.
  // true: the application vouches for it; control-token strings in it become those tokens.
  bool trusted = false;
};

// A rendered prompt and the ranges in it that came from untrusted message content.
struct RenderedChat {
  std::string text;
  std::vector<TextRange> plain;
};

class ChatFormat {
 public:
  enum class Kind { deepseek_v3, deepseek_r1, tiny_reasoner };

  // From tokenizer_config.json text: chat_template (a string, or a list of {name, template}
  // of which "default" is used), bos_token/eos_token (a string or {"content": ...}).
  // Invalid JSON or wrongly typed keys: Errc::format. No or unknown template: Errc::unsupported.
  static ChatFormat from_tokenizer_config(const std::string& json_text, const std::string& source);
  static ChatFormat load(const std::string& tokenizer_config_path);

  // The prompt text; an unknown role is Errc::invalid_argument, a message the template
  // cannot express (tool messages for a template without tools) Errc::unsupported.
  std::string render(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const;
  // The same text, with the ranges of untrusted content (Tokenizer::encode keeps them text).
  RenderedChat render_marked(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const;

  Kind kind() const { return kind_; }
  std::string_view name() const;  // "deepseek-v3", "deepseek-r1", "tiny-reasoner"
  // True when the generation prompt ends with "<think>\n" (R1 style): the model's first
  // output is reasoning, closed by think_close().
  bool prompt_opens_thinking() const;
  // Whether the template renders tool calls and tool outputs (the DeepSeek ones do).
  bool supports_tools() const { return kind_ != Kind::tiny_reasoner; }
  // Whether an assistant message may hold text and tool calls (R1); DeepSeek-V3's template
  // drops the calls of a message with content, so there a reply's calls come first or not at all.
  bool text_before_tool_calls() const { return kind_ == Kind::deepseek_r1; }
  std::string think_open() const { return "<think>"; }
  std::string think_close() const { return "</think>"; }
  std::string bos_token() const { return bos_; }
  std::string eos_token() const { return eos_; }

  // The canonical text of a known template (as published with the model): for tests and for
  // writing a tokenizer_config.json. Empty for an unknown name.
  static std::string_view known_template(std::string_view name);

 private:
  ChatFormat(Kind kind, std::string bos, std::string eos)
      : kind_(kind), bos_(std::move(bos)), eos_(std::move(eos)) {}

  Kind kind_;
  std::string bos_;
  std::string eos_;
};

}  // namespace sibyl::engine
