#include "NpcBrain.h"

#include "SibylSdk.h"

#include <chrono>
#include <deque>
#include <utility>

namespace sibyl_npc {
namespace {

using Clock = std::chrono::steady_clock;

struct Question {
    uint64_t id = 0;
    std::string text;
};

sibyl::ChatOptions chat_options(const BrainOptions& o) {
    sibyl::ChatOptions c;
    c.max_new_tokens = o.max_new_tokens;
    if (o.think_budget >= 0) c.think_budget = o.think_budget;
    c.thinking = o.thinking;
    c.stop_strings = o.stop_strings;
    c.sampler.temperature = o.temperature;
    if (o.temperature > 0) c.seed = o.seed;
    for (const Action& a : o.actions) c.tools.push_back({a.name, a.description, a.parameters});
    c.tool_choice = o.action_choice == BrainOptions::ActionChoice::Never    ? sibyl::ToolChoice::None
                    : o.action_choice == BrainOptions::ActionChoice::Always ? sibyl::ToolChoice::Required
                                                                            : sibyl::ToolChoice::Auto;
    return c;
}

StopReason stop_reason(sibyl_stop_reason r) {
    switch (r) {
        case SIBYL_STOP_EOS: return StopReason::Answered;
        case SIBYL_STOP_MAX_TOKENS: return StopReason::MaxTokens;
        case SIBYL_STOP_STRING: return StopReason::StopString;
        case SIBYL_STOP_CANCELLED: return StopReason::Cancelled;
        default: return StopReason::Error;
    }
}

}  // namespace

struct NpcBrain::Impl {
    // Declaration order is destruction order reversed: the request goes before its
    // session, the session before the model reference.
    std::shared_ptr<SharedModel> model;
    BrainOptions options;
    sibyl::ChatOptions chat;
    sibyl::Session session;
    std::deque<std::vector<sibyl::ChatMessage>> remembered;  // one entry per exchange
    std::deque<Question> queue;
    std::vector<Finished> dropped;  // cancelled before submission, reported by the next tick
    uint64_t next_id = 1;

    // The question being answered (request non-empty).
    sibyl::Request request;
    Question current;
    std::string reasoning, answer;
    std::vector<ActionCall> calls;
    bool cancelling = false;

    std::vector<sibyl::ChatMessage> conversation(const std::string& question) const {
        std::vector<sibyl::ChatMessage> messages;
        if (!options.persona.empty()) messages.push_back({"system", options.persona});
        for (const auto& exchange : remembered) messages.insert(messages.end(), exchange.begin(), exchange.end());
        messages.push_back({"user", question});
        return messages;
    }

    void remember(const Finished& f) {
        std::vector<sibyl::ChatMessage> exchange{{"user", f.question_text}, {"assistant", f.answer}};
        // A reply that called tools continues as the template expects: its calls, then one
        // "tool" message per call (the game's action is fire-and-forget here).
        for (const ActionCall& a : f.actions) exchange[1].tool_calls.push_back({a.name, a.arguments});
        for (size_t i = 0; i < f.actions.size(); ++i) exchange.push_back({"tool", options.action_result});
        remembered.push_back(std::move(exchange));
        while (remembered.size() > options.max_remembered) remembered.pop_front();
    }

    void submit_next(FrameOutput& out) {
        Question q = std::move(queue.front());
        queue.pop_front();
        sibyl::Result<sibyl::Request> r = session.submit_chat(conversation(q.text), chat);
        if (!r) {
            Finished f;
            f.question = q.id;
            f.question_text = std::move(q.text);
            f.reason = StopReason::Error;
            f.error = r.error().message;
            out.finished.push_back(std::move(f));
            return;
        }
        request = std::move(*r);
        current = std::move(q);
        reasoning.clear();
        answer.clear();
        calls.clear();
        cancelling = false;
    }

    // Appends a piece; returns the length of its channel's text after it (for so_far).
    size_t on_text(const sibyl::Event& e, FrameOutput& out, size_t first_delta) {
        const Channel channel = e.channel == sibyl::Channel::Reasoning ? Channel::Reasoning : Channel::Answer;
        std::string& all = channel == Channel::Reasoning ? reasoning : answer;
        all += e.text;
        // Pieces of one channel that arrive in one frame become one delta.
        if (out.text.size() > first_delta && out.text.back().channel == channel) {
            out.text.back().text += e.text;
        } else {
            TextDelta d;
            d.question = current.id;
            d.channel = channel;
            d.text = e.text;
            out.text.push_back(std::move(d));
        }
        return all.size();
    }

    void finish(const sibyl::Event& done, FrameOutput& out) {
        Finished f;
        f.question = current.id;
        f.question_text = std::move(current.text);
        f.reasoning = std::move(reasoning);
        f.answer = std::move(answer);
        f.actions = std::move(calls);
        // A cancelled question is cancelled even if its reply ended before the cancel landed.
        f.reason = cancelling ? StopReason::Cancelled : stop_reason(done.stop_reason);
        if (done.status != SIBYL_OK) {
            f.reason = StopReason::Error;
            f.error = done.error().message;
        }
        if (sibyl::Result<sibyl::RequestResult> r = request.result()) {
            f.generated_tokens = r->generated_tokens;
            f.first_token_ms = static_cast<double>(r->first_token_us) / 1000.0;
            f.total_ms = static_cast<double>(r->total_us) / 1000.0;
        }
        request = sibyl::Request();
        current = Question();
        reasoning.clear();
        answer.clear();
        calls.clear();
        cancelling = false;
        if (options.remember && (f.reason == StopReason::Answered || f.reason == StopReason::StopString)) remember(f);
        out.finished.push_back(std::move(f));
    }

