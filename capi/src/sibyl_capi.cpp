// The C ABI: a thin translation layer from sibyl.h to the engine. No logic lives
// here beyond argument checks, option structs and turning exceptions into statuses.
#include "sibyl/sibyl.h"

#include <algorithm>
#include <cmath>
#include <atomic>
#include <cstddef>
#include <cstring>
#include <new>
#include <string>

#include "engine/model/default_model.h"
#include "engine/core/failure.h"
#include "engine/grammar/compiled_grammar.h"
#include "engine/grammar/gbnf.h"
#include "engine/grammar/json_schema.h"
#include "engine/core/log.h"
#include "engine/model/model.h"
#include "engine/chat/reasoning.h"
#include "engine/runtime/blocking.h"
#include "engine/runtime/scheduler.h"
#include "engine/model/session.h"

struct sibyl_model {
  std::shared_ptr<sibyl::engine::Model> model;
  std::string architecture;
};

struct sibyl_session {
  std::shared_ptr<sibyl::engine::Session> session;  // shared with the requests running on it
  std::mutex mutex;                                  // guards `current`
  std::shared_ptr<sibyl::engine::Request> current;   // what sibyl_session_cancel stops
  void set_current(std::shared_ptr<sibyl::engine::Request> r) {
    std::lock_guard lock(mutex);
    current = std::move(r);
  }
  void clear_current(const std::shared_ptr<sibyl::engine::Request>& r) {  // only if still r
    std::lock_guard lock(mutex);
    if (current == r) current.reset();
  }
};

struct sibyl_grammar {
  std::shared_ptr<sibyl::engine::CompiledGrammar> grammar;  // requests share it while they run
};

struct sibyl_request {
  std::shared_ptr<sibyl::engine::Request> request;
  sibyl::engine::Event last;  // the event the last poll returned (its text lives here)
};

