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
// Conventions:
//  - Move-only RAII classes own the C handles: Model (sibyl_model) and Session
//    (sibyl_session). A Session does not keep its Model alive; after the Model is
//    destroyed its calls fail with SIBYL_ERR_MODEL_DESTROYED (see docs/C_API.md).
//  - Every call has a non-throwing form: it returns sibyl::Error (code + message;
//    ok() on success) or sibyl::Result<T> (a T or an Error). This works with
//    exceptions disabled (-fno-exceptions).
//  - When exceptions are enabled, sibyl::check() turns an Error into a thrown
//    sibyl::Exception and a Result<T> into its value, and Result<T>::value()
//    throws on an error. Define SIBYL_HPP_EXCEPTIONS to 0 or 1 to override the
//    detection.
//  - Thread-safety is that of the C ABI: a Model may be used from any number of
//    threads at once (create_session, info are const); a Session by one thread at
//    a time.
#ifndef SIBYL_SIBYL_HPP
#define SIBYL_SIBYL_HPP

#include <sibyl/sibyl.h>

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
#include <type_traits>
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

    sibyl_model_options to_c() const noexcept {
        sibyl_model_options c;
        sibyl_model_options_init(&c);
        c.backend = static_cast<sibyl_backend_kind>(backend);
        c.n_threads = n_threads;
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

    sibyl_sampler_options to_c() const noexcept {
        sibyl_sampler_options c;
        sibyl_sampler_options_init(&c);
        c.temperature = temperature;
        c.top_k = top_k;
        c.top_p = top_p;
        c.min_p = min_p;
        c.repetition_penalty = repetition_penalty;
        c.repetition_last_n = repetition_last_n;
        return c;
    }
};

/** How Session::generate runs. Defaults equal sibyl_generate_options_init. */
struct GenerateOptions {
    uint32_t max_new_tokens = 256;
    bool stop_at_eos = true;        // stop after the model's end-of-sequence token
    std::optional<uint64_t> seed;   // set: re-seed the session RNG with it first
    SamplerOptions sampler;         // default: greedy

    /** The C struct; `sampler` must point at sampler.to_c() kept alive during the call. */
    sibyl_generate_options to_c(const sibyl_sampler_options* c_sampler) const noexcept {
        sibyl_generate_options c;
        sibyl_generate_options_init(&c);
        c.max_new_tokens = max_new_tokens;
        c.stop_at_eos = stop_at_eos ? 1 : 0;
        c.reseed = seed.has_value() ? 1 : 0;
        c.seed = seed.value_or(0);
        c.sampler = c_sampler;
        return c;
    }
};

/** Which stream a piece of chat output belongs to. */
enum class Channel : int {
    Reasoning = SIBYL_CHANNEL_REASONING,  // the model's thinking (tags never included)
    Answer = SIBYL_CHANNEL_ANSWER,        // the reply after it
};

/** One message of a conversation: role "system", "user", "assistant" or "tool". */
struct ChatMessage {
    std::string role;
    std::string content;
};

/** How Session::chat runs. Defaults equal sibyl_chat_options_init (greedy). */
struct ChatOptions {
    uint32_t max_new_tokens = 1024;           // reasoning + answer tokens
    std::optional<int32_t> think_budget;      // set: force "</think>" after that many reasoning tokens
    bool thinking = true;                     // false: skip the reasoning where the template allows
    std::vector<std::string> stop_strings;    // the answer ends before the first one
    SamplerOptions sampler;                   // default: greedy
    std::optional<uint64_t> seed;             // set: re-seed the session RNG with it first
};

/** What Session::chat produced: both channels in full, and why it stopped. */
struct ChatReply {
    std::string reasoning;
    std::string answer;
    sibyl_stop_reason stop_reason = SIBYL_STOP_EOS;
    uint32_t prompt_tokens = 0;     // prompt tokens run for this call
    uint32_t reused_tokens = 0;     // prompt tokens found in the session's cache
    uint32_t reasoning_tokens = 0;
    uint32_t answer_tokens = 0;
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
}  // namespace detail

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
        std::vector<const char*> stops;
        for (const std::string& stop : options.stop_strings) stops.push_back(stop.c_str());
        const sibyl_sampler_options c_sampler = options.sampler.to_c();
        sibyl_chat_options c;
        sibyl_chat_options_init(&c);
        c.max_new_tokens = options.max_new_tokens;
        c.think_budget = options.think_budget.value_or(-1);
        c.thinking = options.thinking ? 1 : 0;
        c.stop_strings = stops.data();
        c.n_stop_strings = stops.size();
        c.sampler = &c_sampler;
        c.reseed = options.seed.has_value() ? 1 : 0;
        c.seed = options.seed.value_or(0);
        sibyl_chat_result result{};
        result.struct_size = sizeof result;
        Status st = sibyl_session_chat(handle_.get(), c_msgs.data(), c_msgs.size(), &c,
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
        return reply;
    }

    /** chat() without streaming: the reply comes back whole. */
    Result<ChatReply> chat(const std::vector<ChatMessage>& messages, const ChatOptions& options = {}) {
        return chat(messages, options, [](Channel, std::string_view) { return false; });
    }

    /** Stop the chat running on this session (callable from any thread; see sibyl_session_cancel). */
    Error cancel() noexcept { return Error::from_status(sibyl_session_cancel(handle_.get())); }

    /** generate() without a per-token callback. */
    Result<std::vector<int32_t>> generate(TokenSpan prompt, const GenerateOptions& options = {}) {
        return generate(prompt, options, [](int32_t) { return false; });
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
        return info;
    }

    /** Token ids of UTF-8 text, as the model's tokenizer encodes it (no special tokens added). */
    Result<std::vector<int32_t>> tokenize(std::string_view text) const {
        return detail::fill_buffer<int32_t>([&](int32_t* out, size_t capacity, size_t* n) {
            return sibyl_model_tokenize(handle_.get(), text.data(), text.size(), out, capacity, n);
        });
    }

    /** UTF-8 text of token ids. */
    Result<std::string> detokenize(TokenSpan tokens) const {
        auto bytes = detail::fill_buffer<char>([&](char* out, size_t capacity, size_t* n) {
            return sibyl_model_detokenize(handle_.get(), tokens.data(), tokens.size(), out, capacity, n);
        });
        if (!bytes) return bytes.error();
        return std::string(bytes->data(), bytes->size());
    }

    /** The prompt text of a conversation under the model's chat template. */
    Result<std::string> render_chat(const std::vector<ChatMessage>& messages, bool add_generation_prompt = true) const {
        const std::vector<sibyl_chat_message> c_msgs = detail::c_messages(messages);
        auto bytes = detail::fill_buffer<char>([&](char* out, size_t capacity, size_t* n) {
            return sibyl_model_render_chat(handle_.get(), c_msgs.data(), c_msgs.size(), add_generation_prompt ? 1 : 0,
                                           out, capacity, n);
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

private:
    std::unique_ptr<sibyl_model, Deleter> handle_;
};

}  // namespace sdk_v0
}  // namespace sibyl

#endif  // SIBYL_SIBYL_HPP
