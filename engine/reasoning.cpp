#include "reasoning.h"

#include <algorithm>

#include "channel_writer.h"
#include "failure.h"

namespace sibyl::engine {
namespace {

// The single token id a marker such as "</think>" encodes to; -1 when it is not one token.
int32_t marker_id(const Tokenizer& tokenizer, const std::string& text) {
  if (text.empty()) return -1;
  std::optional<int32_t> id = tokenizer.token_id(text);
  return id ? *id : -1;
}

}  // namespace

ChatResult run_chat(Session& session, const Tokenizer& tokenizer, const ChatFormat& format,
                    const std::vector<ChatMessage>& messages, const ChatParams& params, const TextSink& sink) {
  const int32_t think_open = marker_id(tokenizer, format.think_open());
  const int32_t think_close = marker_id(tokenizer, format.think_close());
  const bool opens_thinking = format.prompt_opens_thinking() && think_close >= 0;
  // The format's own way out of the think block: what the model writes before its answer.
  const std::vector<int32_t> close_block = tokenizer.encode(std::string("\n").append(format.think_close()).append("\n\n"));

  std::vector<int32_t> prompt = tokenizer.encode(format.render(messages, /*add_generation_prompt=*/true));
  if (opens_thinking && !params.thinking) prompt.insert(prompt.end(), close_block.begin(), close_block.end());
  if (prompt.empty()) fail(Errc::invalid_argument, "the conversation renders to an empty prompt");

  // Reuse the longest cached prefix (a shared system prompt, earlier turns); at least one
  // token is run so that there are logits to sample from.
  const std::vector<int32_t>& cached = session.tokens();
  size_t common = static_cast<size_t>(
      std::mismatch(prompt.begin(), prompt.end(), cached.begin(), cached.end()).first - prompt.begin());
  common = std::min(common, prompt.size() - 1);
  session.rewind(static_cast<int64_t>(common));
  if (params.reseed) session.set_seed(params.seed);
  session.append(prompt.data() + common, static_cast<int64_t>(prompt.size() - common), LogitsMode::last);

  // Padding rows of the embedding (ids the tokenizer cannot print) are never sampled.
  std::vector<bool> printable(static_cast<size_t>(session.vocab_size()));
  for (int32_t id = 0; id < static_cast<int32_t>(printable.size()); ++id) printable[id] = tokenizer.is_valid(id);
  SamplerParams sampler = params.sampler;
  sampler.allowed = &printable;

  ChatResult result;
  result.reused_tokens = static_cast<int64_t>(common);
  result.prompt_tokens = static_cast<int64_t>(prompt.size() - common);
  Channel channel = opens_thinking && params.thinking ? Channel::reasoning : Channel::answer;
  const std::vector<int32_t>& eos = session.eos_tokens();
  StreamDecoder decoder(tokenizer);
  ChannelWriter writer(sink, params.stop_strings);
  auto stop_for_writer = [&] { return writer.hit_stop_string() ? StopReason::stop_string : StopReason::callback; };

  for (int64_t generated = 0;; ++generated) {
    if (params.cancel && params.cancel->load(std::memory_order_relaxed)) {
      result.stop = StopReason::cancelled;
      break;
    }
    if (generated >= params.max_new_tokens) {
      result.stop = StopReason::max_tokens;
      break;
    }
    if (channel == Channel::reasoning && params.think_budget >= 0 && result.reasoning_tokens >= params.think_budget) {
      // Budget spent: close the think block as the model itself would, then answer.
      if (writer.write(channel, decoder.finish())) {
        result.stop = stop_for_writer();
        break;
      }
      session.append(close_block.data(), static_cast<int64_t>(close_block.size()), LogitsMode::last);
      channel = Channel::answer;
    }
    const int32_t token = session.sample(sampler);
    session.append(&token, 1, LogitsMode::last);  // every token of the reply stays in context
    (channel == Channel::reasoning ? result.reasoning_tokens : result.answer_tokens)++;
    if (std::find(eos.begin(), eos.end(), token) != eos.end()) {
      result.stop = StopReason::eos;
      break;
    }
    if (token == think_close || token == think_open) {  // markers switch channels, never print
      if (writer.write(channel, decoder.finish())) {
        result.stop = stop_for_writer();
        break;
      }
      channel = token == think_close ? Channel::answer : Channel::reasoning;
      continue;
    }
    if (tokenizer.is_special(token)) continue;  // other control tokens are not text
    if (writer.write(channel, decoder.push(token))) {
      result.stop = stop_for_writer();
      break;
    }
  }
  if (result.stop != StopReason::stop_string && result.stop != StopReason::callback) {
    if (writer.write(channel, decoder.finish()) || writer.finish()) result.stop = stop_for_writer();
  }
  return result;
}

}  // namespace sibyl::engine