namespace {

using sibyl::engine::Errc;
using sibyl::engine::fail;

static_assert(static_cast<int>(Errc::internal) == SIBYL_ERR_INTERNAL, "status codes must match");
static_assert(static_cast<int>(Errc::invalid_argument) == SIBYL_ERR_INVALID_ARGUMENT, "status codes must match");

thread_local std::string t_last_error;

sibyl_status record(sibyl_status status, const char* message) {
  try {
    t_last_error = message;
  } catch (...) {
    t_last_error.clear();
  }
  return status;
}

// Runs `body`, converting every exception into a status and the thread's last error.
template <class Body>
sibyl_status guarded(Body&& body) noexcept {
  try {
    body();
    return SIBYL_OK;
  } catch (const sibyl::engine::Failure& e) {
    return record(static_cast<sibyl_status>(e.code()), e.what());
  } catch (const std::bad_alloc&) {
    return record(SIBYL_ERR_OUT_OF_MEMORY, "out of memory");
  } catch (const std::exception& e) {
    return record(SIBYL_ERR_INTERNAL, e.what());
  } catch (...) {
    return record(SIBYL_ERR_INTERNAL, "unknown internal error");
  }
}

void require(const void* p, const char* what) {
  if (!p) fail(Errc::invalid_argument, std::string(what) + " is NULL");
}

// An input array may be NULL only when it is empty.
void require_array(const void* p, size_t n, const char* what, const char* count) {
  if (!p && n) fail(Errc::invalid_argument, std::string(what) + " is NULL but " + count + " is " + std::to_string(n));
}

// Copies the caller's options over the defaults, reading only the bytes it declared.
template <class T>
T read_options(const T* given, void (*init)(T*), const char* what, size_t oldest_size = sizeof(T)) {
  T out;
  init(&out);
  if (!given) return out;
  // An older caller's smaller struct: its fields are read, the newer ones keep their defaults.
  if (given->struct_size < oldest_size)
    fail(Errc::struct_size, std::string(what) + ".struct_size is " + std::to_string(given->struct_size) +
                                ", smaller than any known version (" + std::to_string(oldest_size) +
                                "); call " + what + "_init first");
  std::memcpy(&out, given, std::min<size_t>(given->struct_size, sizeof(T)));
  out.struct_size = sizeof(T);
  return out;
}

// The session behind a handle, checked to still have its model.
template <class Handle>
auto& live(Handle* s) {
  require(s, "session");
  s->session->ensure_model_alive();
  return *s->session;
}

// Runs body(session) with the session marked in use (SIBYL_ERR_BUSY when it already is).
template <class Handle, class Body>
sibyl_status with_session(Handle* handle, Body&& body) {
  return guarded([&] {
    auto& s = live(handle);
    sibyl::engine::Session::Use use(s);
    body(s);
  });
}

// The two-call output rule of sibyl.h: the size always, the data only when it fits.
template <class T>
void copy_out(const T* data, size_t n, T* out, size_t capacity, size_t* out_n, const char* what) {
  *out_n = n;
  if (n > capacity)
    fail(Errc::buffer_too_small, std::string("the ") + what + " need room for " + std::to_string(n) +
                                     " elements; capacity is " + std::to_string(capacity));
  if (n) {
    require(out, "out");
    std::copy(data, data + n, out);
  }
}

void copy_text_out(const std::string& text, char* out, size_t capacity, size_t* out_len) {
  copy_out(text.data(), text.size(), out, capacity, out_len, "text");
  if (out && capacity > text.size()) out[text.size()] = '\0';
}

std::string default_model_or_fail() {
  std::string searched;
  std::string dir = sibyl::engine::find_default_model(searched);
  if (dir.empty()) fail(Errc::io, "no default model found (searched " + searched + ")");
  return dir;
}

std::vector<sibyl::engine::ChatMessage> chat_messages(const sibyl_chat_message* messages, size_t n) {
  require_array(messages, n, "messages", "n_messages");
  std::vector<sibyl::engine::ChatMessage> out(n);
  for (size_t i = 0; i < n; ++i) {
    if (!messages[i].role) fail(Errc::invalid_argument, "messages[" + std::to_string(i) + "].role is NULL");
    if (!messages[i].content && messages[i].content_len)
      fail(Errc::invalid_argument, "messages[" + std::to_string(i) + "].content is NULL");
    out[i].role = messages[i].role;
    out[i].content.assign(messages[i].content ? messages[i].content : "", messages[i].content_len);
  }
  return out;
}

// The conversation and tools chat options describe: the history's calls joined to their
// messages, the tools compiled. `o` is read with read_options.
struct ChatInput {
  std::vector<sibyl::engine::ChatMessage> messages;
  std::shared_ptr<const sibyl::engine::ToolSet> tools;
};

ChatInput chat_input(const sibyl_chat_message* messages, size_t n, const sibyl_chat_options& o,
                     const sibyl::engine::Model& model) {
  ChatInput in{chat_messages(messages, n), nullptr};
  if (o.trusted)
    for (size_t i = 0; i < n; ++i) in.messages[i].trusted = o.trusted[i] != 0;
  require_array(o.tool_calls, o.n_tool_calls, "tool_calls", "n_tool_calls");
  for (size_t i = 0; i < o.n_tool_calls; ++i) {
    const sibyl_tool_call& c = o.tool_calls[i];
    const std::string at = "tool_calls[" + std::to_string(i) + "]";
    if (c.message >= n || in.messages[c.message].role != "assistant")
      fail(Errc::invalid_argument, at + ".message " + std::to_string(c.message) + " is not an assistant message");
    if (!c.name || !c.arguments) fail(Errc::invalid_argument, at + ": name and arguments are required");
    in.messages[c.message].tool_calls.push_back({"function", c.name, c.arguments});
  }
  require_array(o.tools, o.n_tools, "tools", "n_tools");
  if (o.tool_choice != SIBYL_TOOL_CHOICE_AUTO && o.tool_choice != SIBYL_TOOL_CHOICE_NONE &&
      o.tool_choice != SIBYL_TOOL_CHOICE_REQUIRED)
    fail(Errc::invalid_argument, "tool_choice " + std::to_string(o.tool_choice) + " is not a sibyl_tool_choice");
  if (o.n_tools == 0) {
    if (o.tool_choice != SIBYL_TOOL_CHOICE_AUTO || o.tool_name)
      fail(Errc::invalid_argument, "tool_choice and tool_name need tools");
    return in;
  }
  std::vector<sibyl::engine::ToolSpec> specs;
  for (size_t i = 0; i < o.n_tools; ++i) {
    const sibyl_tool& t = o.tools[i];
    if (!t.name) fail(Errc::invalid_argument, "tools[" + std::to_string(i) + "].name is NULL");
    specs.push_back({t.name, t.description ? t.description : "", t.parameters ? t.parameters : ""});
  }
  const auto choice = o.tool_choice == SIBYL_TOOL_CHOICE_NONE       ? sibyl::engine::ToolChoice::none
                      : o.tool_choice == SIBYL_TOOL_CHOICE_REQUIRED ? sibyl::engine::ToolChoice::required
                                                                    : sibyl::engine::ToolChoice::automatic;
  in.tools = model.tool_sets().get(std::move(specs), choice, o.tool_name ? o.tool_name : "");
  return in;
}

sibyl_chat_options chat_options(const sibyl_chat_options* given) {
  return read_options(given, sibyl_chat_options_init, "sibyl_chat_options",
                      offsetof(sibyl_chat_options, trusted));  // 0.1's size
}

// `vocab`: the model's vocabulary size, to check logit_bias ids (-1: not known here).
sibyl::engine::SamplerParams sampler_params(const sibyl_sampler_options* given, int64_t vocab) {
  sibyl_sampler_options o = read_options(given, sibyl_sampler_options_init, "sibyl_sampler_options",
                                         offsetof(sibyl_sampler_options, logit_bias));  // 0.1's size
  if (o.top_k < 0) fail(Errc::invalid_argument, "top_k must not be negative");
  if (!(o.top_p > 0.0f && o.top_p <= 1.0f)) fail(Errc::invalid_argument, "top_p must be in (0, 1]");
  if (!(o.min_p >= 0.0f && o.min_p <= 1.0f)) fail(Errc::invalid_argument, "min_p must be in [0, 1]");
  if (!(o.repetition_penalty > 0.0f)) fail(Errc::invalid_argument, "repetition_penalty must be positive");
  if (o.repetition_last_n < 0) fail(Errc::invalid_argument, "repetition_last_n must not be negative");
  if (!std::isfinite(o.temperature)) fail(Errc::invalid_argument, "temperature must be a finite number");
  sibyl::engine::SamplerParams p;
  p.temperature = o.temperature;
  p.top_k = o.top_k;
  p.top_p = o.top_p;
  p.min_p = o.min_p;
  p.repetition_penalty = o.repetition_penalty;
  p.repetition_last_n = o.repetition_last_n;
  require_array(o.logit_bias, o.n_logit_bias, "logit_bias", "n_logit_bias");
  for (size_t i = 0; i < o.n_logit_bias; ++i) {
    const sibyl_logit_bias& b = o.logit_bias[i];
    if (b.token < 0 || (vocab >= 0 && b.token >= vocab))
      fail(Errc::invalid_argument, "logit_bias[" + std::to_string(i) + "].token " + std::to_string(b.token) +
                                       " is outside the vocabulary [0, " + std::to_string(vocab) + ")");
    if (std::isnan(b.bias) || b.bias == INFINITY)
      fail(Errc::invalid_argument, "logit_bias[" + std::to_string(i) + "].bias must be finite or -INFINITY");
    p.logit_bias.emplace_back(b.token, b.bias);
  }
  return p;
}

constexpr size_t kChatResultV1 = offsetof(sibyl_chat_result, generated_tokens);
constexpr size_t kModelInfoV1 = offsetof(sibyl_model_info, kv_cache_bytes);

void check_result_size(const sibyl_chat_result* r) {
  if (r && r->struct_size < kChatResultV1)
    fail(Errc::struct_size, "sibyl_chat_result.struct_size is " + std::to_string(r->struct_size) +
                                ", smaller than any version of it; set it to sizeof(sibyl_chat_result)");
}

// Fills the fields within the caller's struct_size (older callers have a smaller struct).
void write_result(sibyl_chat_result* out, const sibyl::engine::RequestStats& st, sibyl::engine::StopReason stop) {
  if (!out || out->struct_size < kChatResultV1) return;
  sibyl_chat_result r{};
  r.stop_reason = static_cast<sibyl_stop_reason>(stop);
  r.prompt_tokens = static_cast<uint32_t>(st.prompt_tokens);
  r.reused_tokens = static_cast<uint32_t>(st.reused_tokens);
  r.reasoning_tokens = static_cast<uint32_t>(st.reasoning_tokens);
  r.answer_tokens = static_cast<uint32_t>(st.answer_tokens);
  r.generated_tokens = static_cast<uint32_t>(st.generated);
  r.drafted_tokens = static_cast<uint32_t>(st.drafted);
  r.accepted_drafts = static_cast<uint32_t>(st.draft_accepted);
  r.tool_calls = static_cast<uint32_t>(st.tool_calls);
  r.first_token_us = st.first_token_us > 0 ? static_cast<uint64_t>(st.first_token_us - st.submit_us) : 0;
  r.total_us = st.done_us > 0 ? static_cast<uint64_t>(st.done_us - st.submit_us) : 0;
  const uint32_t size = out->struct_size;
  std::memcpy(reinterpret_cast<char*>(out) + sizeof(uint32_t), reinterpret_cast<const char*>(&r) + sizeof(uint32_t),
              std::min<size_t>(size, sizeof r) - sizeof(uint32_t));
}

constexpr size_t kEventV1 = offsetof(sibyl_event, name);

void check_event_size(const sibyl_event* e) {
  if (e->struct_size < kEventV1)
    fail(Errc::struct_size, "sibyl_event.struct_size is " + std::to_string(e->struct_size) +
                                "; set it to sizeof(sibyl_event)");
}

void fill_c_event(const sibyl::engine::Event& e, sibyl_event& out);

// Writes the fields within the caller's struct_size (0.3 callers have a smaller struct).
void to_c_event(const sibyl::engine::Event& e, sibyl_event& out) {
  sibyl_event full{};
  fill_c_event(e, full);
  const uint32_t size = out.struct_size;
  std::memcpy(reinterpret_cast<char*>(&out) + sizeof(uint32_t), reinterpret_cast<const char*>(&full) + sizeof(uint32_t),
              std::min<size_t>(size, sizeof full) - sizeof(uint32_t));
}

void fill_c_event(const sibyl::engine::Event& e, sibyl_event& out) {
  out.token = -1;
  switch (e.kind) {
    case sibyl::engine::EventKind::token:
      out.type = SIBYL_EVENT_TOKEN;
      out.token = e.token;
      break;
    case sibyl::engine::EventKind::text:
      out.type = SIBYL_EVENT_TEXT;
      out.channel = static_cast<sibyl_channel>(e.channel);
      out.text = e.text.c_str();
      out.text_len = e.text.size();
      break;
    case sibyl::engine::EventKind::done:
      out.type = SIBYL_EVENT_DONE;
      out.stop_reason = static_cast<sibyl_stop_reason>(e.stop);
      out.status = static_cast<sibyl_status>(e.error);
      out.text = e.message.c_str();
      out.text_len = e.message.size();
      break;
    case sibyl::engine::EventKind::tool_call:
      out.type = SIBYL_EVENT_TOOL_CALL;
      out.name = e.name.c_str();
      out.name_len = e.name.size();
      out.text = e.text.c_str();
      out.text_len = e.text.size();
      break;
  }
}

sibyl::engine::GenerateJobParams generate_params(const int32_t* prompt, size_t n_prompt,
                                                 const sibyl_generate_options* options, int64_t vocab) {
  require_array(prompt, n_prompt, "prompt", "n_prompt");
  if (n_prompt > static_cast<size_t>(INT32_MAX))
    fail(Errc::invalid_argument, "n_prompt " + std::to_string(n_prompt) + " is larger than any context");
  sibyl_generate_options o = read_options(options, sibyl_generate_options_init, "sibyl_generate_options",
                                          offsetof(sibyl_generate_options, grammar));  // 0.1's size
  sibyl::engine::GenerateJobParams p;
  if (o.grammar) p.grammar = o.grammar->grammar->whole;
  p.max_new_tokens = o.max_new_tokens;
  p.stop_at_eos = o.stop_at_eos != 0;
  p.reseed = o.reseed != 0;
  p.seed = o.seed;
  p.sampler = sampler_params(o.sampler, vocab);
  p.prompt.assign(prompt, prompt + n_prompt);
  return p;
}

// Validates the conversation and options and builds the chat's job.
std::unique_ptr<sibyl::engine::Job> chat_job(sibyl::engine::Session& s, std::shared_ptr<void> keep,
                                             std::shared_ptr<sibyl::engine::Request> request,
                                             const sibyl::engine::Model& model, const sibyl_chat_message* messages,
                                             size_t n_messages, const sibyl_chat_options* options) {
  const sibyl_chat_options o = chat_options(options);
  ChatInput in = chat_input(messages, n_messages, o, model);
  const std::vector<sibyl::engine::ChatMessage>& conversation = in.messages;
  if (conversation.empty()) fail(Errc::invalid_argument, "the conversation is empty: it must end with a user turn");
  const std::string& last = conversation.back().role;
  if (last != "user" && last != "tool")
    fail(Errc::invalid_argument, "the conversation ends with a \"" + last +
                                     "\" turn; a chat continues a conversation that ends with a user (or tool) turn");
  if (o.think_budget < -1) fail(Errc::invalid_argument, "think_budget must be -1 (unlimited) or >= 0");
  if (!o.stop_strings && o.n_stop_strings) fail(Errc::invalid_argument, "stop_strings is NULL");
  sibyl::engine::ChatParams p;
  p.max_new_tokens = o.max_new_tokens;
  p.think_budget = o.think_budget;
  p.thinking = o.thinking != 0;
  for (size_t i = 0; i < o.n_stop_strings; ++i) {
    require(o.stop_strings[i], "a stop string");
    p.stop_strings.emplace_back(o.stop_strings[i]);
  }
  p.sampler = sampler_params(o.sampler, model.config().vocab_size);
  p.reseed = o.reseed != 0;
  p.seed = o.seed;
  if (o.grammar_scope != SIBYL_GRAMMAR_ANSWER && o.grammar_scope != SIBYL_GRAMMAR_WHOLE)
    fail(Errc::invalid_argument, "grammar_scope " + std::to_string(o.grammar_scope) + " is not a sibyl_grammar_scope");
  if (o.grammar) {
    p.grammar_whole = o.grammar_scope == SIBYL_GRAMMAR_WHOLE;
    p.grammar = p.grammar_whole ? o.grammar->grammar->whole : o.grammar->grammar->answer;
  }
  p.tools = std::move(in.tools);
  return sibyl::engine::make_chat_job(s, std::move(keep), std::move(request), model.tokenizer(),
                                      model.chat_format(), conversation, std::move(p));
}

std::unique_ptr<sibyl_request> new_request(const sibyl_request_options* given) {
  sibyl_request_options o = read_options(given, sibyl_request_options_init, "sibyl_request_options");
  auto handle = std::make_unique<sibyl_request>();
  handle->request = std::make_shared<sibyl::engine::Request>();
  if (o.on_event) {
    sibyl::engine::Request* r = handle->request.get();  // the notify runs inside r's own push
    handle->request->set_notify([r, fn = o.on_event, ud = o.user_data] {
      sibyl::engine::Event e;
      while (r->poll(e)) {
        sibyl_event c;
        c.struct_size = sizeof c;
        to_c_event(e, c);
        fn(&c, ud);
      }
    });
  }
  return handle;
}

void submit(sibyl_session& session, sibyl::engine::Model& model, std::unique_ptr<sibyl::engine::Job> job,
            const std::shared_ptr<sibyl::engine::Request>& request) {
  model.scheduler().submit(std::move(job));  // SIBYL_ERR_BUSY when the session is in use
  session.set_current(request);
}

}  // namespace

