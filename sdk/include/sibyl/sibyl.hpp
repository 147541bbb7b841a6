// sibyl.hpp — the header-only C++ SDK of Sibyl (C++17), built only on the C ABI in sibyl.h.
//
//     #include <sibyl/sibyl.hpp>
//
//     sibyl::Result<sibyl::Model> model = sibyl::Model::load("tests/data/tiny-v3");
//     if (!model) { std::puts(model.error().message.c_str()); return 1; }
//     sibyl::Result<sibyl::Session> session = model->create_session();
//     sibyl::GenerateOptions gen;
//     gen.max_new_tokens = 16;
//     auto tokens = session->generate({0, 17, 42}, gen, [](int32_t token) {
//         std::printf("%d ", token);
//         return false;                       // true would stop generation
//     });
//
// Non-blocking (since 0.3): Session::submit_chat / submit_generate return a
// sibyl::Request at once; read its events (each owns its text) once per frame:
//
//     sibyl::Result<sibyl::Request> request = session->submit_generate({0, 17, 42}, gen);
//     for (;;) {                                  // e.g. once per frame
//         sibyl::Result<sibyl::Event> event = request->poll();
//         if (!event || !*event) break;           // an error, or nothing queued now
//         if (event->type == sibyl::EventType::Token) std::printf("%d ", event->token);
//     }
//
// Conventions:
//  - Move-only RAII classes own the C handles: Model (sibyl_model), Session
//    (sibyl_session) and Request (sibyl_request). A Session does not keep its Model
//    alive; after the Model is destroyed its calls fail with
//    SIBYL_ERR_MODEL_DESTROYED (see docs/C_API.md). A Request does not keep its
//    Session alive either; destroying a running Request cancels it.
//  - Every call has a non-throwing form: it returns sibyl::Error (code + message;
//    ok() on success) or sibyl::Result<T> (a T or an Error). This works with
//    exceptions disabled (-fno-exceptions).
//  - When exceptions are enabled, sibyl::check() turns an Error into a thrown
//    sibyl::Exception and a Result<T> into its value, and Result<T>::value()
//    throws on an error. Define SIBYL_HPP_EXCEPTIONS to 0 or 1 to override the
//    detection.
//  - Thread-safety is that of the C ABI: a Model may be used from any number of
//    threads at once (create_session, info, step are const); a Session by one
//    thread at a time, and not at all while a Request submitted on it runs (calls
//    then fail with SIBYL_ERR_BUSY); a Request by one thread at a time (cancel()
//    from any thread).
#ifndef SIBYL_SIBYL_HPP
#define SIBYL_SIBYL_HPP

#include <sibyl/sibyl.h>

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#ifndef SIBYL_HPP_EXCEPTIONS
#  if defined(__cpp_exceptions) || defined(__EXCEPTIONS) || defined(_CPPUNWIND)
#    define SIBYL_HPP_EXCEPTIONS 1
#  else
#    define SIBYL_HPP_EXCEPTIONS 0
#  endif
#endif

#if SIBYL_HPP_EXCEPTIONS
#  include <exception>
#  include <stdexcept>
#endif

