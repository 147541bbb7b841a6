-- The part of sibyl.h (ABI 0.8) this binding uses, for ffi.cdef. Copied from the header:
-- names, types and field order must stay exactly as there, and sibyl/layout.lua checks every
-- struct defined below against the library's own sizeof/offsetof at load time. Struct bodies
-- hold no comments so layout.lua can read their field names from this text. Structs the binding
-- only passes as NULL (sibyl_vulkan_device, sibyl_request_options: events are always polled,
-- never delivered by callback) stay opaque.
return [[
typedef struct sibyl_model sibyl_model;
typedef struct sibyl_session sibyl_session;
typedef struct sibyl_request sibyl_request;
typedef struct sibyl_grammar sibyl_grammar;
typedef struct sibyl_vulkan_device sibyl_vulkan_device;
typedef struct sibyl_request_options sibyl_request_options;

typedef enum sibyl_status {
  SIBYL_OK = 0, SIBYL_ERR_INVALID_ARGUMENT = 1, SIBYL_ERR_STRUCT_SIZE = 2, SIBYL_ERR_IO = 3,
  SIBYL_ERR_FORMAT = 4, SIBYL_ERR_UNSUPPORTED = 5, SIBYL_ERR_OUT_OF_MEMORY = 6,
  SIBYL_ERR_INVALID_TOKEN = 7, SIBYL_ERR_CONTEXT_FULL = 8, SIBYL_ERR_MODEL_DESTROYED = 9,
  SIBYL_ERR_NO_LOGITS = 10, SIBYL_ERR_BACKEND = 11, SIBYL_ERR_INTERNAL = 12,
  SIBYL_ERR_BUFFER_TOO_SMALL = 13, SIBYL_ERR_BUSY = 14, SIBYL_STATUS_MAX_ENUM = 0x7fffffff
} sibyl_status;
typedef enum sibyl_backend_kind {
  SIBYL_BACKEND_AUTO = 0, SIBYL_BACKEND_CPU = 1, SIBYL_BACKEND_CUDA = 2, SIBYL_BACKEND_VULKAN = 3,
  SIBYL_BACKEND_MAX_ENUM = 0x7fffffff
} sibyl_backend_kind;
typedef enum sibyl_precision {
  SIBYL_PRECISION_FAST = 0, SIBYL_PRECISION_EXACT = 1, SIBYL_PRECISION_MAX_ENUM = 0x7fffffff
} sibyl_precision;
typedef enum sibyl_logits_mode {
  SIBYL_LOGITS_LAST = 0, SIBYL_LOGITS_ALL = 1, SIBYL_LOGITS_NONE = 2, SIBYL_LOGITS_MAX_ENUM = 0x7fffffff
} sibyl_logits_mode;
typedef enum sibyl_grammar_scope {
  SIBYL_GRAMMAR_ANSWER = 0, SIBYL_GRAMMAR_WHOLE = 1, SIBYL_GRAMMAR_SCOPE_MAX_ENUM = 0x7fffffff
} sibyl_grammar_scope;
typedef enum sibyl_tool_choice {
  SIBYL_TOOL_CHOICE_AUTO = 0, SIBYL_TOOL_CHOICE_NONE = 1, SIBYL_TOOL_CHOICE_REQUIRED = 2,
  SIBYL_TOOL_CHOICE_MAX_ENUM = 0x7fffffff
} sibyl_tool_choice;
typedef enum sibyl_channel {
  SIBYL_CHANNEL_REASONING = 0, SIBYL_CHANNEL_ANSWER = 1, SIBYL_CHANNEL_MAX_ENUM = 0x7fffffff
} sibyl_channel;
typedef enum sibyl_stop_reason {
  SIBYL_STOP_EOS = 0, SIBYL_STOP_MAX_TOKENS = 1, SIBYL_STOP_STRING = 2, SIBYL_STOP_CALLBACK = 3,
  SIBYL_STOP_CANCELLED = 4, SIBYL_STOP_ERROR = 5, SIBYL_STOP_MAX_ENUM = 0x7fffffff
} sibyl_stop_reason;
typedef enum sibyl_event_type {
  SIBYL_EVENT_NONE = 0, SIBYL_EVENT_TOKEN = 1, SIBYL_EVENT_TEXT = 2, SIBYL_EVENT_DONE = 3,
  SIBYL_EVENT_TOOL_CALL = 4, SIBYL_EVENT_MAX_ENUM = 0x7fffffff
} sibyl_event_type;

typedef int (*sibyl_tool_call_fn)(const char* name, size_t name_len, const char* arguments, size_t arguments_len,
                                  void* user_data);

typedef struct sibyl_model_options {
  uint32_t struct_size;
  sibyl_backend_kind backend;
  int32_t n_threads;
  int32_t device_index;
  uint64_t memory_budget;
  const sibyl_vulkan_device* vulkan_device;
  uint64_t kv_cache_bytes;
  uint32_t kv_page_tokens;
  int32_t worker_threads;
  int32_t worker_nice;
  uint64_t worker_cpu_mask;
  uint32_t step_tokens;
  sibyl_precision precision;
  int32_t mtp;
  uint32_t mtp_max_batch;
} sibyl_model_options;

typedef struct sibyl_model_info {
  uint32_t struct_size;
  const char* architecture;
  const char* backend;
  int32_t vocab_size;
  int32_t hidden_size;
  int32_t n_layers;
  int32_t n_dense_layers;
  int32_t n_heads;
  int32_t q_lora_rank;
  int32_t kv_lora_rank;
  int32_t qk_rope_head_dim;
  int32_t n_routed_experts;
  int32_t n_shared_experts;
  int32_t n_experts_per_token;
  int32_t max_position_embeddings;
  int32_t bos_token_id;
  int32_t eos_token_id;
  uint64_t n_parameters;
  uint64_t kv_bytes_per_token;
  uint64_t kv_cache_bytes;
  uint32_t kv_page_tokens;
  int32_t worker_threads;
  uint64_t kv_cache_bytes_used;
  sibyl_precision precision;
  const char* cpu_simd;
  uint64_t decode_weight_bytes;
  int32_t mtp_layers;
  int32_t mtp;
} sibyl_model_info;

typedef struct sibyl_session_options {
  uint32_t struct_size;
  uint32_t max_context;
  uint64_t seed;
} sibyl_session_options;

typedef struct sibyl_logit_bias {
  int32_t token;
  float bias;
} sibyl_logit_bias;

typedef struct sibyl_sampler_options {
  uint32_t struct_size;
  float temperature;
  int32_t top_k;
  float top_p;
  float min_p;
  float repetition_penalty;
  int32_t repetition_last_n;
  const sibyl_logit_bias* logit_bias;
  size_t n_logit_bias;
} sibyl_sampler_options;

typedef struct sibyl_generate_options {
  uint32_t struct_size;
  uint32_t max_new_tokens;
  int32_t stop_at_eos;
  int32_t reseed;
  uint64_t seed;
  const sibyl_sampler_options* sampler;
  const sibyl_grammar* grammar;
} sibyl_generate_options;

typedef struct sibyl_chat_message {
  const char* role;
  const char* content;
  size_t content_len;
} sibyl_chat_message;

typedef struct sibyl_tool {
  const char* name;
  const char* description;
  const char* parameters;
} sibyl_tool;

typedef struct sibyl_tool_call {
  size_t message;
  const char* name;
  const char* arguments;
} sibyl_tool_call;

typedef struct sibyl_chat_options {
  uint32_t struct_size;
  uint32_t max_new_tokens;
  int32_t think_budget;
  int32_t thinking;
  const char* const* stop_strings;
  size_t n_stop_strings;
  const sibyl_sampler_options* sampler;
  int32_t reseed;
  uint64_t seed;
  const int32_t* trusted;
  const sibyl_grammar* grammar;
  sibyl_grammar_scope grammar_scope;
  const sibyl_tool* tools;
  size_t n_tools;
  sibyl_tool_choice tool_choice;
  const char* tool_name;
  const sibyl_tool_call* tool_calls;
  size_t n_tool_calls;
  sibyl_tool_call_fn on_tool_call;
} sibyl_chat_options;

typedef struct sibyl_chat_result {
  uint32_t struct_size;
  sibyl_stop_reason stop_reason;
  uint32_t prompt_tokens;
  uint32_t reused_tokens;
  uint32_t reasoning_tokens;
  uint32_t answer_tokens;
  uint32_t generated_tokens;
  uint32_t reserved;
  uint64_t first_token_us;
  uint64_t total_us;
  uint32_t drafted_tokens;
  uint32_t accepted_drafts;
  uint32_t tool_calls;
  uint32_t reserved2;
} sibyl_chat_result;

typedef struct sibyl_event {
  uint32_t struct_size;
  sibyl_event_type type;
  int32_t token;
  sibyl_channel channel;
  const char* text;
  size_t text_len;
  sibyl_stop_reason stop_reason;
  sibyl_status status;
  const char* name;
  size_t name_len;
} sibyl_event;

typedef struct sibyl_step_report {
  uint32_t struct_size;
  uint32_t rows;
  uint32_t sequences;
  uint32_t pending;
  uint64_t elapsed_us;
  int32_t overrun;
} sibyl_step_report;

uint32_t sibyl_abi_version(void);
const char* sibyl_version_string(void);
const char* sibyl_status_string(sibyl_status status);
const char* sibyl_last_error_message(void);

size_t sibyl_struct_size(const char* name);
size_t sibyl_struct_offset(const char* name, const char* field);
const char* sibyl_struct_name(size_t index);
const char* sibyl_struct_field(const char* name, size_t index);

void sibyl_model_options_init(sibyl_model_options* options);
sibyl_status sibyl_model_load(const char* path, const sibyl_model_options* options, sibyl_model** out_model);
sibyl_status sibyl_default_model_path(char* out, size_t capacity, size_t* out_len);
void sibyl_model_destroy(sibyl_model* model);
sibyl_status sibyl_model_get_info(const sibyl_model* model, sibyl_model_info* info);

void sibyl_session_options_init(sibyl_session_options* options);
sibyl_status sibyl_session_create(sibyl_model* model, const sibyl_session_options* options,
                                  sibyl_session** out_session);
void sibyl_session_destroy(sibyl_session* session);
sibyl_status sibyl_session_fork(sibyl_session* session, sibyl_session** out_session);
sibyl_status sibyl_session_append(sibyl_session* session, const int32_t* tokens, size_t n_tokens,
                                  sibyl_logits_mode mode);
sibyl_status sibyl_session_position(const sibyl_session* session, size_t* out_position);
sibyl_status sibyl_session_save_state(sibyl_session* session, void* out, size_t capacity, size_t* out_size);
sibyl_status sibyl_session_load_state(sibyl_session* session, const void* data, size_t size);
sibyl_status sibyl_session_rewind(sibyl_session* session, size_t position);
sibyl_status sibyl_session_reset(sibyl_session* session);
sibyl_status sibyl_session_set_seed(sibyl_session* session, uint64_t seed);
sibyl_status sibyl_session_cancel(sibyl_session* session);

sibyl_status sibyl_grammar_from_gbnf(const char* gbnf, const char* root, sibyl_grammar** out_grammar);
sibyl_status sibyl_grammar_from_json_schema(const char* schema, sibyl_grammar** out_grammar);
sibyl_status sibyl_json_schema_to_gbnf(const char* schema, char* out, size_t capacity, size_t* out_len);
void sibyl_grammar_destroy(sibyl_grammar* grammar);
sibyl_status sibyl_grammar_prepare(sibyl_grammar* grammar, const sibyl_model* model, sibyl_grammar_scope scope);

void sibyl_sampler_options_init(sibyl_sampler_options* options);
sibyl_status sibyl_session_sample(sibyl_session* session, const sibyl_sampler_options* options, int32_t* out_token);
void sibyl_generate_options_init(sibyl_generate_options* options);
void sibyl_chat_options_init(sibyl_chat_options* options);

sibyl_status sibyl_model_tokenize(const sibyl_model* model, const char* text, size_t text_len, int32_t* out_tokens,
                                  size_t capacity, size_t* out_n_tokens);
sibyl_status sibyl_model_detokenize(const sibyl_model* model, const int32_t* tokens, size_t n_tokens, char* out,
                                    size_t capacity, size_t* out_len);
sibyl_status sibyl_model_token_bytes(const sibyl_model* model, int32_t token, char* out, size_t capacity,
                                     size_t* out_len);
sibyl_status sibyl_model_render_chat_ex(const sibyl_model* model, const sibyl_chat_message* messages,
                                        size_t n_messages, const sibyl_chat_options* options,
                                        int add_generation_prompt, char* out, size_t capacity, size_t* out_len);

sibyl_status sibyl_session_submit_chat(sibyl_session* session, const sibyl_chat_message* messages, size_t n_messages,
                                       const sibyl_chat_options* options, const sibyl_request_options* request_options,
                                       sibyl_request** out_request);
sibyl_status sibyl_session_submit_generate(sibyl_session* session, const int32_t* prompt, size_t n_prompt,
                                           const sibyl_generate_options* options,
                                           const sibyl_request_options* request_options,
                                           sibyl_request** out_request);
sibyl_status sibyl_request_poll(sibyl_request* request, sibyl_event* event);
sibyl_status sibyl_request_wait(sibyl_request* request, int64_t timeout_us, int* out_ready);
sibyl_status sibyl_request_cancel(sibyl_request* request);
sibyl_status sibyl_request_result(sibyl_request* request, sibyl_chat_result* out_result);
void sibyl_request_destroy(sibyl_request* request);
sibyl_status sibyl_model_step(sibyl_model* model, uint64_t budget_us, sibyl_step_report* out_report);
]]