extern "C" {

uint32_t sibyl_abi_version(void) { return SIBYL_ABI_VERSION; }
#define SIBYL_TEXT(x) #x
#define SIBYL_NUMBER_TEXT(x) SIBYL_TEXT(x)
const char* sibyl_version_string(void) {
  return SIBYL_NUMBER_TEXT(SIBYL_ABI_VERSION_MAJOR) "." SIBYL_NUMBER_TEXT(SIBYL_ABI_VERSION_MINOR) "." SIBYL_NUMBER_TEXT(
      SIBYL_ABI_VERSION_PATCH);
}

const char* sibyl_status_string(sibyl_status status) {
  switch (status) {
    case SIBYL_OK: return "ok";
    case SIBYL_ERR_INVALID_ARGUMENT: return "invalid argument";
    case SIBYL_ERR_STRUCT_SIZE: return "options struct_size too small";
    case SIBYL_ERR_IO: return "file missing or unreadable";
    case SIBYL_ERR_FORMAT: return "corrupt or inconsistent file";
    case SIBYL_ERR_UNSUPPORTED: return "unsupported model or format";
    case SIBYL_ERR_OUT_OF_MEMORY: return "out of memory";
    case SIBYL_ERR_INVALID_TOKEN: return "token id outside the vocabulary";
    case SIBYL_ERR_CONTEXT_FULL: return "session context is full";
    case SIBYL_ERR_MODEL_DESTROYED: return "the session's model was destroyed";
    case SIBYL_ERR_NO_LOGITS: return "no logits available";
    case SIBYL_ERR_BACKEND: return "backend failure or backend not available";
    case SIBYL_ERR_INTERNAL: return "internal error";
    case SIBYL_ERR_BUFFER_TOO_SMALL: return "output buffer too small";
    case SIBYL_ERR_BUSY: return "the session is busy with another call or request";
    case SIBYL_STATUS_MAX_ENUM: break;
  }
  return "unknown status";
}

const char* sibyl_last_error_message(void) { return t_last_error.c_str(); }

void sibyl_set_log_callback(sibyl_log_fn fn, void* user_data, sibyl_log_level min_level) {
  using sibyl::engine::LogLevel;
  guarded([&] {  // only allocation can fail here; the previous sink then stays
    if (!fn) {
      sibyl::engine::set_log_sink(nullptr, LogLevel::warn);
      return;
    }
    int level = std::clamp(static_cast<int>(min_level), 0, static_cast<int>(LogLevel::off));
    sibyl::engine::set_log_sink(
        [fn, user_data](LogLevel l, const char* message) { fn(static_cast<sibyl_log_level>(l), message, user_data); },
        static_cast<LogLevel>(level));
  });
}

void sibyl_model_options_init(sibyl_model_options* o) {
  if (!o) return;
  std::memset(o, 0, sizeof *o);
  o->struct_size = sizeof *o;
  o->backend = SIBYL_BACKEND_AUTO;
  o->n_threads = 0;
  o->worker_threads = -1;
  o->worker_nice = 10;
  o->precision = SIBYL_PRECISION_FAST;
  o->mtp = 0;
}

sibyl_status sibyl_default_model_path(char* out, size_t capacity, size_t* out_len) {
  return guarded([&] {
    require(out_len, "out_len");
    copy_text_out(default_model_or_fail(), out, capacity, out_len);
  });
}

sibyl_status sibyl_model_load(const char* path, const sibyl_model_options* options, sibyl_model** out_model) {
  return guarded([&] {
    require(out_model, "out_model");
    const std::string model_path = path ? std::string(path) : default_model_or_fail();
    sibyl_model_options o = read_options(options, sibyl_model_options_init, "sibyl_model_options",
                                         offsetof(sibyl_model_options, device_index));  // 0.1's size
    if (o.backend < SIBYL_BACKEND_AUTO || o.backend > SIBYL_BACKEND_VULKAN)
      fail(Errc::invalid_argument, "unknown backend " + std::to_string(static_cast<int>(o.backend)));
    if (o.n_threads < 0) fail(Errc::invalid_argument, "n_threads must not be negative");
    if (o.device_index < 0) fail(Errc::invalid_argument, "device_index must not be negative");
    sibyl::engine::ModelLoadOptions lo;
    lo.backend = static_cast<sibyl::backend::BackendKind>(o.backend);
    lo.backend_options.n_threads = o.n_threads;
    lo.backend_options.device_index = o.device_index;
    lo.backend_options.memory_budget = o.memory_budget;
    if (o.kv_cache_bytes > static_cast<uint64_t>(INT64_MAX)) fail(Errc::invalid_argument, "kv_cache_bytes out of range");
    if (o.kv_page_tokens > 65536) fail(Errc::invalid_argument, "kv_page_tokens must be at most 65536");
    if (o.worker_threads < -1 || o.worker_threads > 64)
      fail(Errc::invalid_argument, "worker_threads must be -1 (default), 0 (the application steps) or 1..64");
    if (o.worker_nice < -20 || o.worker_nice > 19) fail(Errc::invalid_argument, "worker_nice must be in [-20, 19]");
    lo.kv_cache_bytes = static_cast<int64_t>(o.kv_cache_bytes);
    lo.kv_page_tokens = o.kv_page_tokens;
    lo.scheduler.workers = o.worker_threads < 0 ? 1 : o.worker_threads;
    lo.scheduler.worker_nice = o.worker_nice;
    for (int cpu = 0; cpu < 64; ++cpu)
      if (o.worker_cpu_mask >> cpu & 1) lo.scheduler.worker_cpus.push_back(cpu);
    if (o.step_tokens > 0) lo.scheduler.step_tokens = o.step_tokens;
    if (o.precision != SIBYL_PRECISION_FAST && o.precision != SIBYL_PRECISION_EXACT)
      fail(Errc::invalid_argument, "unknown precision " + std::to_string(static_cast<int>(o.precision)) +
                                       " (SIBYL_PRECISION_FAST or SIBYL_PRECISION_EXACT)");
    lo.backend_options.precision =
        o.precision == SIBYL_PRECISION_EXACT ? sibyl::backend::Precision::exact : sibyl::backend::Precision::fast;
    if (o.mtp != 0 && o.mtp != 1) fail(Errc::invalid_argument, "mtp must be 0 (off) or 1 (on when the model has MTP)");
    lo.mtp = o.mtp == 1;
    lo.scheduler.mtp = o.mtp == 1;
    if (o.mtp_max_batch > 0) lo.scheduler.mtp_max_batch = o.mtp_max_batch;
    sibyl::backend::VulkanDeviceImport vk;
    if (o.vulkan_device) {
      const sibyl_vulkan_device& d = *o.vulkan_device;
      if (d.struct_size < sizeof(sibyl_vulkan_device))
        fail(Errc::struct_size, "sibyl_vulkan_device.struct_size is " + std::to_string(d.struct_size) +
                                    "; set it to sizeof(sibyl_vulkan_device)");
      if (o.backend != SIBYL_BACKEND_VULKAN)
        fail(Errc::invalid_argument, "vulkan_device is set: choose backend SIBYL_BACKEND_VULKAN");
      if (!d.instance || !d.physical_device || !d.device || !d.queue)
        fail(Errc::invalid_argument, "sibyl_vulkan_device needs instance, physical_device, device and queue");
      if (!d.lock_queue != !d.unlock_queue)
        fail(Errc::invalid_argument, "sibyl_vulkan_device: set both lock_queue and unlock_queue, or neither");
      vk = {d.instance, d.physical_device, d.device, d.queue, d.queue_family_index, d.get_instance_proc_addr,
            d.lock_queue, d.unlock_queue, d.queue_user_data};
      lo.backend_options.vulkan_import = &vk;
    }
    auto m = std::make_unique<sibyl_model>();
    m->model = sibyl::engine::Model::load(model_path, lo);
    m->architecture = m->model->config().family == sibyl::engine::Family::deepseek_v2 ? "deepseek_v2" : "deepseek_v3";
    *out_model = m.release();
  });
}

void sibyl_model_destroy(sibyl_model* model) { delete model; }

sibyl_status sibyl_model_get_info(const sibyl_model* model, sibyl_model_info* info) {
  return guarded([&] {
    require(model, "model");
    require(info, "info");
    if (info->struct_size < kModelInfoV1)
      fail(Errc::struct_size, "sibyl_model_info.struct_size is " + std::to_string(info->struct_size) +
                                  ", smaller than any version of it; set it to sizeof(sibyl_model_info)");
    const sibyl::engine::ModelConfig& c = model->model->config();
    sibyl_model_info r{};
    r.struct_size = sizeof r;
    r.architecture = model->architecture.c_str();
    r.backend = model->model->backend()->name();
    r.vocab_size = static_cast<int32_t>(c.vocab_size);
    r.hidden_size = static_cast<int32_t>(c.hidden_size);
    r.n_layers = static_cast<int32_t>(c.n_layers);
    const auto& layers = model->model->weights().layers;
    r.n_dense_layers = static_cast<int32_t>(
        std::count_if(layers.begin(), layers.end(), [](const auto& l) { return !l.moe; }));
    r.n_heads = static_cast<int32_t>(c.n_heads);
    r.q_lora_rank = static_cast<int32_t>(c.q_lora_rank);
    r.kv_lora_rank = static_cast<int32_t>(c.kv_lora_rank);
    r.qk_rope_head_dim = static_cast<int32_t>(c.qk_rope_head_dim);
    r.n_routed_experts = static_cast<int32_t>(c.n_routed_experts);
    r.n_shared_experts = static_cast<int32_t>(c.n_shared_experts);
    r.n_experts_per_token = static_cast<int32_t>(c.n_experts_per_tok);
    r.max_position_embeddings = static_cast<int32_t>(c.max_position_embeddings);
    r.bos_token_id = c.bos_token_id;
    r.eos_token_id = c.eos_token_ids.empty() ? -1 : c.eos_token_ids.front();
    r.n_parameters = model->model->weights().n_parameters;
    r.kv_bytes_per_token =
        static_cast<uint64_t>(c.kv_width() * (c.n_layers + (model->model->has_mtp() ? 1 : 0))) * sizeof(float);
    sibyl::engine::KvPages& kv = model->model->kv_pages();
    r.kv_cache_bytes = static_cast<uint64_t>(kv.max_pages()) * kv.page_bytes();
    r.kv_page_tokens = static_cast<uint32_t>(kv.page_tokens());
    r.worker_threads = model->model->scheduler().options().workers;
    {
      std::lock_guard lock(model->model->step_mutex());
      r.kv_cache_bytes_used = static_cast<uint64_t>(kv.pages_in_use()) * kv.page_bytes();
    }
    const sibyl::backend::Backend& b = *model->model->backend();
    r.precision = b.precision() == sibyl::backend::Precision::exact ? SIBYL_PRECISION_EXACT : SIBYL_PRECISION_FAST;
    r.cpu_simd = b.cpu_simd();
    r.decode_weight_bytes = model->model->weights().decode_bytes(c.n_experts_per_tok);
    r.mtp_layers = static_cast<int32_t>(c.num_nextn_predict_layers);
    r.mtp = model->model->has_mtp() && model->model->scheduler().options().mtp ? 1 : 0;
    const uint32_t keep = info->struct_size;
    std::memcpy(info, &r, std::min<size_t>(keep, sizeof r));
    info->struct_size = keep;
  });
}

void sibyl_session_options_init(sibyl_session_options* o) {
  if (!o) return;
  std::memset(o, 0, sizeof *o);
  o->struct_size = sizeof *o;
}

sibyl_status sibyl_session_create(sibyl_model* model, const sibyl_session_options* options,
                                  sibyl_session** out_session) {
  return guarded([&] {
    require(model, "model");
    require(out_session, "out_session");
    sibyl_session_options o = read_options(options, sibyl_session_options_init, "sibyl_session_options");
    sibyl::engine::SessionOptions so;
    so.max_context = o.max_context;
    so.seed = o.seed;
    auto s = std::make_unique<sibyl_session>();
    s->session = std::make_shared<sibyl::engine::Session>(model->model, so);
    *out_session = s.release();
  });
}

void sibyl_session_destroy(sibyl_session* session) {
  if (!session) return;
  {
    std::lock_guard lock(session->mutex);
    if (session->current) session->current->cancel();
  }
  delete session;  // a request still running keeps the engine session until it ends
}

sibyl_status sibyl_session_fork(sibyl_session* session, sibyl_session** out_session) {
  return with_session(session, [&](sibyl::engine::Session& s) {
    require(out_session, "out_session");
    std::shared_ptr<sibyl::engine::Model> model = s.model();
    sibyl::engine::SessionOptions so;
    so.max_context = s.max_context();
    auto fork = std::make_unique<sibyl_session>();
    fork->session = std::make_shared<sibyl::engine::Session>(model, so);
    fork->session->fork_from(s);
    *out_session = fork.release();
  });
}

sibyl_status sibyl_session_append(sibyl_session* session, const int32_t* tokens, size_t n_tokens,
                                  sibyl_logits_mode mode) {
  return with_session(session, [&](sibyl::engine::Session& s) {
    if (n_tokens > static_cast<size_t>(INT32_MAX))
      fail(Errc::invalid_argument, "n_tokens " + std::to_string(n_tokens) + " is larger than any context");
    sibyl::engine::LogitsMode m;
    switch (mode) {
      case SIBYL_LOGITS_LAST: m = sibyl::engine::LogitsMode::last; break;
      case SIBYL_LOGITS_ALL: m = sibyl::engine::LogitsMode::all; break;
      case SIBYL_LOGITS_NONE: m = sibyl::engine::LogitsMode::none; break;
      default: fail(Errc::invalid_argument, "unknown logits mode " + std::to_string(static_cast<int>(mode)));
    }
    s.append(tokens, static_cast<int64_t>(n_tokens), m);
  });
}

sibyl_status sibyl_session_logits(sibyl_session* session, const float** out_logits, size_t* out_rows,
                                  size_t* out_vocab) {
  return with_session(session, [&](sibyl::engine::Session& s) {
    require(out_logits, "out_logits");
    require(out_rows, "out_rows");
    require(out_vocab, "out_vocab");
    if (s.logits_rows() == 0) fail(Errc::no_logits, "the last append kept no logits");
    *out_logits = s.logits().data();
    *out_rows = static_cast<size_t>(s.logits_rows());
    *out_vocab = static_cast<size_t>(s.vocab_size());
  });
}

sibyl_status sibyl_session_position(const sibyl_session* session, size_t* out_position) {
  return with_session(session, [&](const sibyl::engine::Session& s) {
    require(out_position, "out_position");
    *out_position = static_cast<size_t>(s.position());
  });
}

sibyl_status sibyl_session_mtp_stats(const sibyl_session* session, uint64_t* out_drafted, uint64_t* out_accepted) {
  return with_session(session, [&](const sibyl::engine::Session& s) {
    require(out_drafted, "out_drafted");
    require(out_accepted, "out_accepted");
    *out_drafted = s.drafted();
    *out_accepted = s.accepted();
  });
}

sibyl_status sibyl_session_rewind(sibyl_session* session, size_t position) {
  return with_session(session, [&](sibyl::engine::Session& s) {
    if (position > static_cast<size_t>(INT64_MAX)) fail(Errc::invalid_argument, "position out of range");
    s.rewind(static_cast<int64_t>(position));
  });
}

sibyl_status sibyl_session_save_state(sibyl_session* session, void* out, size_t capacity, size_t* out_size) {
  return with_session(session, [&](sibyl::engine::Session& s) {
    require(out_size, "out_size");
    const std::vector<uint8_t> state = s.save_state();
    copy_out(state.data(), state.size(), static_cast<uint8_t*>(out), capacity, out_size, "state bytes");
  });
}

sibyl_status sibyl_session_load_state(sibyl_session* session, const void* data, size_t size) {
  return with_session(session, [&](sibyl::engine::Session& s) {
    require_array(data, size, "data", "size");
    s.load_state(static_cast<const uint8_t*>(data), size);
  });
}

sibyl_status sibyl_session_reset(sibyl_session* session) {
  return with_session(session, [&](sibyl::engine::Session& s) { s.reset(); });
}

sibyl_status sibyl_session_set_seed(sibyl_session* session, uint64_t seed) {
  return with_session(session, [&](sibyl::engine::Session& s) { s.set_seed(seed); });
}

void sibyl_sampler_options_init(sibyl_sampler_options* o) {
  if (!o) return;
  std::memset(o, 0, sizeof *o);
  o->struct_size = sizeof *o;
  o->temperature = 0.0f;
  o->top_k = 0;
  o->top_p = 1.0f;
  o->min_p = 0.0f;
  o->repetition_penalty = 1.0f;
  o->repetition_last_n = 0;
}

sibyl_status sibyl_session_sample(sibyl_session* session, const sibyl_sampler_options* options, int32_t* out_token) {
  return with_session(session, [&](sibyl::engine::Session& s) {
    require(out_token, "out_token");
    *out_token = s.sample(sampler_params(options, s.vocab_size()));
  });
}

void sibyl_generate_options_init(sibyl_generate_options* o) {
  if (!o) return;
  std::memset(o, 0, sizeof *o);
  o->struct_size = sizeof *o;
  o->max_new_tokens = 256;
  o->stop_at_eos = 1;
  o->reseed = 0;
  o->seed = 0;
  o->sampler = nullptr;
}

sibyl_status sibyl_session_generate(sibyl_session* session, const int32_t* prompt, size_t n_prompt,
                                    const sibyl_generate_options* options, sibyl_token_fn on_token, void* user_data,
                                    size_t* out_n_generated) {
  int64_t generated = 0;
  sibyl_status st = guarded([&] {
    sibyl::engine::Session& s = live(session);
    sibyl::engine::GenerateJobParams p = generate_params(prompt, n_prompt, options, s.vocab_size());
    std::shared_ptr<sibyl::engine::Model> model = s.model();
    auto request = std::make_shared<sibyl::engine::Request>(/*hold=*/true);
    struct Clear {  // whatever happens, the session's cancel target stops being this call
      sibyl_session* session;
      const std::shared_ptr<sibyl::engine::Request>& request;
      ~Clear() { session->clear_current(request); }
    } clear{session, request};
    const sibyl::engine::Event end = sibyl::engine::run_blocking(
        model->scheduler(), sibyl::engine::make_generate_job(s, nullptr, request, std::move(p)), request, nullptr,
        [&](const sibyl::engine::Event& e) {
          if (e.kind != sibyl::engine::EventKind::token) return false;
          ++generated;
          return on_token && on_token(e.token, user_data) != 0;
        },
        [&] { session->set_current(request); });
    if (end.error) fail(static_cast<Errc>(end.error), end.message);
  });
  if (out_n_generated) *out_n_generated = static_cast<size_t>(generated);
  return st;
}

sibyl_status sibyl_model_tokenize(const sibyl_model* model, const char* text, size_t text_len, int32_t* out_tokens,
                                  size_t capacity, size_t* out_n_tokens) {
  return guarded([&] {
    require(model, "model");
    require(out_n_tokens, "out_n_tokens");
    require_array(text, text_len, "text", "text_len");
    std::vector<int32_t> ids = model->model->tokenizer().encode(std::string_view(text ? text : "", text_len));
    copy_out(ids.data(), ids.size(), out_tokens, capacity, out_n_tokens, "tokens");
  });
}

sibyl_status sibyl_model_detokenize(const sibyl_model* model, const int32_t* tokens, size_t n_tokens, char* out,
                                    size_t capacity, size_t* out_len) {
  return guarded([&] {
    require(model, "model");
    require(out_len, "out_len");
    require_array(tokens, n_tokens, "tokens", "n_tokens");
    std::string text = model->model->tokenizer().decode(std::vector<int32_t>(tokens, tokens + n_tokens));
    copy_text_out(text, out, capacity, out_len);
  });
}

sibyl_status sibyl_model_token_bytes(const sibyl_model* model, int32_t token, char* out, size_t capacity,
                                     size_t* out_len) {
  return guarded([&] {
    require(model, "model");
    require(out_len, "out_len");
    const sibyl::engine::Tokenizer& t = model->model->tokenizer();
    if (token < 0 || token >= model->model->config().vocab_size)
      fail(Errc::invalid_token, "token " + std::to_string(token) + " is outside the vocabulary [0, " +
                                    std::to_string(model->model->config().vocab_size) + ")");
    copy_text_out(t.token_bytes(token), out, capacity, out_len);
  });
}

sibyl_status sibyl_model_render_chat(const sibyl_model* model, const sibyl_chat_message* messages, size_t n_messages,
                                     int add_generation_prompt, char* out, size_t capacity, size_t* out_len) {
  return guarded([&] {
    require(model, "model");
    require(out_len, "out_len");
    std::string text =
        model->model->chat_format().render(chat_messages(messages, n_messages), add_generation_prompt != 0);
    copy_text_out(text, out, capacity, out_len);
  });
}

sibyl_status sibyl_model_render_chat_ex(const sibyl_model* model, const sibyl_chat_message* messages,
                                        size_t n_messages, const sibyl_chat_options* options,
                                        int add_generation_prompt, char* out, size_t capacity, size_t* out_len) {
  return guarded([&] {
    require(model, "model");
    require(out_len, "out_len");
    const sibyl::engine::ChatFormat& format = model->model->chat_format();
    ChatInput in = chat_input(messages, n_messages, chat_options(options), *model->model);
    if (in.tools) in.messages = sibyl::engine::with_tool_definitions(in.messages, *in.tools, format);
    copy_text_out(format.render(in.messages, add_generation_prompt != 0), out, capacity, out_len);
  });
}

sibyl_status sibyl_grammar_from_gbnf(const char* gbnf, const char* root, sibyl_grammar** out_grammar) {
  return guarded([&] {
    require(gbnf, "gbnf");
    require(out_grammar, "out_grammar");
    *out_grammar = nullptr;
    auto g = std::make_unique<sibyl_grammar>();
    g->grammar = std::make_shared<sibyl::engine::CompiledGrammar>(sibyl::engine::parse_gbnf(gbnf, root ? root : "root"));
    *out_grammar = g.release();
  });
}

sibyl_status sibyl_grammar_from_json_schema(const char* schema, sibyl_grammar** out_grammar) {
  return guarded([&] {
    require(schema, "schema");
    require(out_grammar, "out_grammar");
    *out_grammar = nullptr;
    auto g = std::make_unique<sibyl_grammar>();
    g->grammar = std::make_shared<sibyl::engine::CompiledGrammar>(sibyl::engine::parse_json_schema(schema));
    *out_grammar = g.release();
  });
}

sibyl_status sibyl_json_schema_to_gbnf(const char* schema, char* out, size_t capacity, size_t* out_len) {
  return guarded([&] {
    require(schema, "schema");
    require(out_len, "out_len");
    copy_text_out(sibyl::engine::json_schema_to_gbnf(schema), out, capacity, out_len);
  });
}

void sibyl_grammar_destroy(sibyl_grammar* grammar) { delete grammar; }

sibyl_status sibyl_grammar_prepare(sibyl_grammar* grammar, const sibyl_model* model, sibyl_grammar_scope scope) {
  return guarded([&] {
    require(grammar, "grammar");
    require(model, "model");
    if (scope != SIBYL_GRAMMAR_ANSWER && scope != SIBYL_GRAMMAR_WHOLE)
      fail(Errc::invalid_argument, "scope " + std::to_string(scope) + " is not a sibyl_grammar_scope");
    const auto& automaton = scope == SIBYL_GRAMMAR_WHOLE ? grammar->grammar->whole : grammar->grammar->answer;
    automaton->prepare(model->model->tokenizer().text_trie(), sibyl::engine::kPrepareStates);
  });
}

void sibyl_chat_options_init(sibyl_chat_options* o) {
  if (!o) return;
  std::memset(o, 0, sizeof *o);
  o->struct_size = sizeof *o;
  o->max_new_tokens = 1024;
  o->think_budget = -1;
  o->thinking = 1;
}

sibyl_status sibyl_session_chat(sibyl_session* session, const sibyl_chat_message* messages, size_t n_messages,
                                const sibyl_chat_options* options, sibyl_text_fn on_text, void* user_data,
                                sibyl_chat_result* out_result) {
  sibyl::engine::RequestStats stats;
  sibyl::engine::StopReason stop = sibyl::engine::StopReason::error;
  std::shared_ptr<sibyl::engine::Request> submitted_request;
  sibyl_status st = guarded([&] {
    check_result_size(out_result);
    sibyl::engine::Session& s = live(session);
    std::shared_ptr<sibyl::engine::Model> model = s.model();
    auto request = std::make_shared<sibyl::engine::Request>(/*hold=*/true);
    auto job = chat_job(s, nullptr, request, *model, messages, n_messages, options);
    const sibyl_chat_options o = chat_options(options);
    if (o.n_tools && o.tool_choice != SIBYL_TOOL_CHOICE_NONE && !o.on_tool_call)
      fail(Errc::invalid_argument, "tools without on_tool_call: the model's calls would be lost (set on_tool_call, "
                                   "or tool_choice SIBYL_TOOL_CHOICE_NONE)");
    const sibyl_tool_call_fn on_tool_call = o.on_tool_call;
    submitted_request = request;
    const sibyl::engine::Event end = sibyl::engine::run_blocking(
        model->scheduler(), std::move(job), request, nullptr,
        [&](const sibyl::engine::Event& e) {
          if (e.kind == sibyl::engine::EventKind::tool_call)
            return on_tool_call &&
                   on_tool_call(e.name.data(), e.name.size(), e.text.data(), e.text.size(), user_data) != 0;
          return e.kind == sibyl::engine::EventKind::text && on_text &&
                 on_text(static_cast<sibyl_channel>(e.channel), e.text.data(), e.text.size(), user_data) != 0;
        },
        [&] { session->set_current(request); });
    session->clear_current(request);
    stats = request->stats();
    stop = end.stop;
    if (end.error) fail(static_cast<Errc>(end.error), end.message);
  });
  if (session && submitted_request) {
    session->clear_current(submitted_request);
    if (st != SIBYL_OK) stats = submitted_request->stats();  // what it streamed and kept
  }
  write_result(out_result, stats, stop);
  return st;
}

sibyl_status sibyl_session_cancel(sibyl_session* session) {
  return guarded([&] {
    require(session, "session");
    std::lock_guard lock(session->mutex);
    if (session->current) session->current->cancel();
  });
}

void sibyl_request_options_init(sibyl_request_options* o) {
  if (!o) return;
  std::memset(o, 0, sizeof *o);
  o->struct_size = sizeof *o;
}

sibyl_status sibyl_session_submit_chat(sibyl_session* session, const sibyl_chat_message* messages, size_t n_messages,
                                       const sibyl_chat_options* options, const sibyl_request_options* request_options,
                                       sibyl_request** out_request) {
  return guarded([&] {
    require(out_request, "out_request");
    sibyl::engine::Session& s = live(session);
    std::shared_ptr<sibyl::engine::Model> model = s.model();
    auto handle = new_request(request_options);
    auto job = chat_job(s, session->session, handle->request, *model, messages, n_messages, options);
    submit(*session, *model, std::move(job), handle->request);
    *out_request = handle.release();
  });
}

sibyl_status sibyl_session_submit_generate(sibyl_session* session, const int32_t* prompt, size_t n_prompt,
                                           const sibyl_generate_options* options,
                                           const sibyl_request_options* request_options, sibyl_request** out_request) {
  return guarded([&] {
    require(out_request, "out_request");
    sibyl::engine::Session& s = live(session);
    std::shared_ptr<sibyl::engine::Model> model = s.model();
    auto handle = new_request(request_options);
    auto job = sibyl::engine::make_generate_job(s, session->session, handle->request,
                                                generate_params(prompt, n_prompt, options, s.vocab_size()));
    // Claimed before the checks read the session; the request keeps the claim.
    s.claim();
    try {
      s.check_feed(prompt, static_cast<int64_t>(n_prompt));
      model->scheduler().submit(std::move(job), /*claimed=*/true);
    } catch (...) {
      s.unclaim();
      throw;
    }
    session->set_current(handle->request);
    *out_request = handle.release();
  });
}

sibyl_status sibyl_request_poll(sibyl_request* request, sibyl_event* event) {
  return guarded([&] {
    require(request, "request");
    require(event, "event");
    check_event_size(event);
    if (!request->request->poll(request->last)) {
      event->type = SIBYL_EVENT_NONE;
      return;
    }
    to_c_event(request->last, *event);
  });
}

sibyl_status sibyl_request_wait(sibyl_request* request, int64_t timeout_us, int* out_ready) {
  return guarded([&] {
    require(request, "request");
    const bool ready = request->request->wait(timeout_us < 0 ? -1 : timeout_us);
    if (out_ready) *out_ready = ready ? 1 : 0;
  });
}

sibyl_status sibyl_request_cancel(sibyl_request* request) {
  return guarded([&] {
    require(request, "request");
    request->request->cancel();
  });
}

sibyl_status sibyl_request_result(sibyl_request* request, sibyl_chat_result* out_result) {
  return guarded([&] {
    require(request, "request");
    require(out_result, "out_result");
    check_result_size(out_result);
    write_result(out_result, request->request->stats(), request->request->stop_reason());
  });
}

void sibyl_request_destroy(sibyl_request* request) {
  if (!request) return;
  request->request->cancel();
  request->request->set_notify(nullptr);
  delete request;
}

sibyl_status sibyl_model_step(sibyl_model* model, uint64_t budget_us, sibyl_step_report* out_report) {
  return guarded([&] {
    require(model, "model");
    if (out_report && out_report->struct_size < sizeof(sibyl_step_report))
      fail(Errc::struct_size, "sibyl_step_report.struct_size is " + std::to_string(out_report->struct_size) +
                                  "; set it to sizeof(sibyl_step_report)");
    if (budget_us > static_cast<uint64_t>(INT64_MAX)) fail(Errc::invalid_argument, "budget_us out of range");
    const sibyl::engine::StepReport r = model->model->scheduler().step(static_cast<int64_t>(budget_us));
    if (!out_report) return;
    out_report->rows = static_cast<uint32_t>(r.rows);
    out_report->sequences = static_cast<uint32_t>(r.sequences);
    out_report->pending = static_cast<uint32_t>(r.pending);
    out_report->elapsed_us = static_cast<uint64_t>(r.elapsed_us);
    out_report->overrun = r.overrun ? 1 : 0;
  });
}

}  // extern "C"
