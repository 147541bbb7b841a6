// One NPC's conversation with the shared model, driven once per frame from the game thread:
// a queue of questions, each submitted without blocking and polled under a time cap, its
// text accumulated per channel, tool calls reported as game actions, cancellation. The
// Unreal component is a thin adapter over this; only standard C++17 here.
#pragma once

#include "SharedModel.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace sibyl_npc {

enum class Channel { Reasoning, Answer };

/** Why a question's reply ended. */
enum class StopReason {
    Answered,    // the model finished its reply
    MaxTokens,   // BrainOptions::max_new_tokens ran out (the answer may be cut short)
    StopString,  // the answer reached one of BrainOptions::stop_strings
    Cancelled,   // cancel_all() (also questions dropped from the queue)
    Error,       // Finished::error says why
};

/** A tool the model may call; its calls reach the game as ActionCall (see BrainOptions::actions). */
struct Action {
    std::string name;         // 1 to 64 of A-Z a-z 0-9 _ . -
    std::string description;  // what it does, for the model
    std::string parameters;   // JSON Schema of its arguments; empty: any JSON object
};

struct BrainOptions {
    std::string persona;               // system prompt; empty: none
    bool remember = true;              // later questions see earlier questions and answers
    size_t max_remembered = 8;         // exchanges kept; the oldest are dropped beyond this
    size_t max_waiting = 4;            // questions queued behind the one being answered
    uint32_t max_new_tokens = 400;     // reasoning + answer tokens per reply
    int32_t think_budget = -1;         // reasoning tokens before the answer is forced; -1: no limit
    bool thinking = true;              // false: skip the reasoning (templates that allow it)
    std::vector<std::string> stop_strings;
    float temperature = 0.0f;          // 0: greedy (the same question gets the same answer)
    uint64_t seed = 0;                 // sampling seed when temperature > 0
    // Tools as game actions. Needs a model whose chat template has tool calls (the default
    // tiny-reasoner has none: its questions then finish with StopReason::Error).
    std::vector<Action> actions;
    enum class ActionChoice { Auto, Never, Always } action_choice = ActionChoice::Auto;
    std::string action_result = "done";  // the tool output remembered for each call made
};

/** New text of one question on one channel, received this frame. */
struct TextDelta {
    uint64_t question = 0;
    Channel channel = Channel::Answer;
    std::string text;     // what arrived this frame (pieces merged)
    std::string so_far;   // the channel's whole text for this question up to and including it
};

/** A tool call of the model: the game performs the action. */
struct ActionCall {
    uint64_t question = 0;
    std::string name;
    std::string arguments;  // JSON, valid against the action's parameters
};

/** A question's reply has ended. */
struct Finished {
    uint64_t question = 0;
    std::string question_text;
    std::string reasoning;
    std::string answer;
    std::vector<ActionCall> actions;
    StopReason reason = StopReason::Answered;
    std::string error;             // StopReason::Error: the library's message
    uint32_t generated_tokens = 0;
    double first_token_ms = 0;     // submit to first token
    double total_ms = 0;           // submit to end
};

/** What one tick() produced, in order of arrival. */
struct FrameOutput {
    std::vector<TextDelta> text;
    std::vector<ActionCall> actions;
    std::vector<Finished> finished;
    uint32_t events = 0;        // library events read this tick
    bool budget_hit = false;    // polling stopped at the time cap with events possibly left

    bool empty() const noexcept { return text.empty() && actions.empty() && finished.empty(); }
    void clear() {
        text.clear();
        actions.clear();
        finished.clear();
        events = 0;
        budget_hit = false;
    }
};

class NpcBrain {
public:
    /** A brain with its own session on `model`; null on failure (reason in `*error`). */
    static std::unique_ptr<NpcBrain> create(std::shared_ptr<SharedModel> model, BrainOptions options,
                                            std::string* error = nullptr);
    /** Cancels the question being answered and drops the queue; nothing is reported. */
    ~NpcBrain();
    NpcBrain(const NpcBrain&) = delete;
    NpcBrain& operator=(const NpcBrain&) = delete;

    /**
     * Queue a question (player text: control-token text in it stays plain text). Returns its
     * id (ids start at 1), or 0 when refused — empty, or max_waiting already queued — with
     * the reason in `*error`. Nothing is submitted before the next tick().
     */
    uint64_t ask(std::string question, std::string* error = nullptr);

    /**
     * Once per frame on the game thread. Reads the events of the question being answered
     * until none is queued or `budget_us` microseconds have passed (at least one read), then,
     * when idle, submits the next queued question (never waits for the model). Results are
     * appended to `out`.
     */
    void tick(uint64_t budget_us, FrameOutput& out);

    /**
     * Cancel the question being answered and drop the queued ones. Each is reported as
     * Finished with StopReason::Cancelled by the next ticks; no text arrives after this.
     */
    void cancel_all();

    /** Forget the remembered exchanges (the persona stays). */
    void forget();

    /** A question is being answered, queued, or waiting to be reported. */
    bool busy() const noexcept;
    /** The id of the question being answered, 0 when none. */
    uint64_t current_question() const noexcept;
    size_t waiting() const noexcept;
    const std::shared_ptr<SharedModel>& model() const noexcept;

private:
    struct Impl;
    explicit NpcBrain(std::unique_ptr<Impl> impl) noexcept;
    std::unique_ptr<Impl> impl_;
};

}  // namespace sibyl_npc
