// Chat generation with a reasoning stream: renders the conversation, reuses the
// session's cached prefix, samples the reply and hands out UTF-8 pieces tagged with
// their channel — the model's thinking (inside <think>…</think>) or its answer.
#pragma once
#include <atomic>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "chat_format.h"
#include "sampler.h"
#include "session.h"
#include "tokenizer.h"

namespace sibyl::engine {

enum class Channel { reasoning = 0, answer = 1 };
enum class StopReason { eos = 0, max_tokens = 1, stop_string = 2, callback = 3, cancelled = 4 };

struct ChatParams {
  int64_t max_new_tokens = 1024;
  int64_t think_budget = -1;  // reasoning tokens before </think> is forced; < 0: unlimited
  bool thinking = true;       // false: close the think block in the prompt, answer at once
  std::vector<std::string> stop_strings;  // end the answer before the first occurrence
  SamplerParams sampler;
  bool reseed = false;
  uint64_t seed = 0;
  const std::atomic<bool>* cancel = nullptr;  // checked before every token
};

struct ChatResult {
  StopReason stop = StopReason::eos;
  int64_t prompt_tokens = 0;     // tokens appended for the prompt (after prefix reuse)
  int64_t reused_tokens = 0;     // cached tokens the prompt shared with the session
  int64_t reasoning_tokens = 0;  // generated inside the think block (forced ones excluded)
  int64_t answer_tokens = 0;     // generated after it (end-of-sequence included)
};

// Receives each piece of text; returning true stops generation.
using TextSink = std::function<bool(Channel channel, std::string_view piece)>;

ChatResult run_chat(Session& session, const Tokenizer& tokenizer, const ChatFormat& format,
                    const std::vector<ChatMessage>& messages, const ChatParams& params, const TextSink& sink);

}  // namespace sibyl::engine