    void poll(Clock::time_point start, uint64_t budget_us, FrameOutput& out) {
        const size_t first_delta = out.text.size();
        std::vector<size_t> ends;  // per delta of this tick: its channel's length after it
        const auto budget = std::chrono::microseconds(budget_us);
        sibyl::Event done;
        for (;;) {
            sibyl::Result<sibyl::Event> e = request.poll();
            if (!e) {  // only a broken handle fails here: end the question with the reason
                done.type = sibyl::EventType::Done;
                done.stop_reason = SIBYL_STOP_ERROR;
                done.status = e.error().code;
                done.text = e.error().message;
                break;
            }
            if (!*e) break;  // nothing queued now: the model is still working
            ++out.events;
            if (e->is_done()) {
                done = std::move(*e);
                break;
            }
            if (!cancelling) {  // nothing reaches the game after cancel_all()
                if (e->type == sibyl::EventType::Text) {
                    const size_t end = on_text(*e, out, first_delta);
                    ends.resize(out.text.size() - first_delta);
                    ends.back() = end;
                } else if (e->type == sibyl::EventType::ToolCall) {
                    ActionCall a{current.id, e->name, e->text};
                    calls.push_back(a);
                    out.actions.push_back(std::move(a));
                }
            }
            if (Clock::now() - start >= budget) {
                out.budget_hit = true;
                break;
            }
        }
        for (size_t i = first_delta; i < out.text.size(); ++i) {
            TextDelta& d = out.text[i];
            d.so_far.assign(d.channel == Channel::Reasoning ? reasoning : answer, 0, ends[i - first_delta]);
        }
        if (done.is_done()) finish(done, out);
    }
};

NpcBrain::NpcBrain(std::unique_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}

NpcBrain::~NpcBrain() = default;  // Request's destructor cancels a running reply

std::unique_ptr<NpcBrain> NpcBrain::create(std::shared_ptr<SharedModel> model, BrainOptions options,
                                           std::string* error) {
    if (!model) {
        if (error) *error = "no model";
        return nullptr;
    }
    sibyl_session* session = nullptr;
    const sibyl_status st = sibyl_session_create(model->handle(), nullptr, &session);
    if (st != SIBYL_OK) {
        if (error) *error = sibyl::Error::from_status(st).message;
        return nullptr;
    }
    auto impl = std::make_unique<Impl>();
    impl->model = std::move(model);
    impl->chat = chat_options(options);
    impl->options = std::move(options);
    impl->session = sibyl::Session(session);
    return std::unique_ptr<NpcBrain>(new NpcBrain(std::move(impl)));
}

uint64_t NpcBrain::ask(std::string question, std::string* error) {
    if (question.empty()) {
        if (error) *error = "empty question";
        return 0;
    }
    if (impl_->queue.size() >= impl_->options.max_waiting) {
        if (error) *error = "too many questions waiting (" + std::to_string(impl_->queue.size()) + ")";
        return 0;
    }
    const uint64_t id = impl_->next_id++;
    impl_->queue.push_back({id, std::move(question)});
    return id;
}

void NpcBrain::tick(uint64_t budget_us, FrameOutput& out) {
    const Clock::time_point start = Clock::now();
    for (Finished& f : impl_->dropped) out.finished.push_back(std::move(f));
    impl_->dropped.clear();
    if (impl_->request) impl_->poll(start, budget_us, out);
    if (!impl_->request && !impl_->queue.empty()) impl_->submit_next(out);
}

void NpcBrain::cancel_all() {
    for (Question& q : impl_->queue) {
        Finished f;
        f.question = q.id;
        f.question_text = std::move(q.text);
        f.reason = StopReason::Cancelled;
        impl_->dropped.push_back(std::move(f));
    }
    impl_->queue.clear();
    if (impl_->request && !impl_->cancelling) {
        // The reply ends before the model's next step; its Done event (read by tick) frees the
        // session for the next question. A failed cancel (a broken handle) ends it there too.
        (void)impl_->request.cancel();
        impl_->cancelling = true;
    }
}

void NpcBrain::forget() { impl_->remembered.clear(); }

bool NpcBrain::busy() const noexcept {
    return static_cast<bool>(impl_->request) || !impl_->queue.empty() || !impl_->dropped.empty();
}

uint64_t NpcBrain::current_question() const noexcept { return impl_->request ? impl_->current.id : 0; }

size_t NpcBrain::waiting() const noexcept { return impl_->queue.size(); }

const std::shared_ptr<SharedModel>& NpcBrain::model() const noexcept { return impl_->model; }

}  // namespace sibyl_npc