namespace sibyl {
// Everything is declared in an inline namespace: users write sibyl::Model, but the
// linker sees sibyl::sdk_v0::Model, so the SDK's inline functions can never be
// confused with other C++ symbols named sibyl::... (e.g. inside libsibyl.a).
inline namespace sdk_v0 {

using Status = sibyl_status;
using LogLevel = sibyl_log_level;

// ------------------------------------------------------------------ versions

/** The ABI version of the library loaded at run time (major*10000 + minor*100 + patch). */
inline uint32_t abi_version() noexcept { return sibyl_abi_version(); }

/** The library's version string, e.g. "0.1.0". */
inline std::string_view version() noexcept { return sibyl_version_string(); }

/**
 * True when the library loaded at run time can serve a program compiled against
 * this header: same major version, and at least the minor version compiled against.
 */
inline bool abi_compatible() noexcept {
    const uint32_t v = sibyl_abi_version();
    return v / 10000 == SIBYL_ABI_VERSION_MAJOR && v >= static_cast<uint32_t>(SIBYL_ABI_VERSION);
}

/** Short English name of a status code, e.g. "invalid token". */
inline std::string_view status_string(Status status) noexcept { return sibyl_status_string(status); }

// ------------------------------------------------------------------ errors

/**
 * The outcome of a call: a status code and, on failure, the library's message
 * (copied from sibyl_last_error_message() on the calling thread). code ==
 * SIBYL_OK (and an empty message) means success.
 */
struct [[nodiscard]] Error {
    Status code = SIBYL_OK;
    std::string message;

    /** True on success. */
    bool ok() const noexcept { return code == SIBYL_OK; }

    /** Short name of the code, e.g. "invalid token". */
    std::string_view status_name() const noexcept { return status_string(code); }

    /**
     * Capture the result of a C call made on this thread: SIBYL_OK gives a
     * success; a failure code gives that code with the thread's last error
     * message (or the code's name if the library left no message).
     */
    static Error from_status(Status status) {
        Error e;
        e.code = status;
        if (status != SIBYL_OK) {
            e.message = sibyl_last_error_message();
            if (e.message.empty()) e.message = sibyl_status_string(status);
        }
        return e;
    }
};

#if SIBYL_HPP_EXCEPTIONS
/** What the throwing conveniences throw: an Error as a std::runtime_error. */
class Exception : public std::runtime_error {
public:
    explicit Exception(Error error)
        : std::runtime_error(error.message.empty() ? std::string(error.status_name()) : error.message),
          error_(std::move(error)) {}
    const Error& error() const noexcept { return error_; }
    Status code() const noexcept { return error_.code; }

private:
    Error error_;
};
#endif

namespace detail {
/** Value access on a failed Result: throw when exceptions are on, else abort (a caller bug). */
[[noreturn]] inline void bad_result_access(const Error& error) {
#if SIBYL_HPP_EXCEPTIONS
    throw Exception(error);
#else
    (void)error;
    std::abort();
#endif
}
}  // namespace detail

/**
 * A value of type T or an Error. Test it with ok() (or `if (result)`), then
 * read value() (or *result, result->...), or error() when it failed.
 * value() on a failed Result throws sibyl::Exception, or calls std::abort()
 * when exceptions are disabled: check ok() first.
 */
template <class T>
class [[nodiscard]] Result {
public:
    /** A success holding `value`. */
    Result(T value) : value_(std::move(value)) {}
    /** A failure; an Error whose code is SIBYL_OK is stored as SIBYL_ERR_INTERNAL. */
    Result(Error error) : error_(std::move(error)) {
        if (error_.code == SIBYL_OK) {
            error_.code = SIBYL_ERR_INTERNAL;
            if (error_.message.empty()) error_.message = "sibyl.hpp: Result built from a success Error";
        }
    }

    bool ok() const noexcept { return value_.has_value(); }
    explicit operator bool() const noexcept { return ok(); }

    T& value() & {
        if (!ok()) detail::bad_result_access(error_);
        return *value_;
    }
    const T& value() const& {
        if (!ok()) detail::bad_result_access(error_);
        return *value_;
    }
    T&& value() && {
        if (!ok()) detail::bad_result_access(error_);
        return std::move(*value_);
    }

    /** The value, or `fallback` on failure. */
    template <class U>
    T value_or(U&& fallback) const& {
        return ok() ? *value_ : static_cast<T>(std::forward<U>(fallback));
    }

    /** Unchecked access: precondition ok(). */
    T& operator*() & noexcept { return *value_; }
    const T& operator*() const& noexcept { return *value_; }
    T* operator->() noexcept { return &*value_; }
    const T* operator->() const noexcept { return &*value_; }

    /** The error; code SIBYL_OK when the Result holds a value. */
    const Error& error() const noexcept { return error_; }

private:
    std::optional<T> value_;
    Error error_;
};

#if SIBYL_HPP_EXCEPTIONS
/** Throw sibyl::Exception if `error` is a failure. */
inline void check(const Error& error) {
    if (!error.ok()) throw Exception(error);
}

/** The value of `result`, or throw sibyl::Exception with its error. */
template <class T>
T check(Result<T>&& result) {
    return std::move(result).value();
}
#endif

// ------------------------------------------------------------------ logging

/** Receives one complete log message (no trailing newline). May run on any thread. */
using LogCallback = std::function<void(LogLevel level, std::string_view message)>;

namespace detail {
struct LogState {
    std::mutex mutex;
    std::shared_ptr<const LogCallback> callback;
};

// Never destroyed: the library may log from its threads while the program exits.
inline LogState& log_state() {
    static LogState* state = new LogState;
    return *state;
}

inline void log_trampoline(sibyl_log_level level, const char* message, void* /*user_data*/) {
    std::shared_ptr<const LogCallback> callback;
    {
        LogState& state = log_state();
        std::lock_guard<std::mutex> lock(state.mutex);
        callback = state.callback;
    }
    if (!callback || !*callback) return;
#if SIBYL_HPP_EXCEPTIONS
    try {
        (*callback)(level, message ? std::string_view(message) : std::string_view());
    } catch (...) {
        // An exception must not cross the C library; a failing logger drops the message.
    }
#else
    (*callback)(level, message ? std::string_view(message) : std::string_view());
#endif
}
}  // namespace detail

/**
 * Route the library's log messages of `min_level` and above to `callback`; an
 * empty callback restores the default (stderr). The callback is stored in a
 * process-wide static and may be called concurrently from several threads; it
 * must not call set_log_callback itself. Replacing it is safe while the library
 * is logging: a call already running keeps its copy of the old callback alive
 * until it returns.
 */
inline void set_log_callback(LogCallback callback, LogLevel min_level = SIBYL_LOG_WARN) {
    detail::LogState& state = detail::log_state();
    if (!callback) {
        sibyl_set_log_callback(nullptr, nullptr, min_level);
        std::lock_guard<std::mutex> lock(state.mutex);
        state.callback.reset();
        return;
    }
    auto shared = std::make_shared<const LogCallback>(std::move(callback));
    {
        std::lock_guard<std::mutex> lock(state.mutex);
        state.callback = std::move(shared);
    }
    sibyl_set_log_callback(&detail::log_trampoline, nullptr, min_level);
}

// ------------------------------------------------------------------ options

/** Which compute backend a model runs on. Values equal sibyl_backend_kind. */
enum class Backend : int {
    Auto = SIBYL_BACKEND_AUTO,
    Cpu = SIBYL_BACKEND_CPU,
    Cuda = SIBYL_BACKEND_CUDA,
    Vulkan = SIBYL_BACKEND_VULKAN,
};

/** How matmuls compute. Values equal sibyl_precision. */
enum class Precision : int {
    Fast = SIBYL_PRECISION_FAST,    // on the stored blocks, activations rounded (default)
    Exact = SIBYL_PRECISION_EXACT,  // float32 on exactly decoded weights (the references)
};

/** Which logits an append keeps. Values equal sibyl_logits_mode. */
enum class LogitsMode : int {
    Last = SIBYL_LOGITS_LAST,  // the last appended position (what sampling needs)
    All = SIBYL_LOGITS_ALL,    // every appended position
    None = SIBYL_LOGITS_NONE,  // none (a prompt chunk followed by more)
};

/** How a model is loaded. Defaults equal sibyl_model_options_init. */
struct ModelOptions {
    Backend backend = Backend::Auto;
    int32_t n_threads = 0;  // CPU worker threads; 0 = all hardware threads
    // since 0.2:
    int32_t device_index = 0;    // GPU backends: which device
    uint64_t memory_budget = 0;  // GPU backends: device bytes Sibyl may use; 0 = no limit
    const sibyl_vulkan_device* vulkan_device = nullptr;  // the application's Vulkan device (Backend::Vulkan);
                                                         // null: Sibyl creates its own
    // since 0.3:
    uint64_t kv_cache_bytes = 0;   // the latent cache pool all sessions share; 0 = 1 GiB
    uint32_t kv_page_tokens = 0;   // tokens per cache page; 0 = 64
    int32_t worker_threads = -1;   // library threads running submitted requests; -1 = 1;
                                   // 0 = none: the application calls Model::step
    int32_t worker_nice = 10;      // Linux nice value of those threads (10: below normal)
    uint64_t worker_cpu_mask = 0;  // their CPU affinity (bit i = CPU i); 0 = any
    uint32_t step_tokens = 0;      // tokens per batched step at most; 0 = 256
    // since 0.4:
    Precision precision = Precision::Fast;  // matmuls on the stored blocks (Fast) or float32 (Exact)
    // since 0.5:
    bool mtp = false;            // speculative decoding with the model's MTP layer (see sibyl.h)
    uint32_t mtp_max_batch = 0;  // drafting pauses while more requests decode at once; 0 = 1

    sibyl_model_options to_c() const noexcept {
        sibyl_model_options c;
        sibyl_model_options_init(&c);
        c.backend = static_cast<sibyl_backend_kind>(backend);
        c.n_threads = n_threads;
        c.device_index = device_index;
        c.memory_budget = memory_budget;
        c.vulkan_device = vulkan_device;
        c.kv_cache_bytes = kv_cache_bytes;
        c.kv_page_tokens = kv_page_tokens;
        c.worker_threads = worker_threads;
        c.worker_nice = worker_nice;
        c.worker_cpu_mask = worker_cpu_mask;
        c.step_tokens = step_tokens;
        c.precision = static_cast<sibyl_precision>(precision);
        c.mtp = mtp ? 1 : 0;
        c.mtp_max_batch = mtp_max_batch;
        return c;
    }
};

/** How a session is created. Defaults equal sibyl_session_options_init. */
struct SessionOptions {
    uint32_t max_context = 0;  // max tokens; 0 = the model's max_position_embeddings
    uint64_t seed = 0;         // seed of the session's sampling RNG

    sibyl_session_options to_c() const noexcept {
        sibyl_session_options c;
        sibyl_session_options_init(&c);
        c.max_context = max_context;
        c.seed = seed;
        return c;
    }
};

/**
 * How the next token is chosen. Defaults equal sibyl_sampler_options_init
 * (greedy). Applied in order: repetition penalty, temperature, top-k, top-p,
 * min-p, then a draw from the session's RNG.
 */
struct SamplerOptions {
    float temperature = 0.0f;         // <= 0: greedy
    int32_t top_k = 0;                // 0 = off
    float top_p = 1.0f;               // 1 = off
    float min_p = 0.0f;               // 0 = off
    float repetition_penalty = 1.0f;  // 1 = off
    int32_t repetition_last_n = 0;    // 0 = the whole context
    // since 0.5: {token, bias} added to the logits first (-INFINITY bans the token)
    std::vector<sibyl_logit_bias> logit_bias;

    // The C struct points into this object's logit_bias: keep it alive while the C struct is used.
    sibyl_sampler_options to_c() const noexcept {
        sibyl_sampler_options c;
        sibyl_sampler_options_init(&c);
        c.temperature = temperature;
        c.top_k = top_k;
        c.top_p = top_p;
        c.min_p = min_p;
        c.repetition_penalty = repetition_penalty;
        c.repetition_last_n = repetition_last_n;
        c.logit_bias = logit_bias.empty() ? nullptr : logit_bias.data();
        c.n_logit_bias = logit_bias.size();
        return c;
    }
};

class Model;

/** What a chat's grammar constrains (sibyl_grammar_scope). */
enum class GrammarScope : int32_t {
    answer = SIBYL_GRAMMAR_ANSWER,  // the answer; the reasoning stays free (default)
    whole = SIBYL_GRAMMAR_WHOLE,    // every generated token, think markers read as text
};

/**
 * A compiled grammar for constrained decoding (GBNF or a JSON Schema; since 0.6). Compile
 * once and use it for every chat: the masks it computes are kept in it. Move-only.
 */
class Grammar {
public:
    struct Deleter {
        void operator()(sibyl_grammar* grammar) const noexcept { sibyl_grammar_destroy(grammar); }
    };

    Grammar() noexcept = default;
    /** Take ownership of a C handle. */
    explicit Grammar(sibyl_grammar* handle) noexcept : handle_(handle) {}

    /** From GBNF text; errors name the line and column. */
    static Result<Grammar> from_gbnf(std::string_view gbnf, std::string_view root = "root") {
        const std::string text(gbnf), start(root);
        if (text.find('\0') != std::string::npos || start.find('\0') != std::string::npos)
            return Error{SIBYL_ERR_INVALID_ARGUMENT, "the grammar contains a NUL character"};
        sibyl_grammar* handle = nullptr;
        Status st = sibyl_grammar_from_gbnf(text.c_str(), start.c_str(), &handle);
        if (st != SIBYL_OK) return Error::from_status(st);
        return Grammar(handle);
    }

    /** From a JSON Schema (the supported subset is in docs/STRUCTURED_OUTPUT.md). */
    static Result<Grammar> from_json_schema(std::string_view schema) {
        const std::string text(schema);
        if (text.find('\0') != std::string::npos)
            return Error{SIBYL_ERR_INVALID_ARGUMENT, "the schema contains a NUL character"};
        sibyl_grammar* handle = nullptr;
        Status st = sibyl_grammar_from_json_schema(text.c_str(), &handle);
        if (st != SIBYL_OK) return Error::from_status(st);
        return Grammar(handle);
    }

    /** The GBNF a JSON Schema compiles to. */
    static Result<std::string> json_schema_to_gbnf(std::string_view schema);

    /** Compute the masks for `model`'s vocabulary ahead of use (sibyl_grammar_prepare); at load time. */
    Error prepare(const Model& model, GrammarScope scope = GrammarScope::answer);

    const sibyl_grammar* get() const noexcept { return handle_.get(); }
    explicit operator bool() const noexcept { return handle_ != nullptr; }

private:
    std::unique_ptr<sibyl_grammar, Deleter> handle_;
};

/** How Session::generate runs. Defaults equal sibyl_generate_options_init. */
struct GenerateOptions {
    uint32_t max_new_tokens = 256;
    bool stop_at_eos = true;        // stop after the model's end-of-sequence token
    std::optional<uint64_t> seed;   // set: re-seed the session RNG with it first
    SamplerOptions sampler;         // default: greedy
    // since 0.6: every generated token follows it (not owned; it must outlive the call)
    const Grammar* grammar = nullptr;

    /** The C struct; `sampler` must point at sampler.to_c() kept alive during the call. */
    sibyl_generate_options to_c(const sibyl_sampler_options* c_sampler) const noexcept {
        sibyl_generate_options c;
        sibyl_generate_options_init(&c);
        c.max_new_tokens = max_new_tokens;
        c.stop_at_eos = stop_at_eos ? 1 : 0;
        c.reseed = seed.has_value() ? 1 : 0;
        c.seed = seed.value_or(0);
        c.sampler = c_sampler;
        c.grammar = grammar ? grammar->get() : nullptr;
        return c;
    }
};

/** Which stream a piece of chat output belongs to. */
enum class Channel : int {
    Reasoning = SIBYL_CHANNEL_REASONING,  // the model's thinking (tags never included)
    Answer = SIBYL_CHANNEL_ANSWER,        // the reply after it
};

/** A tool the model may call (since 0.7; sibyl_tool). */
struct Tool {
    std::string name;         // 1 to 64 of A-Z a-z 0-9 _ . -
    std::string description;  // may be empty
    std::string parameters;   // JSON Schema of the arguments; empty: any JSON object
};

/** A tool call: made by a reply, or an earlier assistant message's in a conversation. */
struct ToolCall {
    std::string name;
    std::string arguments;  // JSON text, as the model wrote it
};

/** May the model call tools (sibyl_tool_choice)? */
enum class ToolChoice : int32_t {
    Auto = SIBYL_TOOL_CHOICE_AUTO,         // it answers in text or calls tools
    None = SIBYL_TOOL_CHOICE_NONE,         // it answers in text
    Required = SIBYL_TOOL_CHOICE_REQUIRED, // it calls: ChatOptions::tool_name once, or any tools
};

/** One message of a conversation: role "system", "user", "assistant" or "tool". */
struct ChatMessage {
    std::string role;
    std::string content;
    // since 0.5: false (default) keeps the content plain text (control-token text stays text);
    // true lets control-token text in it become those tokens (content the application wrote).
    bool trusted = false;
    // since 0.7: an assistant message's tool calls (pass back ChatReply::tool_calls; the
    // content is then the reply's answer, often empty), each answered by a "tool" message.
    std::vector<ToolCall> tool_calls = {};
};

/** How Session::chat runs. Defaults equal sibyl_chat_options_init (greedy). */
struct ChatOptions {
    uint32_t max_new_tokens = 1024;           // reasoning + answer tokens
    std::optional<int32_t> think_budget;      // set: force "</think>" after that many reasoning tokens
    bool thinking = true;                     // false: skip the reasoning where the template allows
    std::vector<std::string> stop_strings;    // the answer ends before the first one
    SamplerOptions sampler;                   // default: greedy
    std::optional<uint64_t> seed;             // set: re-seed the session RNG with it first
    // since 0.6: the reply follows this grammar (not owned; it must outlive the call — a
    // submitted request keeps what it needs).
    const Grammar* grammar = nullptr;
    GrammarScope grammar_scope = GrammarScope::answer;
    // since 0.7: tools the model may call (their definitions join the system prompt; see
    // sibyl.h's tool calls section), whether it may, and the one it must call (Required).
    std::vector<Tool> tools;
    ToolChoice tool_choice = ToolChoice::Auto;
    std::string tool_name;
};

/** What Session::chat produced: both channels in full, and why it stopped. */
struct ChatReply {
    std::string reasoning;
    std::string answer;
    sibyl_stop_reason stop_reason = SIBYL_STOP_EOS;
    uint32_t prompt_tokens = 0;     // prompt tokens run for this call
    uint32_t reused_tokens = 0;     // prompt tokens found in the session's cache
    uint32_t reasoning_tokens = 0;
    uint32_t answer_tokens = 0;     // end-of-sequence included
    // since 0.3:
    uint32_t generated_tokens = 0;  // tokens sampled
    uint64_t first_token_us = 0;    // start -> first sampled token, microseconds (0: none)
    uint64_t total_us = 0;          // start -> end, microseconds
    // since 0.7: the calls the reply made (never part of `answer`)
    std::vector<ToolCall> tool_calls = {};
};

/**
 * What a Request did (sibyl_chat_result): final once it is done, so far before.
 * stop_reason is SIBYL_STOP_ERROR until the request has ended.
 */
struct RequestResult {
    sibyl_stop_reason stop_reason = SIBYL_STOP_ERROR;
    uint32_t prompt_tokens = 0;     // prompt tokens run
    uint32_t reused_tokens = 0;     // prompt tokens found in the session's cache (shared prefix)
    uint32_t reasoning_tokens = 0;  // chat: generated while thinking
    uint32_t answer_tokens = 0;     // chat: generated for the answer (end-of-sequence included)
    uint32_t generated_tokens = 0;  // tokens sampled (generate requests: all of them)
    uint64_t first_token_us = 0;    // submit -> first sampled token, microseconds (0: none)
    uint64_t total_us = 0;          // submit -> end, microseconds
    uint32_t tool_calls = 0;        // chat: tool calls made (since 0.7)
};

/** Which kind an Event is. Values equal sibyl_event_type. */
enum class EventType : int {
    None = SIBYL_EVENT_NONE,    // Request::poll: nothing queued right now
    Token = SIBYL_EVENT_TOKEN,  // a sampled token (`token`)
    Text = SIBYL_EVENT_TEXT,    // chat: a piece of text on `channel` (complete UTF-8 characters)
    Done = SIBYL_EVENT_DONE,    // the end: `stop_reason` and `status` (`text`: the error message)
    ToolCall = SIBYL_EVENT_TOOL_CALL,  // since 0.7: a tool call, `name` and `text` (its arguments)
};

/**
 * One event of a Request. Unlike sibyl_event it owns its text, so it stays valid
 * after the next poll. Optional-like: an Event of type None (nothing was queued)
 * is false, every other one true.
 */
struct Event {
    EventType type = EventType::None;
    int32_t token = -1;                             // Token
    Channel channel = Channel::Answer;              // Text
    std::string text;                               // Text: the piece; Done with an error: the message
    sibyl_stop_reason stop_reason = SIBYL_STOP_EOS; // Done
    Status status = SIBYL_OK;                       // Done: SIBYL_OK or the request's error
    std::string name;                               // ToolCall: the tool

    bool has_value() const noexcept { return type != EventType::None; }
    explicit operator bool() const noexcept { return has_value(); }
    bool is_done() const noexcept { return type == EventType::Done; }

    /** Done: the request's outcome as an Error (ok() when it ended without one). */
    Error error() const {
        if (type != EventType::Done || status == SIBYL_OK) return Error{};
        return Error{status, text.empty() ? std::string(status_string(status)) : text};
    }

    /** A copy of a C event (its text is copied: the C pointer dies with the next poll). */
    static Event from_c(const sibyl_event& c) {
        Event e;
        switch (c.type) {
            case SIBYL_EVENT_TOKEN:
                e.type = EventType::Token;
                e.token = c.token;
                break;
            case SIBYL_EVENT_TEXT:
                e.type = EventType::Text;
                e.channel = static_cast<Channel>(c.channel);
                if (c.text) e.text.assign(c.text, c.text_len);
                break;
            case SIBYL_EVENT_DONE:
                e.type = EventType::Done;
                e.stop_reason = c.stop_reason;
                e.status = c.status;
                if (c.text) e.text.assign(c.text, c.text_len);
                break;
            case SIBYL_EVENT_TOOL_CALL:
                e.type = EventType::ToolCall;
                if (c.name) e.name.assign(c.name, c.name_len);
                if (c.text) e.text.assign(c.text, c.text_len);
                break;
            default:  // SIBYL_EVENT_NONE (or a type this header does not know: treated as none)
                break;
        }
        return e;
    }
};

/** Receives a Request's events on the thread that runs the model's step (see Session::submit_chat). */
using EventCallback = std::function<void(const Event& event)>;

/** What one Model::step did (sibyl_step_report). */
struct StepReport {
    uint32_t rows = 0;        // tokens run (0: nothing could run)
    uint32_t sequences = 0;   // requests in the step
    uint32_t pending = 0;     // requests not finished after it
    uint64_t elapsed_us = 0;
    bool overrun = false;     // elapsed_us exceeded the budget
};

// ------------------------------------------------------------------ small views

/**
 * A non-owning view of token ids (C++17 has no std::span). Binds to a
 * std::vector<int32_t>, a braced list {1, 2, 3}, a C array, or pointer + size.
 * It does not own the tokens: keep them alive while the view is used.
 */
class TokenSpan {
public:
    constexpr TokenSpan() noexcept = default;
    constexpr TokenSpan(const int32_t* data, size_t size) noexcept : data_(data), size_(size) {}
    TokenSpan(const std::vector<int32_t>& tokens) noexcept : data_(tokens.data()), size_(tokens.size()) {}
    // A braced list lives until the end of the full expression: fine for an
    // argument (s.append({1, 2, 3})), dangling if the view is stored.
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 9
#  pragma GCC diagnostic push
#  pragma GCC diagnostic ignored "-Winit-list-lifetime"
#endif
    constexpr TokenSpan(std::initializer_list<int32_t> tokens) noexcept
        : data_(tokens.begin()), size_(tokens.size()) {}
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 9
#  pragma GCC diagnostic pop
#endif
    template <size_t N>
    constexpr TokenSpan(const int32_t (&tokens)[N]) noexcept : data_(tokens), size_(N) {}

    constexpr const int32_t* data() const noexcept { return data_; }
    constexpr size_t size() const noexcept { return size_; }
    constexpr bool empty() const noexcept { return size_ == 0; }
    constexpr const int32_t* begin() const noexcept { return data_; }
    constexpr const int32_t* end() const noexcept { return data_ + size_; }
    constexpr int32_t operator[](size_t i) const noexcept { return data_[i]; }

private:
    const int32_t* data_ = nullptr;
    size_t size_ = 0;
};

/**
 * The logits kept by a session's last append: `rows` rows of `vocab` floats,
 * row-major. Owned by the session; valid until the next call that changes it
 * (append, generate, rewind, reset, or its destruction).
 */
struct LogitsView {
    const float* data = nullptr;
    size_t rows = 0;
    size_t vocab = 0;

    const float* row(size_t i) const noexcept { return data + i * vocab; }
    const float* last_row() const noexcept { return rows ? row(rows - 1) : nullptr; }
    size_t size() const noexcept { return rows * vocab; }
};

/** What a loaded model is (see sibyl_model_info). */
struct ModelInfo {
    std::string architecture;  // "deepseek_v2" or "deepseek_v3"
    std::string backend;       // e.g. "cpu"
    int32_t vocab_size = 0;
    int32_t hidden_size = 0;
    int32_t n_layers = 0;
    int32_t n_dense_layers = 0;
    int32_t n_heads = 0;
    int32_t q_lora_rank = 0;  // 0 when q is full rank
    int32_t kv_lora_rank = 0;
    int32_t qk_rope_head_dim = 0;
    int32_t n_routed_experts = 0;
    int32_t n_shared_experts = 0;
    int32_t n_experts_per_token = 0;
    int32_t max_position_embeddings = 0;
    int32_t bos_token_id = -1;  // -1 when none
    int32_t eos_token_id = -1;  // -1 when none
    uint64_t n_parameters = 0;
    uint64_t kv_bytes_per_token = 0;
    // since 0.3:
    uint64_t kv_cache_bytes = 0;  // the cache pool's size (whole pages)
    uint32_t kv_page_tokens = 0;  // tokens per cache page
    int32_t worker_threads = 0;   // library threads running submitted requests (0: Model::step)
    uint64_t kv_cache_bytes_used = 0;  // cache pages sessions hold now
    // since 0.4:
    Precision precision = Precision::Exact;  // how the model's matmuls compute
    std::string cpu_simd;  // CPU backend: widest instruction set its kernels use; "" elsewhere
    uint64_t decode_weight_bytes = 0;  // weight bytes one decoded token reads
    // since 0.5:
    int32_t mtp_layers = 0;  // multi-token-prediction layers the checkpoint carries
    bool mtp = false;        // speculative decoding with the first one is on
};

// ------------------------------------------------------------------ session

namespace detail {
/** Bridges a C++ callable to sibyl_token_fn through user_data. */
template <class F>
struct TokenCallback {
    F* fn;
    std::vector<int32_t>* tokens;  // every reported token, in order
#if SIBYL_HPP_EXCEPTIONS
    std::exception_ptr exception;  // what `fn` threw, rethrown after the C call
#endif

    TokenCallback(F* f, std::vector<int32_t>* out) noexcept : fn(f), tokens(out) {}

    int call(int32_t token) {
        tokens->push_back(token);
        if constexpr (std::is_void_v<std::invoke_result_t<F&, int32_t>>) {
            (*fn)(token);
            return 0;
        } else {
            return static_cast<bool>((*fn)(token)) ? 1 : 0;
        }
    }

    static int trampoline(int32_t token, void* user_data) noexcept {
        auto* self = static_cast<TokenCallback*>(user_data);
#if SIBYL_HPP_EXCEPTIONS
        try {
            return self->call(token);
        } catch (...) {  // never let an exception cross the C library: stop, rethrow later
            self->exception = std::current_exception();
            return 1;
        }
#else
        return self->call(token);
#endif
    }
};
/** Bridges a C++ callable `bool(Channel, std::string_view)` to sibyl_text_fn, collecting the reply. */
template <class F>
struct TextCallback {
    F* fn;
    ChatReply* reply;
#if SIBYL_HPP_EXCEPTIONS
    std::exception_ptr exception;
#endif

    TextCallback(F* f, ChatReply* r) noexcept : fn(f), reply(r) {}

    int call(sibyl_channel channel, const char* piece, size_t len) {
        const std::string_view text(piece, len);
        (channel == SIBYL_CHANNEL_REASONING ? reply->reasoning : reply->answer).append(text);
        if constexpr (std::is_void_v<std::invoke_result_t<F&, Channel, std::string_view>>) {
            (*fn)(static_cast<Channel>(channel), text);
            return 0;
        } else {
            return static_cast<bool>((*fn)(static_cast<Channel>(channel), text)) ? 1 : 0;
        }
    }

    // The reply's tool calls arrive with the same user_data (sibyl_chat_options.on_tool_call).
    static int tool_call(const char* name, size_t name_len, const char* args, size_t args_len,
                         void* user_data) noexcept {
        auto* self = static_cast<TextCallback*>(user_data);
#if SIBYL_HPP_EXCEPTIONS
        try {
            self->reply->tool_calls.push_back({std::string(name, name_len), std::string(args, args_len)});
        } catch (...) {
            self->exception = std::current_exception();
            return 1;
        }
#else
        self->reply->tool_calls.push_back({std::string(name, name_len), std::string(args, args_len)});
#endif
        return 0;
    }

    static int trampoline(sibyl_channel channel, const char* piece, size_t len, void* user_data) noexcept {
        auto* self = static_cast<TextCallback*>(user_data);
#if SIBYL_HPP_EXCEPTIONS
        try {
            return self->call(channel, piece, len);
        } catch (...) {
            self->exception = std::current_exception();
            return 1;
        }
#else
        return self->call(channel, piece, len);
#endif
    }
};

/** C views of C++ messages; valid while `messages` lives. */
inline std::vector<sibyl_chat_message> c_messages(const std::vector<ChatMessage>& messages) {
    std::vector<sibyl_chat_message> out;
    out.reserve(messages.size());
    for (const ChatMessage& m : messages) out.push_back({m.role.c_str(), m.content.data(), m.content.size()});
    return out;
}

/** Runs a sibyl.h call that fills a caller buffer, growing the buffer once if needed. */
template <class T, class Call>
Result<std::vector<T>> fill_buffer(Call&& call) {
    std::vector<T> out(256);
    size_t needed = 0;
    Status st = call(out.data(), out.size(), &needed);
    if (st == SIBYL_ERR_BUFFER_TOO_SMALL) {
        out.resize(needed);
        st = call(out.data(), out.size(), &needed);
    }
    if (st != SIBYL_OK) return Error::from_status(st);
    out.resize(needed);
    return out;
}

/** A ChatOptions as sibyl_chat_options, with the arrays it points at. Not copyable (it points into itself). */
struct ChatOptionsC {
    std::vector<const char*> stops;
    std::vector<int32_t> trusted;
    std::vector<sibyl_tool> tools;
    std::vector<sibyl_tool_call> calls;
    sibyl_sampler_options sampler;
    sibyl_chat_options c;

    ChatOptionsC(const ChatOptions& options, const std::vector<ChatMessage>& messages) : sampler(options.sampler.to_c()) {
        for (const std::string& stop : options.stop_strings) stops.push_back(stop.c_str());
        sibyl_chat_options_init(&c);
        c.max_new_tokens = options.max_new_tokens;
        c.think_budget = options.think_budget.value_or(-1);
        c.thinking = options.thinking ? 1 : 0;
        c.stop_strings = stops.data();
        c.n_stop_strings = stops.size();
        c.sampler = &sampler;
        c.reseed = options.seed.has_value() ? 1 : 0;
        c.seed = options.seed.value_or(0);
        for (const ChatMessage& m : messages) trusted.push_back(m.trusted ? 1 : 0);
        c.trusted = trusted.data();
        c.grammar = options.grammar ? options.grammar->get() : nullptr;
        c.grammar_scope = static_cast<sibyl_grammar_scope>(options.grammar_scope);
        for (const Tool& t : options.tools)
            tools.push_back({t.name.c_str(), t.description.c_str(), t.parameters.empty() ? nullptr : t.parameters.c_str()});
        c.tools = tools.data();
        c.n_tools = tools.size();
        c.tool_choice = static_cast<sibyl_tool_choice>(options.tool_choice);
        c.tool_name = options.tool_name.empty() ? nullptr : options.tool_name.c_str();
        for (size_t i = 0; i < messages.size(); ++i)
            for (const ToolCall& call : messages[i].tool_calls)
                calls.push_back({i, call.name.c_str(), call.arguments.c_str()});
        c.tool_calls = calls.data();
        c.n_tool_calls = calls.size();
    }
    ChatOptionsC(const ChatOptionsC&) = delete;
    ChatOptionsC& operator=(const ChatOptionsC&) = delete;
};

inline RequestResult request_result(const sibyl_chat_result& r) noexcept {
    RequestResult out;
    out.stop_reason = r.stop_reason;
    out.prompt_tokens = r.prompt_tokens;
    out.reused_tokens = r.reused_tokens;
    out.reasoning_tokens = r.reasoning_tokens;
    out.answer_tokens = r.answer_tokens;
    out.generated_tokens = r.generated_tokens;
    out.first_token_us = r.first_token_us;
    out.total_us = r.total_us;
    out.tool_calls = r.tool_calls;
    return out;
}

/**
 * The C++ side of a Request's on_event callback. It lives in a process-wide registry
 * under a number that is never reused, and the C callback's user_data is that number,
 * not a pointer: a callback the library delivers late (after sibyl_request_destroy)
 * finds no entry and does nothing, so the std::function can never be called after
 * its Request is gone, nor touched after it was destroyed.
 */
struct RequestCallbackState {
    std::mutex mutex;
    std::condition_variable changed;
    EventCallback fn;                    // reset when the Request is destroyed
    sibyl_request* handle = nullptr;     // set once submitted; for a cancel from the callback
    int active = 0;                      // callbacks running now
    std::thread::id active_thread;       // the thread running one (valid while active > 0)
    bool detached = false;               // the Request is being destroyed: deliver nothing more
    bool done = false;                   // the DONE event's callback has returned
    bool cancel_wanted = false;          // the callback threw before `handle` was set
#if SIBYL_HPP_EXCEPTIONS
    std::exception_ptr exception;        // what the callback threw (the request is then cancelled)
#endif
};

struct RequestRegistry {
    std::mutex mutex;
    uintptr_t next_id = 1;
    std::unordered_map<uintptr_t, std::shared_ptr<RequestCallbackState>> states;
};

// Never destroyed: library threads may deliver a late event while the program exits.
inline RequestRegistry& request_registry() {
    static RequestRegistry* registry = new RequestRegistry;
    return *registry;
}

inline void* register_request_callback(std::shared_ptr<RequestCallbackState> state) {
    RequestRegistry& registry = request_registry();
    std::lock_guard<std::mutex> lock(registry.mutex);
    uintptr_t id = registry.next_id++;
    if (id == 0) id = registry.next_id++;  // wrapped around (32-bit): 0 is never an id
    registry.states.emplace(id, std::move(state));
    return reinterpret_cast<void*>(id);
}

inline void unregister_request_callback(void* key) noexcept {
    if (!key) return;
    RequestRegistry& registry = request_registry();
    std::lock_guard<std::mutex> lock(registry.mutex);
    registry.states.erase(reinterpret_cast<uintptr_t>(key));
}

inline void request_event_trampoline(const sibyl_event* c_event, void* user_data) noexcept {
    if (!c_event) return;
    std::shared_ptr<RequestCallbackState> state;
    {
        RequestRegistry& registry = request_registry();
        std::lock_guard<std::mutex> lock(registry.mutex);
        auto it = registry.states.find(reinterpret_cast<uintptr_t>(user_data));
        if (it == registry.states.end()) return;  // the Request is gone
        state = it->second;
    }
    {
        std::lock_guard<std::mutex> lock(state->mutex);
        if (state->detached || !state->fn) return;
        ++state->active;
        state->active_thread = std::this_thread::get_id();
    }
    const bool is_done = c_event->type == SIBYL_EVENT_DONE;
#if SIBYL_HPP_EXCEPTIONS
    try {
        state->fn(Event::from_c(*c_event));
    } catch (...) {  // never let an exception cross the C library: keep it, cancel the request
        sibyl_request* to_cancel = nullptr;
        {
            std::lock_guard<std::mutex> lock(state->mutex);
            if (!state->exception) state->exception = std::current_exception();
            if (!state->handle) state->cancel_wanted = true;  // submit_with cancels once it has the handle
            else if (!state->detached && !is_done) to_cancel = state->handle;
        }
        // The handle stays valid while this callback is active (Request::destroy waits for it).
        if (to_cancel) sibyl_request_cancel(to_cancel);
    }
#else
    state->fn(Event::from_c(*c_event));
#endif
    {
        std::lock_guard<std::mutex> lock(state->mutex);
        --state->active;
        if (is_done) state->done = true;
    }
    state->changed.notify_all();
}
}  // namespace detail

inline Result<std::string> Grammar::json_schema_to_gbnf(std::string_view schema) {
    const std::string text(schema);
    if (text.find('\0') != std::string::npos)
        return Error{SIBYL_ERR_INVALID_ARGUMENT, "the schema contains a NUL character"};
    auto bytes = detail::fill_buffer<char>(
        [&](char* out, size_t capacity, size_t* n) { return sibyl_json_schema_to_gbnf(text.c_str(), out, capacity, n); });
    if (!bytes) return bytes.error();
    return std::string(bytes->data(), bytes->size());
}

/**
 * A submitted chat or generate request (Session::submit_chat / submit_generate).
 * Move-only; destroying one that still runs cancels it. Its session is in use
 * until the request is done: calls on the session meanwhile fail with SIBYL_ERR_BUSY.
 *
 * Without a callback, events queue up for poll() (e.g. once per frame). With an
 * EventCallback, every event goes to it instead (poll() then finds none), on the
 * thread that runs the model's step; the callback is kept alive by the Request and
 * is never called once the Request's destructor (or move-assignment over it) has
 * returned. Do not destroy a Request from inside its own callback.
 */
class Request {
public:
    /** An empty Request (no handle); every call on it fails with SIBYL_ERR_INVALID_ARGUMENT. */
    Request() noexcept = default;
    /** Take ownership of a C handle submitted without an on_event callback. */
    explicit Request(sibyl_request* handle) noexcept : handle_(handle) {}

    Request(Request&& other) noexcept
        : handle_(std::exchange(other.handle_, nullptr)),
          callback_(std::move(other.callback_)),
          callback_key_(std::exchange(other.callback_key_, nullptr)),
          done_(std::exchange(other.done_, false)) {}
    Request& operator=(Request&& other) noexcept {
        if (this != &other) {
            destroy();
            handle_ = std::exchange(other.handle_, nullptr);
            callback_ = std::move(other.callback_);
            callback_key_ = std::exchange(other.callback_key_, nullptr);
            done_ = std::exchange(other.done_, false);
        }
        return *this;
    }
    Request(const Request&) = delete;
    Request& operator=(const Request&) = delete;
    ~Request() { destroy(); }

    sibyl_request* get() const noexcept { return handle_; }
    explicit operator bool() const noexcept { return handle_ != nullptr; }
    /** True when the request delivers its events to an EventCallback instead of poll(). */
    bool has_callback() const noexcept { return callback_ != nullptr; }

    /**
     * The next queued event, or an Event of type None (false) when none is queued.
     * Never blocks. The Event owns its text.
     */
    Result<Event> poll() {
        sibyl_event c{};
        c.struct_size = sizeof c;
        Status st = sibyl_request_poll(handle_, &c);
        if (st != SIBYL_OK) return Error::from_status(st);
        Event event = Event::from_c(c);
        if (event.is_done()) done_ = true;
        return event;
    }

    /**
     * Wait up to `timeout_us` microseconds (-1: no limit). Without a callback: until an
     * event is queued or the request has ended (true), or the time is up (false). With
     * a callback: until the callback has received the DONE event and returned (true).
     * With worker_threads = 0, only Model::step (on another thread) makes progress.
     * If the callback threw, the exception is rethrown here.
     */
    Result<bool> wait(int64_t timeout_us = -1) {
        // Timeouts beyond a year mean no limit (steady-clock deadlines that far out overflow).
        constexpr int64_t kYearUs = int64_t{366} * 24 * 3600 * 1000000;
        if (timeout_us > kYearUs) timeout_us = -1;
        if (!callback_) {
            int ready = 0;
            Status st = sibyl_request_wait(handle_, timeout_us, &ready);
            if (st != SIBYL_OK) return Error::from_status(st);
            return ready != 0;
        }
        bool finished = false;
        {
            std::unique_lock<std::mutex> lock(callback_->mutex);
            auto is_done = [&] { return callback_->done; };
            if (timeout_us < 0) {
                callback_->changed.wait(lock, is_done);
                finished = true;
            } else {
                finished = callback_->changed.wait_for(lock, std::chrono::microseconds(timeout_us), is_done);
            }
        }
        rethrow_callback_exception();
        return finished;
    }

    /** Cancel the request: it ends before its next step with SIBYL_STOP_CANCELLED. Any thread. */
    Error cancel() noexcept { return Error::from_status(sibyl_request_cancel(handle_)); }

    /**
     * What the request did so far (final once done()): token counts, stop reason
     * and latencies. If the callback threw, the exception is rethrown here.
     */
    Result<RequestResult> result() const {
        rethrow_callback_exception();
        sibyl_chat_result c{};
        c.struct_size = sizeof c;
        Status st = sibyl_request_result(handle_, &c);
        if (st != SIBYL_OK) return Error::from_status(st);
        return detail::request_result(c);
    }

    /**
     * True once the request's end was seen: without a callback, poll() returned
     * the Done event; with one, the callback received it and returned.
     */
    bool done() const noexcept {
        if (!callback_) return done_;
        std::lock_guard<std::mutex> lock(callback_->mutex);
        return callback_->done;
    }

    /**
     * Submit through `submit(const sibyl_request_options*, sibyl_request**)`, a call of
     * sibyl_session_submit_chat / _generate, with `on_event` (may be empty) as its callback.
     */
    template <class Submit>
    static Result<Request> submit_with(EventCallback on_event, Submit&& submit) {
        sibyl_request_options options;
        sibyl_request_options_init(&options);
        std::shared_ptr<detail::RequestCallbackState> state;
        void* key = nullptr;
        if (on_event) {
            state = std::make_shared<detail::RequestCallbackState>();
            state->fn = std::move(on_event);
            key = detail::register_request_callback(state);
            options.on_event = &detail::request_event_trampoline;
            options.user_data = key;
        }
        sibyl_request* handle = nullptr;
        Status st = submit(&options, &handle);
        if (st != SIBYL_OK) {
            Error error = Error::from_status(st);  // before anything else can touch the thread's message
            detail::unregister_request_callback(key);
            return error;
        }
        Request request(handle);
        if (state) {
            bool cancel_now = false;
            {
                std::lock_guard<std::mutex> lock(state->mutex);
                state->handle = handle;
                cancel_now = state->cancel_wanted;
            }
            if (cancel_now) sibyl_request_cancel(handle);
            request.callback_ = std::move(state);
            request.callback_key_ = key;
        }
        return Result<Request>(std::move(request));
    }

private:
    void rethrow_callback_exception() const {
#if SIBYL_HPP_EXCEPTIONS
        if (!callback_) return;
        std::exception_ptr exception;
        {
            std::lock_guard<std::mutex> lock(callback_->mutex);
            exception = callback_->exception;
        }
        if (exception) std::rethrow_exception(exception);
#endif
    }

    void destroy() noexcept {
        if (callback_) {
            // Stop deliveries first: a callback that already started finishes (unless this
            // runs inside it), later ones find no entry; then the C handle may go.
            detail::unregister_request_callback(callback_key_);
            EventCallback fn;
            {
                std::unique_lock<std::mutex> lock(callback_->mutex);
                callback_->detached = true;
                const bool inside_callback =
                    callback_->active > 0 && callback_->active_thread == std::this_thread::get_id();
                if (!inside_callback) {
                    callback_->changed.wait(lock, [&] { return callback_->active == 0; });
                    // No callback runs now, nor ever will: the user's callable (and what it
                    // captured) dies here. Inside the callback it must not; the running
                    // trampoline's reference to the state frees it when it returns.
                    fn = std::move(callback_->fn);
                    callback_->fn = nullptr;
                }
            }
            fn = nullptr;
            callback_.reset();
            callback_key_ = nullptr;
        }
        sibyl_request_destroy(handle_);
        handle_ = nullptr;
        done_ = false;
    }

    sibyl_request* handle_ = nullptr;
    std::shared_ptr<detail::RequestCallbackState> callback_;
    void* callback_key_ = nullptr;
    bool done_ = false;  // poll() returned the Done event
};

/**
 * One conversation over a model: its tokens, KV cache, logits and RNG.
 * Move-only; created by Model::create_session. Use from one thread at a time.
 */
class Session {
public:
    struct Deleter {
        void operator()(sibyl_session* session) const noexcept { sibyl_session_destroy(session); }
    };

    /** An empty Session (no handle); every call on it fails with SIBYL_ERR_INVALID_ARGUMENT. */
    Session() noexcept = default;
    /** Take ownership of a C handle. */
    explicit Session(sibyl_session* handle) noexcept : handle_(handle) {}

    Session(Session&&) noexcept = default;
    Session& operator=(Session&&) noexcept = default;
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    sibyl_session* get() const noexcept { return handle_.get(); }
    sibyl_session* release() noexcept { return handle_.release(); }
    explicit operator bool() const noexcept { return handle_ != nullptr; }

    /**
     * Run the model over `tokens` at the end of the session (one forward step).
     * On failure (e.g. SIBYL_ERR_INVALID_TOKEN) the session is unchanged.
     */
    Error append(TokenSpan tokens, LogitsMode mode = LogitsMode::Last) {
        return Error::from_status(sibyl_session_append(handle_.get(), tokens.data(), tokens.size(),
                                                       static_cast<sibyl_logits_mode>(mode)));
    }

    /** The logits kept by the last append (SIBYL_ERR_NO_LOGITS if none). */
    Result<LogitsView> logits() const {
        LogitsView view;
        Status st = sibyl_session_logits(handle_.get(), &view.data, &view.rows, &view.vocab);
        if (st != SIBYL_OK) return Error::from_status(st);
        return view;
    }

    /** Number of tokens in the session's context. */
    Result<size_t> position() const {
        size_t position = 0;
        Status st = sibyl_session_position(handle_.get(), &position);
        if (st != SIBYL_OK) return Error::from_status(st);
        return position;
    }

    /** Speculative decoding so far: MTP drafts verified and accepted (since 0.5). */
    struct MtpStats {
        uint64_t drafted = 0, accepted = 0;
    };
    Result<MtpStats> mtp_stats() const {
        MtpStats m;
        Status st = sibyl_session_mtp_stats(handle_.get(), &m.drafted, &m.accepted);
        if (st != SIBYL_OK) return Error::from_status(st);
        return m;
    }

    /** Forget every token from `position` on; logits are dropped. */
    Error rewind(size_t position) { return Error::from_status(sibyl_session_rewind(handle_.get(), position)); }

    /** Empty the session and re-seed its RNG with its creation seed. */
    Error reset() { return Error::from_status(sibyl_session_reset(handle_.get())); }

    /** Re-seed the session's sampling RNG. */
    Error set_seed(uint64_t seed) { return Error::from_status(sibyl_session_set_seed(handle_.get(), seed)); }

    /** Choose a token from the last logits (does not append it). */
    Result<int32_t> sample(const SamplerOptions& options = {}) {
        const sibyl_sampler_options c = options.to_c();
        int32_t token = -1;
        Status st = sibyl_session_sample(handle_.get(), &c, &token);
        if (st != SIBYL_OK) return Error::from_status(st);
        return token;
    }

    /**
     * Append `prompt` (may be empty when the session holds logits), then sample,
     * report and append tokens until max_new_tokens, end-of-sequence, or
     * `on_token` asks to stop. `on_token` is any callable `bool(int32_t token)`
     * returning true to stop after that token (or `void(int32_t)`, never
     * stopping); it runs on the calling thread. Returns the generated tokens,
     * all of which are in the session's context.
     *
     * On failure the Error is returned; tokens generated before it stay in the
     * context (position() tells how far it got). If `on_token` throws,
     * generation stops and the exception is rethrown here.
     */
    template <class F>
    Result<std::vector<int32_t>> generate(TokenSpan prompt, const GenerateOptions& options, F&& on_token) {
        using Fn = std::remove_reference_t<F>;
        static_assert(std::is_invocable_v<Fn&, int32_t>, "on_token must be callable as on_token(int32_t)");
        std::vector<int32_t> tokens;
        detail::TokenCallback<Fn> bridge{&on_token, &tokens};
        const sibyl_sampler_options c_sampler = options.sampler.to_c();
        const sibyl_generate_options c_options = options.to_c(&c_sampler);
        Status st = sibyl_session_generate(handle_.get(), prompt.data(), prompt.size(), &c_options,
                                           &detail::TokenCallback<Fn>::trampoline, &bridge, nullptr);
#if SIBYL_HPP_EXCEPTIONS
        if (bridge.exception) std::rethrow_exception(bridge.exception);
#endif
        if (st != SIBYL_OK) return Error::from_status(st);
        return tokens;
    }

    /**
     * Continue the conversation `messages` (all turns so far, ending with the
     * user's): the reply streams to `on_text`, any callable
     * `bool(Channel, std::string_view piece)` returning true to stop (or
     * returning void). The pieces are complete UTF-8. The reply's tokens stay in
     * the session; the next call with this conversation extended reuses them.
     * Returns both channels in full. If `on_text` throws, generation stops and
     * the exception is rethrown here.
     */
    template <class F>
    Result<ChatReply> chat(const std::vector<ChatMessage>& messages, const ChatOptions& options, F&& on_text) {
        using Fn = std::remove_reference_t<F>;
        static_assert(std::is_invocable_v<Fn&, Channel, std::string_view>,
                      "on_text must be callable as on_text(sibyl::Channel, std::string_view)");
        ChatReply reply;
        detail::TextCallback<Fn> bridge{&on_text, &reply};
        const std::vector<sibyl_chat_message> c_msgs = detail::c_messages(messages);
        detail::ChatOptionsC c(options, messages);
        c.c.on_tool_call = &detail::TextCallback<Fn>::tool_call;
        sibyl_chat_result result{};
        result.struct_size = sizeof result;
        Status st = sibyl_session_chat(handle_.get(), c_msgs.data(), c_msgs.size(), &c.c,
                                       &detail::TextCallback<Fn>::trampoline, &bridge, &result);
#if SIBYL_HPP_EXCEPTIONS
        if (bridge.exception) std::rethrow_exception(bridge.exception);
#endif
        if (st != SIBYL_OK) return Error::from_status(st);
        reply.stop_reason = result.stop_reason;
        reply.prompt_tokens = result.prompt_tokens;
        reply.reused_tokens = result.reused_tokens;
        reply.reasoning_tokens = result.reasoning_tokens;
        reply.answer_tokens = result.answer_tokens;
        reply.generated_tokens = result.generated_tokens;
        reply.first_token_us = result.first_token_us;
        reply.total_us = result.total_us;
        return reply;
    }

    /** chat() without streaming: the reply comes back whole. */
    Result<ChatReply> chat(const std::vector<ChatMessage>& messages, const ChatOptions& options = {}) {
        return chat(messages, options, [](Channel, std::string_view) { return false; });
    }

    /**
     * Stop what runs on this session: a chat or generate call, or a submitted Request
     * (callable from any thread; see sibyl_session_cancel). A cancel while nothing runs
     * has no effect.
     */
    Error cancel() noexcept { return Error::from_status(sibyl_session_cancel(handle_.get())); }

    /** generate() without a per-token callback. */
    Result<std::vector<int32_t>> generate(TokenSpan prompt, const GenerateOptions& options = {}) {
        return generate(prompt, options, [](int32_t) { return false; });
    }

    /**
     * Submit a chat turn (as chat()) and return at once with its Request: Text events
     * carry the reply per channel, then a Done event. The session is in use until the
     * request is done (its other calls fail with SIBYL_ERR_BUSY). Errors found before
     * anything runs (a busy session, bad options, an unusable conversation) are
     * returned here; later ones arrive as the Done event's status. `messages` and
     * `options` are copied: they need not outlive the call.
     *
     * `on_event` (optional) receives every event instead of Request::poll, on the
     * thread that runs the model's step (a library worker, or the caller of
     * Model::step); keep it short, and do not call into this session from it (BUSY).
     * The Request keeps it alive and it is never called after the Request is
     * destroyed. If it throws, the request is cancelled and Request::wait() /
     * result() rethrow the exception.
     */
    Result<Request> submit_chat(const std::vector<ChatMessage>& messages, const ChatOptions& options = {},
                                EventCallback on_event = {}) {
        const std::vector<sibyl_chat_message> c_msgs = detail::c_messages(messages);
        const detail::ChatOptionsC c(options, messages);
        return Request::submit_with(std::move(on_event),
                                    [&](const sibyl_request_options* request_options, sibyl_request** out) {
                                        return sibyl_session_submit_chat(handle_.get(), c_msgs.data(), c_msgs.size(),
                                                                         &c.c, request_options, out);
                                    });
    }

    /**
     * Submit a generation (as generate()) and return at once with its Request: each
     * sampled token is a Token event, then a Done event. Same rules as submit_chat.
     */
    Result<Request> submit_generate(TokenSpan prompt, const GenerateOptions& options = {},
                                    EventCallback on_event = {}) {
        const sibyl_sampler_options c_sampler = options.sampler.to_c();
        const sibyl_generate_options c_options = options.to_c(&c_sampler);
        return Request::submit_with(std::move(on_event),
                                    [&](const sibyl_request_options* request_options, sibyl_request** out) {
                                        return sibyl_session_submit_generate(handle_.get(), prompt.data(),
                                                                             prompt.size(), &c_options,
                                                                             request_options, out);
                                    });
    }

    /**
     * A new Session continuing from this one: same tokens, logits and RNG state. The
     * cache pages are shared copy-on-write, so a fork costs page references, not copies.
     */
    Result<Session> fork() {
        sibyl_session* handle = nullptr;
        Status st = sibyl_session_fork(handle_.get(), &handle);
        if (st != SIBYL_OK) return Error::from_status(st);
        return Session(handle);
    }

private:
    std::unique_ptr<sibyl_session, Deleter> handle_;
};

// ------------------------------------------------------------------ model

/**
 * A loaded model. Move-only; created by Model::load. Any number of threads may
 * call its const members at once.
 */
class Model {
public:
    struct Deleter {
        void operator()(sibyl_model* model) const noexcept { sibyl_model_destroy(model); }
    };

    /** An empty Model (no handle); every call on it fails with SIBYL_ERR_INVALID_ARGUMENT. */
    Model() noexcept = default;
    /** Take ownership of a C handle. */
    explicit Model(sibyl_model* handle) noexcept : handle_(handle) {}

    Model(Model&&) noexcept = default;
    Model& operator=(Model&&) noexcept = default;
    Model(const Model&) = delete;
    Model& operator=(const Model&) = delete;

    /**
     * Load a Hugging Face model directory (config.json + safetensors). Errors:
     * SIBYL_ERR_IO (missing files), SIBYL_ERR_FORMAT (corrupt or inconsistent
     * files), SIBYL_ERR_UNSUPPORTED (e.g. another model_type), SIBYL_ERR_BACKEND.
     */
    static Result<Model> load(std::string_view path, const ModelOptions& options = {}) {
        const std::string c_path(path);
        if (c_path.find('\0') != std::string::npos)
            return Error{SIBYL_ERR_INVALID_ARGUMENT, "model path contains a NUL character"};
        const sibyl_model_options c_options = options.to_c();
        sibyl_model* handle = nullptr;
        Status st = sibyl_model_load(c_path.c_str(), &c_options, &handle);
        if (st != SIBYL_OK) return Error::from_status(st);
        return Model(handle);
    }

    /** Load the default model (the embedded tiny-reasoner; where: default_model_path). Since 0.8. */
    static Result<Model> load_default(const ModelOptions& options = {}) {
        const sibyl_model_options c_options = options.to_c();
        sibyl_model* handle = nullptr;
        Status st = sibyl_model_load(nullptr, &c_options, &handle);
        if (st != SIBYL_OK) return Error::from_status(st);
        return Model(handle);
    }

    /** The default model's directory (sibyl_default_model_path); SIBYL_ERR_IO when none is found. */
    static Result<std::string> default_model_path() {
        size_t n = 0;
        Status st = sibyl_default_model_path(nullptr, 0, &n);
        if (st != SIBYL_OK && st != SIBYL_ERR_BUFFER_TOO_SMALL) return Error::from_status(st);
        std::string path(n + 1, '\0');
        st = sibyl_default_model_path(&path[0], path.size(), &n);
        if (st != SIBYL_OK) return Error::from_status(st);
        path.resize(n);
        return path;
    }

    sibyl_model* get() const noexcept { return handle_.get(); }
    sibyl_model* release() noexcept { return handle_.release(); }
    explicit operator bool() const noexcept { return handle_ != nullptr; }

    /** Describe the model. */
    Result<ModelInfo> info() const {
        sibyl_model_info c{};
        c.struct_size = sizeof(c);
        Status st = sibyl_model_get_info(handle_.get(), &c);
        if (st != SIBYL_OK) return Error::from_status(st);
        ModelInfo info;
        info.architecture = c.architecture ? c.architecture : "";
        info.backend = c.backend ? c.backend : "";
        info.vocab_size = c.vocab_size;
        info.hidden_size = c.hidden_size;
        info.n_layers = c.n_layers;
        info.n_dense_layers = c.n_dense_layers;
        info.n_heads = c.n_heads;
        info.q_lora_rank = c.q_lora_rank;
        info.kv_lora_rank = c.kv_lora_rank;
        info.qk_rope_head_dim = c.qk_rope_head_dim;
        info.n_routed_experts = c.n_routed_experts;
        info.n_shared_experts = c.n_shared_experts;
        info.n_experts_per_token = c.n_experts_per_token;
        info.max_position_embeddings = c.max_position_embeddings;
        info.bos_token_id = c.bos_token_id;
        info.eos_token_id = c.eos_token_id;
        info.n_parameters = c.n_parameters;
        info.kv_bytes_per_token = c.kv_bytes_per_token;
        info.kv_cache_bytes = c.kv_cache_bytes;
        info.kv_page_tokens = c.kv_page_tokens;
        info.worker_threads = c.worker_threads;
        info.kv_cache_bytes_used = c.kv_cache_bytes_used;
        info.precision = static_cast<Precision>(c.precision);
        info.cpu_simd = c.cpu_simd ? c.cpu_simd : "";
        info.decode_weight_bytes = c.decode_weight_bytes;
        info.mtp_layers = c.mtp_layers;
        info.mtp = c.mtp != 0;
        return info;
    }

    /** Token ids of UTF-8 text, as the model's tokenizer encodes it (no special tokens added). */
    Result<std::vector<int32_t>> tokenize(std::string_view text) const {
        return detail::fill_buffer<int32_t>([&](int32_t* out, size_t capacity, size_t* n) {
            return sibyl_model_tokenize(handle_.get(), text.data(), text.size(), out, capacity, n);
        });
    }

    /**
     * The raw bytes token `token` stands for, possibly part of a UTF-8 character:
     * concatenate the bytes of consecutive tokens to stream text (decoding token by
     * token with detokenize() breaks characters that span tokens).
     * SIBYL_ERR_INVALID_TOKEN outside the vocabulary.
     */
    Result<std::string> token_bytes(int32_t token) const {
        auto bytes = detail::fill_buffer<char>([&](char* out, size_t capacity, size_t* n) {
            return sibyl_model_token_bytes(handle_.get(), token, out, capacity, n);
        });
        if (!bytes) return bytes.error();
        return std::string(bytes->data(), bytes->size());
    }

    /** UTF-8 text of token ids. */
    Result<std::string> detokenize(TokenSpan tokens) const {
        auto bytes = detail::fill_buffer<char>([&](char* out, size_t capacity, size_t* n) {
            return sibyl_model_detokenize(handle_.get(), tokens.data(), tokens.size(), out, capacity, n);
        });
        if (!bytes) return bytes.error();
        return std::string(bytes->data(), bytes->size());
    }

    /**
     * The prompt text of a conversation under the model's chat template, with its tool
     * calls, and the definitions of `options.tools` (other options do not change it).
     */
    Result<std::string> render_chat(const std::vector<ChatMessage>& messages, bool add_generation_prompt = true,
                                    const ChatOptions& options = {}) const {
        const std::vector<sibyl_chat_message> c_msgs = detail::c_messages(messages);
        const detail::ChatOptionsC c(options, messages);
        auto bytes = detail::fill_buffer<char>([&](char* out, size_t capacity, size_t* n) {
            return sibyl_model_render_chat_ex(handle_.get(), c_msgs.data(), c_msgs.size(), &c.c,
                                              add_generation_prompt ? 1 : 0, out, capacity, n);
        });
        if (!bytes) return bytes.error();
        return std::string(bytes->data(), bytes->size());
    }

    /** Create an empty session. Safe to call from several threads at once. */
    Result<Session> create_session(const SessionOptions& options = {}) const {
        const sibyl_session_options c_options = options.to_c();
        sibyl_session* handle = nullptr;
        Status st = sibyl_session_create(handle_.get(), &c_options, &handle);
        if (st != SIBYL_OK) return Error::from_status(st);
        return Session(handle);
    }

    /**
     * Run one batched step of the submitted requests on this thread, sized to take
     * about `budget_us` microseconds (0: a full step). For worker_threads = 0, where
     * the application drives the model (e.g. once per frame); Request callbacks run
     * inside it. Thread-safe: steps of one model run one at a time.
     */
    Result<StepReport> step(uint64_t budget_us = 0) const {
        sibyl_step_report c{};
        c.struct_size = sizeof c;
        Status st = sibyl_model_step(handle_.get(), budget_us, &c);
        if (st != SIBYL_OK) return Error::from_status(st);
        StepReport report;
        report.rows = c.rows;
        report.sequences = c.sequences;
        report.pending = c.pending;
        report.elapsed_us = c.elapsed_us;
        report.overrun = c.overrun != 0;
        return report;
    }

private:
    std::unique_ptr<sibyl_model, Deleter> handle_;
};

inline Error Grammar::prepare(const Model& model, GrammarScope scope) {
    return Error::from_status(
        sibyl_grammar_prepare(handle_.get(), model.get(), static_cast<sibyl_grammar_scope>(scope)));
}

}  // namespace sdk_v0
}  // namespace sibyl

#endif  // SIBYL_SIBYL_HPP
