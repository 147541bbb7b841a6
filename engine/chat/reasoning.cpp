#include "engine/chat/reasoning.h"

#include <algorithm>
#include <optional>

#include "engine/chat/channel_writer.h"
#include "engine/core/failure.h"
#include "engine/runtime/blocking.h"

namespace sibyl::engine {
namespace {

// The single token id a marker such as "</think>" encodes to; -1 when it is not one token.
int32_t marker_id(const Tokenizer& tokenizer, const std::string& text) {
  if (text.empty()) return -1;
  std::optional<int32_t> id = tokenizer.token_id(text);
  return id ? *id : -1;
}

bool has_text(std::string_view piece) {
  return piece.find_first_not_of(" \t\r\n") != std::string_view::npos;
}

void ban(TokenMask& mask, int32_t id) { mask[static_cast<size_t>(id) >> 6] &= ~(uint64_t{1} << (id & 63)); }

class ChatJob final : public Job {
 public:
  ChatJob(Session& s, std::shared_ptr<void> keep, std::shared_ptr<Request> r, const Tokenizer& tokenizer,
          const ChatFormat& format, const std::vector<ChatMessage>& messages, ChatParams params)
      : Job(s, std::move(keep), std::move(r)),
        tok_(tokenizer),
        p_(std::move(params)),
        decoder_(tokenizer),
        writer_(sink_, p_.stop_strings) {
    think_open_ = marker_id(tokenizer, format.think_open());
    think_close_ = marker_id(tokenizer, format.think_close());
    calls_after_text_ = format.text_before_tool_calls();
    const bool opens_thinking = format.prompt_opens_thinking() && think_close_ >= 0;
    // The format's own way out of the think block: what the model writes before its answer.
    close_block_ = tokenizer.encode(std::string("\n").append(format.think_close()).append("\n\n"));
    // Message content is plain text unless trusted: player text cannot forge control tokens.
    const RenderedChat rendered = format.render_marked(
        p_.tools ? with_tool_definitions(messages, *p_.tools, format) : messages, /*add_generation_prompt=*/true);
    prompt_ = tokenizer.encode(rendered.text, rendered.plain);
    if (opens_thinking && !p_.thinking) prompt_.insert(prompt_.end(), close_block_.begin(), close_block_.end());
    if (prompt_.empty()) fail(Errc::invalid_argument, "the conversation renders to an empty prompt");
    channel_ = opens_thinking && p_.thinking ? Channel::reasoning : Channel::answer;
    // Padding rows of the embedding (ids the tokenizer cannot print) are never sampled.
    printable_.resize(static_cast<size_t>(s.vocab_size()));
    for (int32_t id = 0; id < static_cast<int32_t>(printable_.size()); ++id) printable_[id] = tokenizer.is_valid(id);
    p_.sampler.allowed = &printable_;
    if (p_.tools) set_up_tools();
    if (p_.grammar) {
      // Special tokens the grammar reads: tool-call markers, or a whole output's think markers.
      std::vector<SpecialToken> markers = p_.tools ? tools_.specials() : std::vector<SpecialToken>{};
      if (p_.grammar_whole)
        for (int32_t id : {think_open_, think_close_})
          if (id >= 0) markers.push_back({id, std::string(tokenizer.token_bytes(id))});
      grammar_.emplace(p_.grammar, tokenizer, s.eos_tokens(), s.vocab_size(), std::move(markers));
    }
    // What free text may not hold: the reasoning cannot end the reply before a constrained
    // answer, nor make tool calls; a free answer starts calls only with <｜tool▁calls▁begin｜>.
    std::vector<int32_t> reasoning_bans, answer_bans;
    if (grammar_) reasoning_bans = s.eos_tokens();
    if (p_.tools)
      for (int m = 0; m < ToolTokens::count; ++m) {
        reasoning_bans.push_back(tools_.id[m]);
        if (m != ToolTokens::calls_begin || p_.tools->choice() == ToolChoice::none) answer_bans.push_back(tools_.id[m]);
      }
    if (!reasoning_bans.empty()) reasoning_mask_ = all_tokens_but(s.vocab_size(), reasoning_bans);
    if (!answer_bans.empty()) answer_mask_ = all_tokens_but(s.vocab_size(), answer_bans);
  }

  void start() override {
    // Reuse the longest prefix the session holds (a shared system prompt, earlier turns); at
    // least one token runs so that there are logits to sample from.
    Session& s = session();
    const std::vector<int32_t>& cached = s.tokens();
    size_t common = static_cast<size_t>(
        std::mismatch(prompt_.begin(), prompt_.end(), cached.begin(), cached.end()).first - prompt_.begin());
    common = std::min(common, prompt_.size() - 1);
    const int64_t rest = static_cast<int64_t>(prompt_.size() - common);
    if (rest > s.max_context() - static_cast<int64_t>(common))
      fail(Errc::context_full, "the prompt of " + std::to_string(prompt_.size()) +
                                   " tokens exceeds the session's max_context of " + std::to_string(s.max_context()));
    s.rewind_locked(static_cast<int64_t>(common));
    if (p_.reseed) s.rng().seed_with(p_.seed);
    stats.reused_tokens = static_cast<int64_t>(common);
    pending.assign(prompt_.begin() + static_cast<std::ptrdiff_t>(common), prompt_.end());
    pending_is_prompt = true;
  }

