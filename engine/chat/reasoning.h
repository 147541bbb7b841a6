// Chat generation with a reasoning stream: renders the conversation, reuses the
// session's cached prefix, samples the reply and hands out UTF-8 pieces tagged with
// their channel — the model's thinking (inside <think>…</think>) or its answer.
// A chat is a job of the model's scheduler (batched with every other request);
// run_chat is its blocking form.
#pragma once
#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "engine/chat/chat_format.h"
#include "engine/grammar/token_constraint.h"
#include "engine/runtime/job.h"
#include "engine/model/sampler.h"
#include "engine/model/session.h"
#include "engine/text/tokenizer.h"
#include "engine/chat/tool_calls.h"

namespace sibyl::engine {

struct ChatParams {
  int64_t max_new_tokens = 1024;
  int64_t think_budget = -1;              // reasoning tokens before </think> is forced; < 0: unlimited
  bool thinking = true;                   // false: close the think block in the prompt, answer at once
  std::vector<std::string> stop_strings;  // end the answer before the first occurrence
  SamplerParams sampler;
  bool reseed = false;
  uint64_t seed = 0;
  const std::atomic<bool>* cancel = nullptr;  // run_chat: checked before every step
  // Constrains the answer to the grammar: the reasoning stays free (but cannot end the reply),
  // the answer's tokens are masked to what the grammar allows, and end-of-sequence comes only
  // where the grammar accepts. grammar_whole: every generated token, the think markers read
  // as their text ("</think>").
  std::shared_ptr<GrammarAutomaton> grammar;
  bool grammar_whole = false;
  // Tools the model may call: their definitions join the system prompt; a call's section is
  // constrained to the call format and each tool's schema and reported as tool_call events
  // (never as text). The reasoning cannot make calls. With ToolChoice::required the answer is
  // calls only (no grammar then); with automatic and a grammar, the answer is either.
  // Answer-scope grammars only.
  std::shared_ptr<const ToolSet> tools;
};

struct ChatResult {
  StopReason stop = StopReason::eos;
  int64_t prompt_tokens = 0;     // tokens appended for the prompt (after prefix reuse)
  int64_t reused_tokens = 0;     // cached tokens the prompt shared with the session
  int64_t reasoning_tokens = 0;  // generated inside the think block (forced ones excluded)
  int64_t answer_tokens = 0;     // generated after it (end-of-sequence included)
  int64_t tool_calls = 0;        // calls the reply made
};

// Receives each piece of text; returning true stops generation.
using TextSink = std::function<bool(Channel channel, std::string_view piece)>;
// Receives each tool call (name, arguments JSON); returning true stops generation.
using ToolCallSink = std::function<bool(std::string_view name, std::string_view arguments)>;

// The chat as a job; the tokenizer and format belong to the session's model.
std::unique_ptr<Job> make_chat_job(Session& session, std::shared_ptr<void> keep, std::shared_ptr<Request> request,
                                   const Tokenizer& tokenizer, const ChatFormat& format,
                                   const std::vector<ChatMessage>& messages, ChatParams params);

ChatResult chat_result(const RequestStats& stats, StopReason stop);

// Blocking: submits the chat and delivers its text to `sink` on this thread. A failure
// throws after `partial` (when given) has been filled with what the chat did.
ChatResult run_chat(Session& session, const Tokenizer& tokenizer, const ChatFormat& format,
                    const std::vector<ChatMessage>& messages, const ChatParams& params, const TextSink& sink,
                    ChatResult* partial = nullptr, const ToolCallSink& on_call = {});

}  // namespace sibyl::engine
