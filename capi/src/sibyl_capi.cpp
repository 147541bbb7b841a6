// The C ABI: a thin translation layer from sibyl.h to the engine. No logic lives
// here beyond argument checks, option structs and turning exceptions into statuses.
#include "sibyl/sibyl.h"

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstring>
#include <new>
#include <string>

#include "failure.h"
#include "log.h"
#include "model.h"
#include "reasoning.h"
#include "session.h"

struct sibyl_model {
  std::shared_ptr<sibyl::engine::Model> model;
  std::string architecture;
};

struct sibyl_session {
  std::unique_ptr<sibyl::engine::Session> session;
  std::atomic<bool> cancel{false};  // set from any thread by sibyl_session_cancel
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

sibyl::engine::SamplerParams sampler_params(const sibyl_sampler_options* given) {
  sibyl_sampler_options o = read_options(given, sibyl_sampler_options_init, "sibyl_sampler_options");
  if (o.top_k < 0) fail(Errc::invalid_argument, "top_k must not be negative");
  if (!(o.top_p > 0.0f && o.top_p <= 1.0f)) fail(Errc::invalid_argument, "top_p must be in (0, 1]");
  if (!(o.min_p >= 0.0f && o.min_p <= 1.0f)) fail(Errc::invalid_argument, "min_p must be in [0, 1]");
  if (!(o.repetition_penalty > 0.0f)) fail(Errc::invalid_argument, "repetition_penalty must be positive");
  if (o.repetition_last_n < 0) fail(Errc::invalid_argument, "repetition_last_n must not be negative");
  if (o.temperature != o.temperature) fail(Errc::invalid_argument, "temperature is NaN");
  sibyl::engine::SamplerParams p;
  p.temperature = o.temperature;
  p.top_k = o.top_k;
  p.top_p = o.top_p;
  p.min_p = o.min_p;
  p.repetition_penalty = o.repetition_penalty;
  p.repetition_last_n = o.repetition_last_n;
  return p;
}

}  // namespace

extern "C" {

uint32_t sibyl_abi_version(void) { return SIBYL_ABI_VERSION; }
const char* sibyl_version_string(void) { return "0.1.0"; }

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
}

sibyl_status sibyl_model_load(const char* path, const sibyl_model_options* options, sibyl_model** out_model) {
  return guarded([&] {
    require(path, "path");
    require(out_model, "out_model");
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
    m->model = sibyl::engine::Model::load(path, lo);
    m->architecture = m->model->config().family == sibyl::engine::Family::deepseek_v2 ? "deepseek_v2" : "deepseek_v3";
    *out_model = m.release();
  });
}

void sibyl_model_destroy(sibyl_model* model) { delete model; }

sibyl_status sibyl_model_get_info(const sibyl_model* model, sibyl_model_info* info) {
  return guarded([&] {
    require(model, "model");
    require(info, "info");
    if (info->struct_size < sizeof(sibyl_model_info))
      fail(Errc::struct_size, "sibyl_model_info.struct_size is " + std::to_string(info->struct_size) +
                                  "; set it to sizeof(sibyl_model_info)");
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
    r.kv_bytes_per_token = static_cast<uint64_t>(c.kv_width() * c.n_layers) * sizeof(float);
    uint32_t keep = info->struct_size;
    std::memcpy(info, &r, sizeof r);
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
    s->session = std::make_unique<sibyl::engine::Session>(model->model, so);
    *out_session = s.release();
  });
}

void sibyl_session_destroy(sibyl_session* session) { delete session; }

sibyl_status sibyl_session_append(sibyl_session* session, const int32_t* tokens, size_t n_tokens,
                                  sibyl_logits_mode mode) {
  return guarded([&] {
    sibyl::engine::Session& s = live(session);
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
  return guarded([&] {
    sibyl::engine::Session& s = live(session);
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
  return guarded([&] {
    const sibyl::engine::Session& s = live(session);
    require(out_position, "out_position");
    *out_position = static_cast<size_t>(s.position());
  });
}

sibyl_status sibyl_session_rewind(sibyl_session* session, size_t position) {
  return guarded([&] {
    sibyl::engine::Session& s = live(session);
    if (position > static_cast<size_t>(INT64_MAX)) fail(Errc::invalid_argument, "position out of range");
    s.rewind(static_cast<int64_t>(position));
  });
}

sibyl_status sibyl_session_reset(sibyl_session* session) {
  return guarded([&] { live(session).reset(); });
}

sibyl_status sibyl_session_set_seed(sibyl_session* session, uint64_t seed) {
  return guarded([&] { live(session).set_seed(seed); });
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
  return guarded([&] {
    sibyl::engine::Session& s = live(session);
    require(out_token, "out_token");
    *out_token = s.sample(sampler_params(options));
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
    sibyl_generate_options o = read_options(options, sibyl_generate_options_init, "sibyl_generate_options");
    sibyl::engine::GenerateParams p;
    p.max_new_tokens = o.max_new_tokens;
    p.stop_at_eos = o.stop_at_eos != 0;
    p.reseed = o.reseed != 0;
    p.seed = o.seed;
    p.sampler = sampler_params(o.sampler);
    std::function<bool(int32_t)> cb;
    if (on_token) cb = [&](int32_t t) { return on_token(t, user_data) != 0; };
    s.generate(prompt, static_cast<int64_t>(n_prompt), p, cb, generated);
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
  sibyl::engine::ChatResult result;
  sibyl_status st = guarded([&] {
    if (out_result && out_result->struct_size < sizeof(sibyl_chat_result))
      fail(Errc::struct_size, "sibyl_chat_result.struct_size is " + std::to_string(out_result->struct_size) +
                                  "; set it to sizeof(sibyl_chat_result)");
    sibyl::engine::Session& s = live(session);
    sibyl_chat_options o = read_options(options, sibyl_chat_options_init, "sibyl_chat_options");
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
    p.sampler = sampler_params(o.sampler);
    p.reseed = o.reseed != 0;
    p.seed = o.seed;
    p.cancel = &session->cancel;
    std::shared_ptr<sibyl::engine::Model> model = s.model();
    auto sink = [&](sibyl::engine::Channel c, std::string_view piece) {
      return on_text && on_text(static_cast<sibyl_channel>(c), piece.data(), piece.size(), user_data) != 0;
    };
    result = sibyl::engine::run_chat(s, model->tokenizer(), model->chat_format(), chat_messages(messages, n_messages),
                                     p, sink);
  });
  if (session) session->cancel.store(false);  // a cancel request ends with the call it stopped
  if (out_result && out_result->struct_size >= sizeof(sibyl_chat_result)) {
    out_result->stop_reason = static_cast<sibyl_stop_reason>(result.stop);
    out_result->prompt_tokens = static_cast<uint32_t>(result.prompt_tokens);
    out_result->reused_tokens = static_cast<uint32_t>(result.reused_tokens);
    out_result->reasoning_tokens = static_cast<uint32_t>(result.reasoning_tokens);
    out_result->answer_tokens = static_cast<uint32_t>(result.answer_tokens);
  }
  return st;
}

sibyl_status sibyl_session_cancel(sibyl_session* session) {
  return guarded([&] {
    require(session, "session");
    session->cancel.store(true);
  });
}

}  // extern "C"