  std::optional<StopReason> advance() override {
    pending_is_prompt = false;
    if (stopping_) return stop_;
    if (request().soft_stopped()) return StopReason::callback;
    if (generated_ >= p_.max_new_tokens) return StopReason::max_tokens;
    Session& s = session();
    if (channel_ == Channel::reasoning && p_.think_budget >= 0 && stats.reasoning_tokens >= p_.think_budget) {
      // Budget spent: close the think block as the model itself would, then answer.
      if (writer_.write(channel_, decoder_.finish())) return stop_for_writer();
      channel_ = Channel::answer;
      if (grammar_ && p_.grammar_whole && !grammar_->read(tok_.decode(close_block_)))
        fail(Errc::invalid_argument,
             "think_budget ends the reasoning with \"</think>\", which the grammar does not allow there");
      if (s.position() + static_cast<int64_t>(close_block_.size()) > s.max_context())
        fail(Errc::context_full, "the session reached its max_context of " + std::to_string(s.max_context()) +
                                     " tokens while closing the think block");
      pending = close_block_;
      return std::nullopt;
    }
    if (s.position() >= s.max_context())
      fail(Errc::context_full,
           "the session reached its max_context of " + std::to_string(s.max_context()) + " tokens during the reply");
    const bool constrained = grammar_ && (p_.grammar_whole || channel_ == Channel::answer);
    choose_mask(constrained);
    const int32_t token = s.sample_logits(p_.sampler);
    follow_mask(token, constrained);
    ++generated_;
    ++stats.generated;
    if (stats.first_token_us == 0) stats.first_token_us = now_us();
    (channel_ == Channel::reasoning ? stats.reasoning_tokens : stats.answer_tokens)++;
    pending.assign(1, token);  // every token of the reply stays in context
    Event e;
    e.kind = EventKind::token;
    e.token = token;
    request().push(std::move(e));
    const auto& eos = s.eos_tokens();
    if (std::find(eos.begin(), eos.end(), token) != eos.end()) return stop_after(StopReason::eos);
    if (p_.tools && (reader_ || token == tools_.id[ToolTokens::calls_begin])) return read_tool_call(token);
    if (token == think_close_ || token == think_open_) {  // markers switch channels, never print
      if (writer_.write(channel_, decoder_.finish())) return stop_after(stop_for_writer());
      channel_ = token == think_close_ ? Channel::answer : Channel::reasoning;
      return std::nullopt;
    }
    if (tok_.is_special(token)) return std::nullopt;  // other control tokens are not text
    const std::string piece = decoder_.push(token);
    if (channel_ == Channel::answer && !calls_after_text_ && !answer_mask_.empty() && has_text(piece))
      ban(answer_mask_, tools_.id[ToolTokens::calls_begin]);  // V3: calls come first or not at all
    if (writer_.write(channel_, piece)) return stop_after(stop_for_writer());
    return std::nullopt;
  }

  void finish(StopReason stop) override {
    if (stop == StopReason::stop_string || stop == StopReason::callback || stop == StopReason::error) return;
    writer_.write(channel_, decoder_.finish());
    writer_.finish();
  }

 private:
  // Ends once the token just sampled has been appended.
  std::optional<StopReason> stop_after(StopReason stop) {
    stopping_ = true;
    stop_ = stop;
    return std::nullopt;
  }
  StopReason stop_for_writer() const {
    return writer_.hit_stop_string() ? StopReason::stop_string : StopReason::callback;
  }

  // The grammar's mask (constrained), or the bans of free text (none: every token).
  void choose_mask(bool constrained) {
    const TokenMask& free = channel_ == Channel::reasoning ? reasoning_mask_ : answer_mask_;
    p_.sampler.constraint = constrained ? &grammar_->mask() : free.empty() ? nullptr : &free;
  }

  void follow_mask(int32_t token, bool constrained) {
    if (constrained) {
      grammar_->follow(token);
      return;
    }
    if (p_.sampler.constraint && !mask_has(*p_.sampler.constraint, token))  // everything allowed was banned
      fail(Errc::invalid_argument, "no token the reply may hold here can be chosen (all of them are banned by the "
                                   "logit bias or unprintable)");
  }

  // The tool-call format of the chosen tool choice: an answer of calls only, or either an
  // answer or calls (the grammar's answer, or free text until a call starts).
  void set_up_tools() {
    tools_ = ToolTokens::of(tok_);
    const ToolChoice choice = p_.tools->choice();
    if (p_.grammar && (p_.grammar_whole || choice == ToolChoice::required))
      fail(Errc::invalid_argument, p_.grammar_whole ? "a grammar on the whole output cannot go with tools; use the "
                                                      "answer scope"
                                                    : "with tool choice \"required\" the answer is tool calls: "
                                                      "leave the grammar out");
    const Grammar& section = *p_.tools->section();
    if (choice == ToolChoice::required) {
      p_.grammar = p_.tools->answer_automaton();
    } else if (choice == ToolChoice::automatic && p_.grammar) {
      GrammarBuilder b;  // answer ::= the grammar's answer | up to 3 blanks, then calls
      const uint32_t text = b.import(p_.grammar->grammar(), "answer-");
      const uint32_t calls = b.import(*after_whitespace(section, 3), "calls-");
      const uint32_t root = b.add_rule("answer-or-calls");
      b.add_alternative(root, {{GrammarElement::rule, text}});
      b.add_alternative(root, {{GrammarElement::rule, calls}});
      p_.grammar = std::make_shared<GrammarAutomaton>(b.finish(root));
    } else if (choice == ToolChoice::automatic) {
      section_ = p_.tools->section_automaton();
    }
  }

  // A token of a section of calls: never text; a finished call is an event.
  std::optional<StopReason> read_tool_call(int32_t token) {
    if (!reader_) {  // the answer's text so far is final (held-back stop-string text included)
      if (writer_.write(channel_, decoder_.finish()) || writer_.finish()) return stop_after(stop_for_writer());
      reader_.emplace(tools_);
      if (section_) {  // a free answer started calls: the section's grammar from here on
        grammar_.emplace(section_, tok_, session().eos_tokens(), session().vocab_size(), tools_.specials());
        if (!grammar_->read(std::string(1, static_cast<char>(ToolTokens::kFirstByte + ToolTokens::calls_begin))))
          fail(Errc::internal, "the tool-call grammar does not start with <｜tool▁calls▁begin｜>");
      }
    }
    std::optional<ToolCallOut> call = reader_->read(token, tok_.token_bytes(token));
    if (!call) return std::nullopt;
    ++stats.tool_calls;
    Event e;
    e.kind = EventKind::tool_call;
    e.name = std::move(call->name);
    e.text = std::move(call->arguments);
    request().push(std::move(e));
    return std::nullopt;
  }

  const Tokenizer& tok_;
  ChatParams p_;
  std::vector<int32_t> prompt_, close_block_;
  int32_t think_open_ = -1, think_close_ = -1;
  std::vector<bool> printable_;
  std::optional<TokenConstraint> grammar_;
  TokenMask reasoning_mask_, answer_mask_;  // bans of free text (empty: none)
  bool calls_after_text_ = true;            // the format keeps calls that follow answer text
  ToolTokens tools_;
  std::shared_ptr<GrammarAutomaton> section_;  // automatic tool choice without a grammar
  std::optional<ToolCallReader> reader_;       // inside a section of calls
  Channel channel_ = Channel::answer;
  int64_t generated_ = 0;
  bool stopping_ = false;
  StopReason stop_ = StopReason::eos;
  StreamDecoder decoder_;
  TextSink sink_ = [this](Channel c, std::string_view piece) {
    if (piece.empty()) return false;
    Event e;
    e.kind = EventKind::text;
    e.channel = c;
    e.text.assign(piece);
    request().push(std::move(e));
    return false;
  };
  ChannelWriter writer_;
};

}  // namespace

std::unique_ptr<Job> make_chat_job(Session& session, std::shared_ptr<void> keep, std::shared_ptr<Request> request,
                                   const Tokenizer& tokenizer, const ChatFormat& format,
                                   const std::vector<ChatMessage>& messages, ChatParams params) {
  return std::make_unique<ChatJob>(session, std::move(keep), std::move(request), tokenizer, format, messages,
                                   std::move(params));
}

ChatResult chat_result(const RequestStats& stats, StopReason stop) {
  ChatResult r;
  r.stop = stop;
  r.prompt_tokens = stats.prompt_tokens;
  r.reused_tokens = stats.reused_tokens;
  r.reasoning_tokens = stats.reasoning_tokens;
  r.answer_tokens = stats.answer_tokens;
  r.tool_calls = stats.tool_calls;
  return r;
}

ChatResult run_chat(Session& session, const Tokenizer& tokenizer, const ChatFormat& format,
                    const std::vector<ChatMessage>& messages, const ChatParams& params, const TextSink& sink,
                    ChatResult* partial, const ToolCallSink& on_call) {
  std::shared_ptr<Model> model = session.model();
  auto request = std::make_shared<Request>(/*hold=*/true);
  auto job = make_chat_job(session, nullptr, request, tokenizer, format, messages, params);
  const Event end = run_blocking(model->scheduler(), std::move(job), request, params.cancel, [&](const Event& e) {
    if (e.kind == EventKind::tool_call) return on_call && on_call(e.name, e.text);
    return e.kind == EventKind::text && sink && sink(e.channel, e.text);
  });
  ChatResult result = chat_result(request->stats(), end.stop);
  if (partial) *partial = result;
  if (end.error) fail(static_cast<Errc>(end.error), end.message);
  return result;
}

}  // namespace sibyl::engine
