/*
 * sibyl.h — the stable C ABI of Sibyl, an embeddable inference engine for
 * DeepSeek-architecture (MLA + MoE) reasoning models.
 *
 * C99-compatible. Everything the library exports is declared here; nothing
 * else is visible. A complete program:
 *
 *     #include <sibyl/sibyl.h>
 *     #include <stdio.h>
 *
 *     static int on_token(int32_t token, void* user_data) {
 *         (void)user_data;
 *         printf("%d ", token);
 *         return 0;                          // non-zero would stop generation
 *     }
 *
 *     int main(void) {
 *         sibyl_model* model = NULL;
 *         if (sibyl_model_load("tests/data/tiny-v3", NULL, &model) != SIBYL_OK) {
 *             fprintf(stderr, "load failed: %s\n", sibyl_last_error_message());
 *             return 1;
 *         }
 *         sibyl_session* session = NULL;
 *         if (sibyl_session_create(model, NULL, &session) != SIBYL_OK) {
 *             fprintf(stderr, "%s\n", sibyl_last_error_message());
 *             sibyl_model_destroy(model);
 *             return 1;
 *         }
 *         const int32_t prompt[] = {0, 17, 42};
 *         sibyl_generate_options gen;
 *         sibyl_generate_options_init(&gen);
 *         gen.max_new_tokens = 16;
 *         size_t n = 0;
 *         sibyl_status st = sibyl_session_generate(session, prompt, 3, &gen, on_token, NULL, &n);
 *         if (st != SIBYL_OK) fprintf(stderr, "%s\n", sibyl_last_error_message());
 *         sibyl_session_destroy(session);
 *         sibyl_model_destroy(model);
 *         return st == SIBYL_OK ? 0 : 1;
 *     }
 *
 * Rules that hold for every function (docs/C_API.md explains them):
 *  - Fallible calls return sibyl_status (SIBYL_OK == 0); results go through
 *    trailing `out` pointers, which are written only on success.
 *  - After a call fails, sibyl_last_error_message() on the same thread says why.
 *  - Options structs begin with `struct_size`; fill them with the matching
 *    `_init` function first. Passing NULL for an options pointer means defaults.
 *    A struct_size smaller than version 1 of the struct is SIBYL_ERR_STRUCT_SIZE;
 *    a larger one (a caller built against a newer header) is accepted and the
 *    fields this library does not know are ignored.
 *  - Destroy functions accept NULL.
 *  - Strings are UTF-8. Returned strings and arrays are owned by the library and
 *    stay valid for as long as the text of the function says.
 *  - Threads: a sibyl_model may be used by any number of threads at once; a
 *    sibyl_session by one call at a time (different sessions of one model on
 *    different threads are fine, and their steps are batched together). A call
 *    on a session that is already in use — from another thread, from inside a
 *    callback of its running call, or while a request submitted on it is not
 *    finished — returns SIBYL_ERR_BUSY and changes nothing. Global functions
 *    are thread-safe.
 *  - Non-blocking use: sibyl_session_submit_chat / _generate return at once with
 *    a sibyl_request; the game reads its events (text per channel, tokens, the
 *    end) with sibyl_request_poll, e.g. once per frame. Steps run on a library
 *    thread (default) or in sibyl_model_step with a time budget (docs/C_API.md).
 *  - No C++ exception, abort() or exit() ever leaves the library. Allocation
 *    failure is SIBYL_ERR_OUT_OF_MEMORY.
 */
#ifndef SIBYL_SIBYL_H
#define SIBYL_SIBYL_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#  if defined(SIBYL_BUILDING_LIBRARY) && !defined(SIBYL_STATIC)
#    define SIBYL_API __declspec(dllexport)
#  elif !defined(SIBYL_STATIC)
#    define SIBYL_API __declspec(dllimport)
#  else
#    define SIBYL_API
#  endif
#elif defined(__GNUC__) || defined(__clang__)
#  define SIBYL_API __attribute__((visibility("default")))
#else
#  define SIBYL_API
#endif

/* Documentation markers for pointer arguments. */
#define SIBYL_NONNULL  /* must not be NULL: NULL gives SIBYL_ERR_INVALID_ARGUMENT */
#define SIBYL_NULLABLE /* may be NULL (meaning documented per argument) */

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- handles */

/** A loaded model: configuration and weights on a backend. Shareable across threads. */
typedef struct sibyl_model sibyl_model;
/** One conversation over a model: its tokens, latent KV cache, logits and RNG. */
typedef struct sibyl_session sibyl_session;
/** A submitted chat or generate request (since 0.3): its event queue, cancel and result. */
typedef struct sibyl_request sibyl_request;
/** A compiled grammar for constrained decoding (since 0.6). Shareable across threads and models. */
typedef struct sibyl_grammar sibyl_grammar;

/* ---------------------------------------------------------------- versions */

/** ABI version: major * 10000 + minor * 100 + patch. Minor versions only add. */
#define SIBYL_ABI_VERSION_MAJOR 0
#define SIBYL_ABI_VERSION_MINOR 8
#define SIBYL_ABI_VERSION_PATCH 0
#define SIBYL_ABI_VERSION \
    (SIBYL_ABI_VERSION_MAJOR * 10000 + SIBYL_ABI_VERSION_MINOR * 100 + SIBYL_ABI_VERSION_PATCH)

/** The ABI version the library was built with (compare with SIBYL_ABI_VERSION). */
SIBYL_API uint32_t sibyl_abi_version(void);
/** Human-readable library version, e.g. "0.8.0" (the ABI version as text). Static storage. */
SIBYL_API const char* sibyl_version_string(void);

/* ---------------------------------------------------------------- status */
/* Every enum ends in a *_MAX_ENUM value that only fixes its size at 32 bits, so
   any value from 0 to INT32_MAX a caller passes is one the library can check
   (values outside the listed ones give SIBYL_ERR_INVALID_ARGUMENT). */

/** Every fallible call returns one of these. Numbers are never reused. */
typedef enum sibyl_status {
    SIBYL_OK = 0,                      /* success */
    SIBYL_ERR_INVALID_ARGUMENT = 1,    /* a NULL handle/pointer or an out-of-range value */
    SIBYL_ERR_STRUCT_SIZE = 2,         /* options struct_size smaller than any known version */
    SIBYL_ERR_IO = 3,                  /* a file is missing or cannot be read / mapped */
    SIBYL_ERR_FORMAT = 4,              /* a file is corrupt, truncated or inconsistent */
    SIBYL_ERR_UNSUPPORTED = 5,         /* valid input Sibyl does not support (model type, dtype…) */
    SIBYL_ERR_OUT_OF_MEMORY = 6,       /* an allocation failed */
    SIBYL_ERR_INVALID_TOKEN = 7,       /* a token id outside [0, vocab_size) */
    SIBYL_ERR_CONTEXT_FULL = 8,        /* the session reached its max_context */
    SIBYL_ERR_MODEL_DESTROYED = 9,     /* the session's model was destroyed */
    SIBYL_ERR_NO_LOGITS = 10,          /* logits/sample asked for but none are available */
    SIBYL_ERR_BACKEND = 11,            /* the compute backend failed or is not built in */
    SIBYL_ERR_INTERNAL = 12,           /* a bug in Sibyl: please report it */
    SIBYL_ERR_BUFFER_TOO_SMALL = 13,   /* the output buffer is too small; the size needed was written */
    SIBYL_ERR_BUSY = 14,               /* since 0.3: the session is in use by another call or request */
    SIBYL_STATUS_MAX_ENUM = 0x7fffffff /* not a status: keeps the enum 32-bit wide */
} sibyl_status;

/** Short English name of a status, e.g. "invalid argument". Static storage; never NULL. */
SIBYL_API const char* sibyl_status_string(sibyl_status status);

/**
 * The message of the last failed call on this thread (thread-local storage).
 * Valid until the next failing call on the same thread. Never NULL; "" if no
 * call has failed on this thread.
 */
SIBYL_API const char* sibyl_last_error_message(void);

/* ---------------------------------------------------------------- logging */

typedef enum sibyl_log_level {
    SIBYL_LOG_DEBUG = 0,
    SIBYL_LOG_INFO = 1,
    SIBYL_LOG_WARN = 2,
    SIBYL_LOG_ERROR = 3,
    SIBYL_LOG_OFF = 4,
    SIBYL_LOG_MAX_ENUM = 0x7fffffff
} sibyl_log_level;

/** Receives one complete message (no trailing newline), UTF-8. May be called from any thread. */
typedef void (*sibyl_log_fn)(sibyl_log_level level, const char* message, void* user_data);

/**
 * Route the library's log messages of `min_level` and above to `fn`.
 * fn == NULL restores the default: warnings and errors to stderr (`min_level`
 * is then ignored). Thread-safe. The callback may run concurrently on several
 * threads and must not call sibyl_set_log_callback. A log call that started
 * before a replacement may still finish with the previous callback, so keep
 * the previous `user_data` valid until calls running on other threads return.
 */
SIBYL_API void sibyl_set_log_callback(SIBYL_NULLABLE sibyl_log_fn fn, SIBYL_NULLABLE void* user_data,
                                      sibyl_log_level min_level);

/* ---------------------------------------------------------------- model */

typedef enum sibyl_backend_kind {
    SIBYL_BACKEND_AUTO = 0,   /* the first usable of CUDA, Vulkan, CPU among those built in */
    SIBYL_BACKEND_CPU = 1,
    SIBYL_BACKEND_CUDA = 2,   /* SIBYL_ERR_BACKEND when not built in or no usable device */
    SIBYL_BACKEND_VULKAN = 3, /* SIBYL_ERR_BACKEND when not built in or no usable device */
    SIBYL_BACKEND_MAX_ENUM = 0x7fffffff
} sibyl_backend_kind;

/**
 * How matmuls compute (since 0.4). FAST (default): on the stored weight blocks against
 * activations rounded to 8-bit blocks (quantized weights) or bf16 (bf16 weights on CPUs
 * with AVX-512 BF16) — llama.cpp's approach; logits stay within the tolerance stated in
 * docs/PERFORMANCE.md of EXACT, and greedy outputs of the demo model are unchanged. EXACT:
 * float32 arithmetic on exactly decoded weights, matching the Hugging Face references. Only
 * the CPU backend has a fast path today; GPU backends compute as EXACT either way.
 */
typedef enum sibyl_precision {
    SIBYL_PRECISION_FAST = 0,
    SIBYL_PRECISION_EXACT = 1,
    SIBYL_PRECISION_MAX_ENUM = 0x7fffffff
} sibyl_precision;

/**
 * A Vulkan device the application owns, for Sibyl to share instead of creating its own
 * (SIBYL_BACKEND_VULKAN). The handles are the application's Vulkan handles cast to pointers,
 * so this header needs no vulkan.h. The application keeps them alive until the model is
 * destroyed. Requirements and synchronisation: docs/VULKAN.md.
 */
typedef struct sibyl_vulkan_device {
    uint32_t struct_size;            /* sizeof(sibyl_vulkan_device) */
    void* instance;                  /* VkInstance */
    void* physical_device;           /* VkPhysicalDevice */
    void* device;                    /* VkDevice */
    void* queue;                     /* VkQueue of a compute-capable queue family */
    uint32_t queue_family_index;
    void* get_instance_proc_addr;    /* PFN_vkGetInstanceProcAddr; NULL: the system loader's */
    /* Called around each Sibyl submission to `queue` (Vulkan queues need external
       synchronisation); NULL when the application never submits to that queue concurrently. */
    void (*lock_queue)(void* user_data);
    void (*unlock_queue)(void* user_data);
    void* queue_user_data;
} sibyl_vulkan_device;

typedef struct sibyl_model_options {
    uint32_t struct_size;       /* sizeof(sibyl_model_options) — set by _init */
    sibyl_backend_kind backend; /* default SIBYL_BACKEND_AUTO */
    int32_t n_threads;          /* CPU worker threads; 0 (default) = all hardware threads */
    /* since 0.2: */
    int32_t device_index;       /* GPU backends: which device (default 0) */
    uint64_t memory_budget;     /* GPU backends: device bytes Sibyl may use; 0 (default) = no limit.
                                   A model that does not fit is SIBYL_ERR_OUT_OF_MEMORY. */
    const sibyl_vulkan_device* vulkan_device; /* NULL (default): Sibyl creates its own device */
    /* since 0.3: */
    uint64_t kv_cache_bytes;    /* the latent cache pool all sessions share; 0 (default) = 1 GiB.
                                   Full pool: new work waits; work that can never fit fails */
    uint32_t kv_page_tokens;    /* tokens per cache page; 0 (default) = 64 */
    int32_t worker_threads;     /* library threads that run submitted requests; -1 (default) = 1;
                                   0 = none: the application calls sibyl_model_step */
    int32_t worker_nice;        /* Linux nice value of those threads and of the CPU backend's own
                                   threads; default 10 (below normal) */
    uint64_t worker_cpu_mask;   /* CPU affinity of those threads (bit i = CPU i); 0 (default) = any */
    uint32_t step_tokens;       /* tokens per batched step at most; 0 (default) = 256 */
    /* since 0.4: */
    sibyl_precision precision;  /* default SIBYL_PRECISION_FAST */
    /* since 0.5: */
    int32_t mtp;                /* speculative decoding with the checkpoint's multi-token-prediction
                                   layer (DeepSeek-V3/R1 carry one), CPU backend: 1 = on when the model
                                   has one — the MTP drafts the token after next, the model verifies
                                   it in the same step; output is unchanged (greedy: the same tokens;
                                   sampling: the same distribution). 0 (default) = off, the layer not
                                   loaded. Off by default until it is faster (docs/PERFORMANCE.md) */
    uint32_t mtp_max_batch;     /* drafting pauses while more requests than this decode at once
                                   (verifying then costs more than it saves); 0 (default) = 1 */
} sibyl_model_options;

/** Fill `options` with defaults (including struct_size). NULL is ignored. */
SIBYL_API void sibyl_model_options_init(SIBYL_NULLABLE sibyl_model_options* options);

/**
 * Load a model from `path` (NULL, since 0.8: the default model, see
 * sibyl_default_model_path): a Hugging Face directory (config.json plus
 * model.safetensors or model.safetensors.index.json with its shards; bf16,
 * fp16 or fp32 weights, or DeepSeek's FP8 release format: float8_e4m3fn
 * weights with float32 per-block `weight_scale_inv`, kept as FP8 in memory),
 * a GGUF file (llama.cpp's deepseek2 files: F32/F16/BF16/Q8_0/Q5_0/Q4_K/Q6_K,
 * tokenizer and chat template from its metadata) or a .sibyl pack (written by
 * sibyl-convert). Files are memory-mapped and validated before use
 * (header, dtypes, shapes against the config, offsets inside the file,
 * missing/extra tensors named in the error); see docs/MODEL_FILES.md.
 *
 * Ownership: on success *out_model is a new model the caller must pass to
 * sibyl_model_destroy. `options` may be NULL (defaults); it is not retained.
 * Thread-safety: any thread; loads of different models may run concurrently.
 */
SIBYL_API sibyl_status sibyl_model_load(SIBYL_NULLABLE const char* path,
                                        SIBYL_NULLABLE const sibyl_model_options* options,
                                        SIBYL_NONNULL sibyl_model** out_model);

/**
 * The directory of the default model (since 0.8): the embedded tiny-reasoner that
 * `cmake --install` puts under <prefix>/share/sibyl/models. Searched in order:
 * $SIBYL_DEFAULT_MODEL (when set, only there); <directory of libsibyl.so>/../share/sibyl/models/
 * tiny-reasoner (for a program linking libsibyl.a: from its own directory, <prefix>/bin) — so a
 * moved prefix keeps working; the source tree the library was built from. SIBYL_ERR_IO when none
 * holds a model, the message naming the places searched. Text out as sibyl_model_render_chat.
 */
SIBYL_API sibyl_status sibyl_default_model_path(SIBYL_NULLABLE char* out, size_t capacity,
                                                SIBYL_NONNULL size_t* out_len);

/**
 * Destroy a model. NULL is a no-op. Sessions created from it stay valid handles
 * that must still be destroyed, but every other call on them returns
 * SIBYL_ERR_MODEL_DESTROYED; its unfinished requests end with that status (their
 * handles stay valid). Must not race with calls on the same model handle (calls
 * already running on its sessions finish safely first). May be called from a
 * request's on_event callback: the model is then finished on another thread once
 * the running step is over.
 */
SIBYL_API void sibyl_model_destroy(SIBYL_NULLABLE sibyl_model* model);

/**
 * What a loaded model is. Output struct: set struct_size = sizeof(sibyl_model_info)
 * first; smaller than version 0.1 of the struct (up to kv_bytes_per_token) is
 * SIBYL_ERR_STRUCT_SIZE. The library fills the fields it knows within struct_size
 * and leaves struct_size as the caller set it, so callers built against any
 * earlier header keep working.
 */
typedef struct sibyl_model_info {
    uint32_t struct_size;           /* in: sizeof(sibyl_model_info) */
    const char* architecture;       /* "deepseek_v2" or "deepseek_v3"; owned by the model */
    const char* backend;            /* backend name, e.g. "cpu"; owned by the model */
    int32_t vocab_size;
    int32_t hidden_size;
    int32_t n_layers;               /* num_hidden_layers (MTP layers not counted) */
    int32_t n_dense_layers;         /* layers with a dense MLP instead of MoE */
    int32_t n_heads;
    int32_t q_lora_rank;            /* 0 when q is full rank (V2-Lite) */
    int32_t kv_lora_rank;
    int32_t qk_rope_head_dim;
    int32_t n_routed_experts;
    int32_t n_shared_experts;
    int32_t n_experts_per_token;
    int32_t max_position_embeddings;
    int32_t bos_token_id;           /* -1 when none */
    int32_t eos_token_id;           /* first end-of-sequence id, -1 when none */
    uint64_t n_parameters;          /* stored parameters that are used */
    uint64_t kv_bytes_per_token;    /* latent KV cache bytes per token, all layers (+ the MTP layer's
                                       when mtp is on) */
    /* since 0.3: */
    uint64_t kv_cache_bytes;        /* the cache pool's size (whole pages) */
    uint32_t kv_page_tokens;        /* tokens per cache page */
    int32_t worker_threads;         /* library threads running submitted requests */
    uint64_t kv_cache_bytes_used;   /* pages sessions hold now (shared pages once); cached
                                       prefix pages nobody holds are free to reuse and not
                                       counted. Reading it waits for a running step */
    /* since 0.4: */
    sibyl_precision precision;      /* how the model's matmuls compute */
    const char* cpu_simd;           /* CPU backend: the widest instruction set its kernels use
                                       ("avx512_bf16", "avx512_vnni", "avx512", "avx2",
                                       "portable"); "" for other backends. Owned by the library */
    uint64_t decode_weight_bytes;   /* weight bytes one decoded token reads (dense tensors, the
                                       shared and n_experts_per_token average routed experts):
                                       decode's memory-bandwidth ceiling is bandwidth ÷ this */
    /* since 0.5: */
    int32_t mtp_layers;             /* multi-token-prediction layers the checkpoint carries */
    int32_t mtp;                    /* 1 when speculative decoding with the first one is on */
} sibyl_model_info;

/**
 * Describe `model`. Fields beyond info->struct_size are not written.
 * Strings are owned by the model and live as long as it does. Thread-safe.
 */
SIBYL_API sibyl_status sibyl_model_get_info(SIBYL_NONNULL const sibyl_model* model,
                                            SIBYL_NONNULL sibyl_model_info* info);

/* ---------------------------------------------------------------- session */

typedef struct sibyl_session_options {
    uint32_t struct_size; /* sizeof(sibyl_session_options) — set by _init */
    uint32_t max_context; /* max tokens in the session; 0 (default) = the model's max_position_embeddings */
    uint64_t seed;        /* seed of the session's sampling RNG; default 0 */
} sibyl_session_options;

SIBYL_API void sibyl_session_options_init(SIBYL_NULLABLE sibyl_session_options* options);

/**
 * Create an empty session on `model`. Its cache pages come from the model's pool
 * on demand, up to max_context tokens (at most max_position_embeddings, else
 * SIBYL_ERR_INVALID_ARGUMENT). Ownership: destroy with sibyl_session_destroy.
 * Thread-safety: any thread, concurrently with other calls on the model.
 */
SIBYL_API sibyl_status sibyl_session_create(SIBYL_NONNULL sibyl_model* model,
                                            SIBYL_NULLABLE const sibyl_session_options* options,
                                            SIBYL_NONNULL sibyl_session** out_session);

/**
 * Destroy a session and give its cache pages back. NULL is a no-op. Works after the
 * model was destroyed. A request still running on it is cancelled; its sibyl_request
 * handle stays valid (and must still be destroyed).
 */
SIBYL_API void sibyl_session_destroy(SIBYL_NULLABLE sibyl_session* session);

/**
 * A new session continuing from `session`: same tokens, logits and RNG state. Costs
 * page references, not copies: the pages are shared until one of the two writes to a
 * shared page (copy-on-write). Since 0.3.
 */
SIBYL_API sibyl_status sibyl_session_fork(SIBYL_NONNULL sibyl_session* session,
                                          SIBYL_NONNULL sibyl_session** out_session);

/** Which logits an append keeps. */
typedef enum sibyl_logits_mode {
    SIBYL_LOGITS_LAST = 0, /* the last appended position only (what sampling needs) */
    SIBYL_LOGITS_ALL = 1,  /* every appended position */
    SIBYL_LOGITS_NONE = 2, /* none (e.g. a prompt chunk that is followed by more) */
    SIBYL_LOGITS_MAX_ENUM = 0x7fffffff
} sibyl_logits_mode;

/**
 * Run the model over `n_tokens` more tokens at the end of the session (one
 * forward step; n_tokens may be 1 or thousands). On failure the session is
 * unchanged. n_tokens == 0 is allowed and changes nothing.
 * Errors: SIBYL_ERR_INVALID_TOKEN, SIBYL_ERR_CONTEXT_FULL, SIBYL_ERR_OUT_OF_MEMORY.
 * Thread-safety: one thread at a time per session.
 */
SIBYL_API sibyl_status sibyl_session_append(SIBYL_NONNULL sibyl_session* session,
                                            SIBYL_NULLABLE const int32_t* tokens, size_t n_tokens,
                                            sibyl_logits_mode mode);

/**
 * The logits kept by the last append: `*out_rows` rows of `*out_vocab` floats,
 * row-major, row i for the i-th kept position. The array is owned by the
 * session and valid until the next call that changes the session (append,
 * generate, rewind, reset, destroy). SIBYL_ERR_NO_LOGITS if none are kept.
 */
SIBYL_API sibyl_status sibyl_session_logits(SIBYL_NONNULL sibyl_session* session,
                                            SIBYL_NONNULL const float** out_logits,
                                            SIBYL_NONNULL size_t* out_rows,
                                            SIBYL_NONNULL size_t* out_vocab);

/** Number of tokens in the session's context. */
SIBYL_API sibyl_status sibyl_session_position(SIBYL_NONNULL const sibyl_session* session,
                                              SIBYL_NONNULL size_t* out_position);

/**
 * Speculative decoding on this session so far (since 0.5): MTP drafts verified, and of
 * them those accepted (each saves the model one step). Zero on models without MTP.
 */
SIBYL_API sibyl_status sibyl_session_mtp_stats(SIBYL_NONNULL const sibyl_session* session,
                                               SIBYL_NONNULL uint64_t* out_drafted,
                                               SIBYL_NONNULL uint64_t* out_accepted);

/**
 * The session's state as bytes (since 0.3): its tokens, kept logits, RNG and the latent
 * cache rows it uses (docs/C_API.md gives the bytes per token), versioned, checksummed
 * and tied to the model by a fingerprint. Two-call rule: the size is always written to
 * *out_size; with capacity too small the call returns SIBYL_ERR_BUFFER_TOO_SMALL.
 */
SIBYL_API sibyl_status sibyl_session_save_state(SIBYL_NONNULL sibyl_session* session, SIBYL_NULLABLE void* out,
                                                size_t capacity, SIBYL_NONNULL size_t* out_size);

/**
 * Replace the session's contents by a saved state (from this or another process, same
 * model file): it continues exactly where the saved session was, without re-running
 * its prompt. A truncated, corrupt or foreign blob is SIBYL_ERR_FORMAT, and a state
 * whose tokens exceed this session's max_context too; on any error the session is
 * unchanged. Since 0.3.
 */
SIBYL_API sibyl_status sibyl_session_load_state(SIBYL_NONNULL sibyl_session* session, SIBYL_NULLABLE const void* data,
                                                size_t size);

/**
 * Calls that touch the session's cache (append, rewind, reset, fork, save/load state,
 * destroy) wait for a step of the model that is running (up to one step's time): from a
 * frame loop, prefer submitting requests, whose jobs do the same work on the worker.
 *
 * Forget every token from `position` on (0 <= position <= current position);
 * the cache keeps the rest and gives the pages past it back to the pool. Logits
 * are dropped: append at least one token before sampling again.
 */
SIBYL_API sibyl_status sibyl_session_rewind(SIBYL_NONNULL sibyl_session* session, size_t position);

/** Empty the session and re-seed its RNG with the seed it was created with. */
SIBYL_API sibyl_status sibyl_session_reset(SIBYL_NONNULL sibyl_session* session);

/** Re-seed the session's sampling RNG. */
SIBYL_API sibyl_status sibyl_session_set_seed(SIBYL_NONNULL sibyl_session* session, uint64_t seed);

/* ---------------------------------------------------------------- structured output */

/**
 * Grammars for constrained decoding (since 0.6; docs/STRUCTURED_OUTPUT.md). A grammar
 * is compiled once and used by any number of chats and generate calls, on any models,
 * from any threads: a game compiles its action schema at start-up and every NPC's
 * answers follow it. The token masks it computes are kept in it per vocabulary, so a
 * grammar in use gets cheaper. While constrained, the sampler never picks a token the
 * grammar rejects, whatever the temperature, and end-of-sequence comes only where the
 * grammar accepts the text so far.
 *
 * Ownership: *out_grammar is a new grammar for sibyl_grammar_destroy. Requests hold on
 * to what they use, so it may be destroyed while they run.
 */

/**
 * From GBNF text (llama.cpp's grammar format), NUL-terminated UTF-8; `root` names the start
 * rule, NULL = "root". Errors: SIBYL_ERR_INVALID_ARGUMENT naming the line and column, an
 * undefined rule, or a rule that repeats without reading (left recursion).
 */
SIBYL_API sibyl_status sibyl_grammar_from_gbnf(SIBYL_NONNULL const char* gbnf, SIBYL_NULLABLE const char* root,
                                               SIBYL_NONNULL sibyl_grammar** out_grammar);
/**
 * From a JSON Schema (NUL-terminated): the JSON texts it accepts. Supported: type, properties
 * (in their order), required, additionalProperties (absent = no extra members), items,
 * minItems, maxItems, minLength, maxLength, integer minimum/maximum, enum, const, anyOf,
 * oneOf, $defs/$ref (recursion allowed). Any other constraining keyword is
 * SIBYL_ERR_INVALID_ARGUMENT naming it and where it is.
 */
SIBYL_API sibyl_status sibyl_grammar_from_json_schema(SIBYL_NONNULL const char* schema,
                                                      SIBYL_NONNULL sibyl_grammar** out_grammar);
/** The GBNF a JSON Schema compiles to, to read or adapt (text out as sibyl_model_render_chat). */
SIBYL_API sibyl_status sibyl_json_schema_to_gbnf(SIBYL_NONNULL const char* schema, SIBYL_NULLABLE char* out,
                                                 size_t capacity, SIBYL_NONNULL size_t* out_len);
/** NULL is a no-op. */
SIBYL_API void sibyl_grammar_destroy(SIBYL_NULLABLE sibyl_grammar* grammar);

/** What a chat's grammar constrains. */
typedef enum sibyl_grammar_scope {
    SIBYL_GRAMMAR_ANSWER = 0, /* the answer (default): the reasoning stays free and the think budget
                                 works, but the reply cannot end before its answer; the answer may
                                 open with up to 3 whitespace bytes (the format's blank line, which
                                 the answer text leaves out), then follows the grammar */
    SIBYL_GRAMMAR_WHOLE = 1,  /* every generated token, from the first; "<think>" and "</think>"
                                 are read as that text. A think_budget whose forced "</think>" the
                                 grammar rejects ends the request with SIBYL_ERR_INVALID_ARGUMENT */
    SIBYL_GRAMMAR_SCOPE_MAX_ENUM = 0x7fffffff
} sibyl_grammar_scope;

/**
 * Compile the grammar for a model's vocabulary ahead of use: the token masks of the states
 * near its start are computed now (tens to a few hundred milliseconds for a JSON Schema on
 * a 129k vocabulary) rather than at their first use in a reply (about 1-3 ms each, once).
 * Optional: call it at load time, not per frame. `scope` is the scope the chats will use
 * (generate calls use SIBYL_GRAMMAR_WHOLE). Thread-safe; requests using the grammar wait
 * while it runs.
 */
SIBYL_API sibyl_status sibyl_grammar_prepare(SIBYL_NONNULL sibyl_grammar* grammar, SIBYL_NONNULL const sibyl_model* model,
                                             sibyl_grammar_scope scope);

/* ---------------------------------------------------------------- sampling */

/**
 * How the next token is chosen from the last logits. Applied in this order:
 * repetition penalty, temperature, top-k, top-p, min-p, then a draw from the
 * session's RNG. temperature <= 0 means greedy (argmax after the penalty).
 */
/** A bias added to one token's logit before sampling (since 0.5). */
typedef struct sibyl_logit_bias {
    int32_t token;
    float bias; /* finite, or -INFINITY: the token is never chosen */
} sibyl_logit_bias;

typedef struct sibyl_sampler_options {
    uint32_t struct_size;      /* sizeof(sibyl_sampler_options) — set by _init */
    float temperature;         /* default 0 (greedy) */
    int32_t top_k;             /* keep the k most likely; 0 (default) = off */
    float top_p;               /* nucleus: smallest set with mass >= top_p; 1 (default) = off */
    float min_p;               /* drop tokens with p < min_p * p_max; 0 (default) = off */
    float repetition_penalty;  /* CTRL-style, > 0; 1 (default) = off */
    int32_t repetition_last_n; /* penalise the last n context tokens; 0 (default) = the whole context */
    /* since 0.5: */
    const sibyl_logit_bias* logit_bias; /* added to the logits before the other steps (greedy too);
                                           NULL (default) = none. Read during the call (requests: at
                                           submit). A token outside the vocabulary or a NaN bias is
                                           SIBYL_ERR_INVALID_ARGUMENT naming its index */
    size_t n_logit_bias;
} sibyl_sampler_options;

SIBYL_API void sibyl_sampler_options_init(SIBYL_NULLABLE sibyl_sampler_options* options);

/**
 * Choose a token from the session's last logits (the last kept row). Does not
 * append it. `options` NULL = greedy. Same seed and calls → same tokens.
 * Errors: SIBYL_ERR_NO_LOGITS when the last append kept none.
 */
SIBYL_API sibyl_status sibyl_session_sample(SIBYL_NONNULL sibyl_session* session,
                                            SIBYL_NULLABLE const sibyl_sampler_options* options,
                                            SIBYL_NONNULL int32_t* out_token);

/* ---------------------------------------------------------------- generation */

/**
 * Called with each generated token, on the thread that called generate.
 * Return 0 to continue, non-zero to stop after this token. Calling into the same
 * session from here returns SIBYL_ERR_BUSY.
 */
typedef int (*sibyl_token_fn)(int32_t token, void* user_data);

typedef struct sibyl_generate_options {
    uint32_t struct_size;    /* sizeof(sibyl_generate_options) — set by _init */
    uint32_t max_new_tokens; /* default 256 */
    int32_t stop_at_eos;     /* non-zero (default 1): stop after the model's end-of-sequence token */
    int32_t reseed;          /* non-zero: re-seed the session RNG with `seed` first; default 0 */
    uint64_t seed;
    const sibyl_sampler_options* sampler; /* how tokens are chosen; NULL (default) = greedy.
                                             Read during the call only. */
    /* since 0.6: */
    const sibyl_grammar* grammar; /* NULL (default): free. Else every generated token follows it
                                     and end-of-sequence comes only where it accepts */
} sibyl_generate_options;

SIBYL_API void sibyl_generate_options_init(SIBYL_NULLABLE sibyl_generate_options* options);

/**
 * Append `prompt` (may be empty when the session already holds logits), then
 * sample, report and append tokens until max_new_tokens, end-of-sequence, or
 * the callback returns non-zero. Every token passed to `on_token` is in the
 * session's context when this returns, so the conversation can go on.
 * `on_token` may be NULL. `*out_n_generated` (may be NULL) receives the count
 * of generated tokens, also on failure.
 * Errors: an invalid prompt token is SIBYL_ERR_INVALID_TOKEN with the session
 * unchanged; when the context fills up, generation stops with
 * SIBYL_ERR_CONTEXT_FULL after reporting (and keeping) every token that fit;
 * SIBYL_ERR_NO_LOGITS when the prompt is empty and the session holds no logits.
 * sibyl_session_cancel from another thread stops it before its next step (since
 * 0.3; the status is SIBYL_OK). It runs as a request of the model's scheduler, batched
 * with every other session's work.
 * Thread-safety: one call at a time per session; `on_token` runs on this thread.
 */
SIBYL_API sibyl_status sibyl_session_generate(SIBYL_NONNULL sibyl_session* session,
                                              SIBYL_NULLABLE const int32_t* prompt, size_t n_prompt,
                                              SIBYL_NULLABLE const sibyl_generate_options* options,
                                              SIBYL_NULLABLE sibyl_token_fn on_token,
                                              SIBYL_NULLABLE void* user_data,
                                              SIBYL_NULLABLE size_t* out_n_generated);

/* ---------------------------------------------------------------- text */

/*
 * Text functions need the model directory's tokenizer.json (and, for chat,
 * tokenizer_config.json with a chat template Sibyl recognises); without them
 * they return SIBYL_ERR_UNSUPPORTED saying what is missing.
 *
 * Output buffers follow one rule: the call writes the required size to the
 * `out_n...`/`out_len` argument; if `capacity` is too small it writes nothing
 * else and returns SIBYL_ERR_BUFFER_TOO_SMALL (call again with a buffer of that
 * size; `out` may be NULL when `capacity` is 0). Text outputs are not
 * NUL-terminated unless there is room for one more byte, which is then 0.
 */

/**
 * Token ids of UTF-8 `text` (`text_len` bytes; may contain NUL), exactly as the
 * model's Hugging Face tokenizer encodes it without adding special tokens
 * (special-token strings in the text do become their tokens). Invalid UTF-8 is
 * SIBYL_ERR_INVALID_ARGUMENT naming the byte offset. Thread-safe.
 */
SIBYL_API sibyl_status sibyl_model_tokenize(SIBYL_NONNULL const sibyl_model* model, SIBYL_NULLABLE const char* text,
                                            size_t text_len, SIBYL_NULLABLE int32_t* out_tokens, size_t capacity,
                                            SIBYL_NONNULL size_t* out_n_tokens);

/**
 * UTF-8 text of `tokens` (special tokens included as their text). Thread-safe.
 * Decoding token by token and joining the results breaks characters that span
 * tokens: stream with sibyl_model_token_bytes instead.
 */
SIBYL_API sibyl_status sibyl_model_detokenize(SIBYL_NONNULL const sibyl_model* model,
                                              SIBYL_NULLABLE const int32_t* tokens, size_t n_tokens,
                                              SIBYL_NULLABLE char* out, size_t capacity, SIBYL_NONNULL size_t* out_len);

/**
 * The raw bytes token `token` stands for (since 0.3) — possibly part of a UTF-8
 * character: concatenate the bytes of consecutive tokens and print whole characters.
 * Same output rule as the other text calls; the bytes are not NUL-terminated unless
 * there is room. SIBYL_ERR_INVALID_TOKEN outside the vocabulary. Thread-safe.
 */
SIBYL_API sibyl_status sibyl_model_token_bytes(SIBYL_NONNULL const sibyl_model* model, int32_t token,
                                               SIBYL_NULLABLE char* out, size_t capacity,
                                               SIBYL_NONNULL size_t* out_len);

/** One message of a conversation. */
typedef struct sibyl_chat_message {
    const char* role;    /* "system", "user", "assistant" or "tool" (NUL-terminated) */
    const char* content; /* UTF-8, `content_len` bytes */
    size_t content_len;
} sibyl_chat_message;

/**
 * The prompt text the model's chat template makes of `messages`, identical to
 * Hugging Face transformers' apply_chat_template. Earlier assistant turns lose
 * their reasoning where the template says so (R1 style). An unrecognised
 * template is SIBYL_ERR_UNSUPPORTED, never a guessed prompt. Thread-safe.
 */
SIBYL_API sibyl_status sibyl_model_render_chat(SIBYL_NONNULL const sibyl_model* model,
                                               SIBYL_NONNULL const sibyl_chat_message* messages, size_t n_messages,
                                               int add_generation_prompt, SIBYL_NULLABLE char* out, size_t capacity,
                                               SIBYL_NONNULL size_t* out_len);

/** A tool the model may call in a chat (since 0.7). */
typedef struct sibyl_tool {
    const char* name;        /* 1 to 64 of A-Z a-z 0-9 _ . - (NUL-terminated), unique in a chat */
    const char* description; /* NUL-terminated; NULL = none */
    const char* parameters;  /* JSON Schema of the arguments, NUL-terminated (the subset that
                                sibyl_grammar_from_json_schema accepts); NULL = any JSON object */
} sibyl_tool;

/** A tool call an earlier assistant message made: the conversation's history (since 0.7). */
typedef struct sibyl_tool_call {
    size_t message;        /* index of the "assistant" message that made it (its content may be
                              empty: the call was its whole reply) */
    const char* name;      /* NUL-terminated */
    const char* arguments; /* the JSON text of the arguments, NUL-terminated: pass back what the
                              TOOL_CALL event gave, and the prompt reuses the cached call */
} sibyl_tool_call;

/** May the model call tools in this chat? (since 0.7) */
typedef enum sibyl_tool_choice {
    SIBYL_TOOL_CHOICE_AUTO = 0,     /* it answers in text, or calls tools (default) */
    SIBYL_TOOL_CHOICE_NONE = 1,     /* it knows the tools but answers in text */
    SIBYL_TOOL_CHOICE_REQUIRED = 2, /* its answer is tool calls: one call of `tool_name` when
                                       that is set, else one or more calls of any tool */
    SIBYL_TOOL_CHOICE_MAX_ENUM = 0x7fffffff
} sibyl_tool_choice;

/**
 * Receives a tool call of a sibyl_session_chat reply (since 0.7): the tool's name and
 * its arguments, a JSON text valid against the tool's parameters, exactly as the model
 * wrote them; valid only during the call. Return 0 to continue, non-zero to stop.
 */
typedef int (*sibyl_tool_call_fn)(const char* name, size_t name_len, const char* arguments, size_t arguments_len,
                                  void* user_data);

/* ---------------------------------------------------------------- reasoning chat */

/** Which stream a piece of generated text belongs to. */
typedef enum sibyl_channel {
    SIBYL_CHANNEL_REASONING = 0, /* the model's thinking, inside <think>…</think> (tags never included) */
    SIBYL_CHANNEL_ANSWER = 1,    /* the reply after the thinking */
    SIBYL_CHANNEL_MAX_ENUM = 0x7fffffff
} sibyl_channel;

/**
 * Receives generated text: `piece` is `piece_len` bytes of complete UTF-8
 * characters (never a partial sequence), valid only during the call. Return 0
 * to continue, non-zero to stop.
 */
typedef int (*sibyl_text_fn)(sibyl_channel channel, const char* piece, size_t piece_len, void* user_data);

typedef enum sibyl_stop_reason {
    SIBYL_STOP_EOS = 0,         /* the model ended its reply */
    SIBYL_STOP_MAX_TOKENS = 1,  /* max_new_tokens generated */
    SIBYL_STOP_STRING = 2,      /* a stop string appeared in the answer (it is not emitted) */
    SIBYL_STOP_CALLBACK = 3,    /* on_text returned non-zero */
    SIBYL_STOP_CANCELLED = 4,   /* sibyl_session_cancel / sibyl_request_cancel was called */
    SIBYL_STOP_ERROR = 5,       /* since 0.3: a request ended with an error (its status says which) */
    SIBYL_STOP_MAX_ENUM = 0x7fffffff
} sibyl_stop_reason;

typedef struct sibyl_chat_options {
    uint32_t struct_size;         /* sizeof(sibyl_chat_options) — set by _init */
    uint32_t max_new_tokens;      /* reasoning + answer tokens; default 1024 */
    int32_t think_budget;         /* after this many reasoning tokens "</think>" is inserted and the
                                     answer follows; -1 (default) = unlimited */
    int32_t thinking;             /* 0: skip the reasoning (the template's think block is closed in the
                                     prompt); default 1. No effect on templates without thinking */
    const char* const* stop_strings; /* NUL-terminated UTF-8; the answer ends before the first one */
    size_t n_stop_strings;
    const sibyl_sampler_options* sampler; /* NULL (default) = greedy */
    int32_t reseed;               /* non-zero: re-seed the session RNG with `seed` first */
    uint64_t seed;
    /* since 0.5: */
    const int32_t* trusted;       /* NULL (default): every message's content is plain text — text that
                                     spells a control token ("<｜User｜>", "</think>") stays text, so
                                     a player cannot forge turns or end the reasoning. Else one flag per
                                     message (n_messages of them): non-zero trusts that message's
                                     content, whose control-token text then becomes those tokens. The
                                     rendered text (sibyl_model_render_chat) is the same either way */
    /* since 0.6: */
    const sibyl_grammar* grammar; /* NULL (default): free text. Else the reply follows it (see
                                     sibyl_grammar_scope and the structured output section) */
    sibyl_grammar_scope grammar_scope; /* default SIBYL_GRAMMAR_ANSWER */
    /* since 0.7 (see the tool calls section): */
    const sibyl_tool* tools;      /* NULL (default): no tools. Else their definitions join the system
                                     prompt and the model may call them (templates without tool
                                     calls: SIBYL_ERR_UNSUPPORTED) */
    size_t n_tools;
    sibyl_tool_choice tool_choice; /* default SIBYL_TOOL_CHOICE_AUTO */
    const char* tool_name;        /* with SIBYL_TOOL_CHOICE_REQUIRED: the one tool to call; NULL: any */
    const sibyl_tool_call* tool_calls; /* the calls earlier assistant messages made, in order */
    size_t n_tool_calls;
    sibyl_tool_call_fn on_tool_call; /* sibyl_session_chat: receives each call, with the chat's
                                        user_data (requests report SIBYL_EVENT_TOOL_CALL instead) */
} sibyl_chat_options;

SIBYL_API void sibyl_chat_options_init(SIBYL_NULLABLE sibyl_chat_options* options);

/*
 * Tool calls (since 0.7). A chat with `tools` adds their definitions to the system prompt
 * (the DeepSeek templates render calls and outputs but no definitions; the format is in
 * docs/STRUCTURED_OUTPUT.md). When the model starts a call (<｜tool▁calls▁begin｜>, in the
 * answer: the reasoning cannot call), the rest of its reply is constrained to the template's
 * call format, each call's arguments to its tool's JSON Schema, and ends after the calls.
 * Calls never appear as text: sibyl_session_chat hands them to `on_tool_call`, requests as
 * SIBYL_EVENT_TOOL_CALL events, and the result counts them. To continue, append an
 * "assistant" message (content: the reply's answer text, often empty) with its calls in
 * `tool_calls`, then one "tool" message per call with the output, and chat again: the
 * prompt reuses the cached reply.
 */

/**
 * sibyl_model_render_chat with what chat options add to a prompt (since 0.7): the tool
 * definitions of `options->tools` and the calls of `options->tool_calls`. Other options
 * are ignored; `options` NULL renders as sibyl_model_render_chat. Thread-safe.
 */
SIBYL_API sibyl_status sibyl_model_render_chat_ex(SIBYL_NONNULL const sibyl_model* model,
                                                  SIBYL_NONNULL const sibyl_chat_message* messages, size_t n_messages,
                                                  SIBYL_NULLABLE const sibyl_chat_options* options,
                                                  int add_generation_prompt, SIBYL_NULLABLE char* out,
                                                  size_t capacity, SIBYL_NONNULL size_t* out_len);

/**
 * What a chat call or request did. Output struct: set struct_size =
 * sizeof(sibyl_chat_result) first; any size from version 0.1's (up to answer_tokens)
 * on is accepted and only the fields within it are written.
 */
typedef struct sibyl_chat_result {
    uint32_t struct_size;
    sibyl_stop_reason stop_reason;
    uint32_t prompt_tokens;    /* prompt tokens run now */
    uint32_t reused_tokens;    /* prompt tokens already in the session's cache (shared prefix) */
    uint32_t reasoning_tokens; /* generated while thinking */
    uint32_t answer_tokens;    /* generated for the answer (end-of-sequence included) */
    /* since 0.3: */
    uint32_t generated_tokens; /* tokens sampled (generate requests: all of them) */
    uint32_t reserved;
    uint64_t first_token_us;   /* submit → first sampled token, microseconds (0: none) */
    uint64_t total_us;         /* submit → end, microseconds */
    /* since 0.5: */
    uint32_t drafted_tokens;   /* MTP drafts verified (speculative decoding) */
    uint32_t accepted_drafts;  /* of them, those that were the next token */
    /* since 0.7: */
    uint32_t tool_calls;       /* tool calls the reply made */
    uint32_t reserved2;
} sibyl_chat_result;

/**
 * Continue the conversation `messages` (the whole conversation so far, ending
 * with the user's turn): renders it with the chat template, reuses the longest
 * prefix already in the session's cache (earlier turns, a shared system prompt),
 * and generates the reply, streaming it through `on_text` as reasoning and
 * answer pieces. The reply's tokens stay in the session, so the next call with
 * the conversation extended by this reply and a new user turn reuses them.
 * `messages` must not be empty and must end with a "user" (or "tool") turn, else
 * SIBYL_ERR_INVALID_ARGUMENT. `options` NULL = defaults; `out_result` may be NULL
 * and is written also on failure (what was streamed and kept until then).
 * Thread-safety: one call at a time per session; `on_text` runs on the calling
 * thread (calling into this session from it returns SIBYL_ERR_BUSY).
 */
SIBYL_API sibyl_status sibyl_session_chat(SIBYL_NONNULL sibyl_session* session,
                                          SIBYL_NONNULL const sibyl_chat_message* messages, size_t n_messages,
                                          SIBYL_NULLABLE const sibyl_chat_options* options,
                                          SIBYL_NULLABLE sibyl_text_fn on_text, SIBYL_NULLABLE void* user_data,
                                          SIBYL_NULLABLE sibyl_chat_result* out_result);

/**
 * Cancel what runs on `session` now (a sibyl_session_chat / _generate call or a
 * submitted request); it stops before the model's next step with
 * SIBYL_STOP_CANCELLED, also in the middle of a long prompt. A cancel while nothing
 * runs has no effect (since 0.3: it no longer cancels the next call). May be called
 * from any thread while the session is in use; the session must not be destroyed
 * concurrently.
 */
SIBYL_API sibyl_status sibyl_session_cancel(SIBYL_NONNULL sibyl_session* session);

/* ---------------------------------------------------------------- non-blocking requests (since 0.3) */

typedef enum sibyl_event_type {
    SIBYL_EVENT_NONE = 0,  /* sibyl_request_poll: nothing queued right now */
    SIBYL_EVENT_TOKEN = 1, /* a sampled token (`token`) */
    SIBYL_EVENT_TEXT = 2,  /* chat: a piece of text on `channel` (complete UTF-8 characters) */
    SIBYL_EVENT_DONE = 3,  /* the end: `stop_reason`, and `status` (SIBYL_OK or the error) */
    SIBYL_EVENT_TOOL_CALL = 4, /* since 0.7: a tool call, `name` and `text` (its arguments, JSON) */
    SIBYL_EVENT_MAX_ENUM = 0x7fffffff
} sibyl_event_type;

/**
 * One event of a request. Set struct_size = sizeof(sibyl_event) before polling; the 0.3
 * size (up to `status`) is accepted too, without `name`.
 */
typedef struct sibyl_event {
    uint32_t struct_size;
    sibyl_event_type type;
    int32_t token;                 /* TOKEN */
    sibyl_channel channel;         /* TEXT */
    const char* text;              /* TEXT: `text_len` bytes; DONE with an error: the message
                                      (NUL-terminated). Valid until the next poll of this request
                                      or its destroy (callbacks: during the call only) */
    size_t text_len;
    sibyl_stop_reason stop_reason; /* DONE */
    sibyl_status status;           /* DONE */
    /* since 0.7: */
    const char* name;              /* TOOL_CALL: the tool (`name_len` bytes, NUL-terminated); valid as `text` */
    size_t name_len;
} sibyl_event;

/**
 * Receives a request's events instead of the poll queue. Runs on the thread that
 * runs the model's step (a library worker, or the caller of sibyl_model_step);
 * keep it short. It may submit requests and use other sessions, but calling into the
 * request's own session, a blocking chat/generate or sibyl_model_step of the same model
 * returns SIBYL_ERR_BUSY.
 */
typedef void (*sibyl_event_fn)(const sibyl_event* event, void* user_data);

typedef struct sibyl_request_options {
    uint32_t struct_size;  /* sizeof(sibyl_request_options) — set by _init */
    sibyl_event_fn on_event; /* NULL (default): events are queued for sibyl_request_poll */
    void* user_data;
} sibyl_request_options;

SIBYL_API void sibyl_request_options_init(SIBYL_NULLABLE sibyl_request_options* options);

/**
 * Submit a chat turn (as sibyl_session_chat) and return at once. The session is in
 * use until the request's DONE event: other calls on it return SIBYL_ERR_BUSY.
 * Errors found before anything runs (bad options, a busy session, an unusable
 * conversation) are returned here; later ones arrive as the DONE event's status.
 * `options`, `request_options` may be NULL. Destroy the request with
 * sibyl_request_destroy. Thread-safe.
 */
SIBYL_API sibyl_status sibyl_session_submit_chat(SIBYL_NONNULL sibyl_session* session,
                                                 SIBYL_NONNULL const sibyl_chat_message* messages,
                                                 size_t n_messages,
                                                 SIBYL_NULLABLE const sibyl_chat_options* options,
                                                 SIBYL_NULLABLE const sibyl_request_options* request_options,
                                                 SIBYL_NONNULL sibyl_request** out_request);

/** Submit a generation (as sibyl_session_generate: tokens arrive as TOKEN events). */
SIBYL_API sibyl_status sibyl_session_submit_generate(SIBYL_NONNULL sibyl_session* session,
                                                     SIBYL_NULLABLE const int32_t* prompt, size_t n_prompt,
                                                     SIBYL_NULLABLE const sibyl_generate_options* options,
                                                     SIBYL_NULLABLE const sibyl_request_options* request_options,
                                                     SIBYL_NONNULL sibyl_request** out_request);

/**
 * The next queued event of `request`, or type SIBYL_EVENT_NONE when none is queued.
 * Never blocks; any thread (one poller at a time per request).
 */
SIBYL_API sibyl_status sibyl_request_poll(SIBYL_NONNULL sibyl_request* request, SIBYL_NONNULL sibyl_event* event);

/** Wait up to `timeout_us` (-1: no limit) for an event or the end; *out_ready = 1 if there is one. */
SIBYL_API sibyl_status sibyl_request_wait(SIBYL_NONNULL sibyl_request* request, int64_t timeout_us,
                                          SIBYL_NULLABLE int* out_ready);

/** Cancel the request: it ends before the next step (DONE with SIBYL_STOP_CANCELLED). Any thread. */
SIBYL_API sibyl_status sibyl_request_cancel(SIBYL_NONNULL sibyl_request* request);

/**
 * What the request did so far (final after DONE): token counts, stop reason and
 * latencies. Same struct-size rule as sibyl_session_chat's result.
 */
SIBYL_API sibyl_status sibyl_request_result(SIBYL_NONNULL sibyl_request* request,
                                            SIBYL_NONNULL sibyl_chat_result* out_result);

/**
 * Destroy a request handle; a request still running is cancelled first. NULL is a no-op.
 * When it returns, the request's on_event callback is not running and is never called
 * again (so its user_data may be freed), unless it is called from inside that callback.
 * The cancelled request's session stays in use (SIBYL_ERR_BUSY) until the scheduler retires
 * the request at its next step; to reuse the session at once, cancel and wait for DONE first.
 */
SIBYL_API void sibyl_request_destroy(SIBYL_NULLABLE sibyl_request* request);

/** What one sibyl_model_step did. Set struct_size = sizeof(sibyl_step_report). */
typedef struct sibyl_step_report {
    uint32_t struct_size;
    uint32_t rows;          /* tokens run (0: nothing could run) */
    uint32_t sequences;     /* requests in the step */
    uint32_t pending;       /* requests not finished after it */
    uint64_t elapsed_us;
    int32_t overrun;        /* 1 when elapsed_us exceeded the budget */
} sibyl_step_report;

/**
 * Run one batched step of the model's submitted requests on this thread, sized from
 * measured costs to take about `budget_us` microseconds (0: the full step). For
 * worker_threads = 0, where the application drives the model (e.g. once per frame).
 * `out_report` may be NULL. Thread-safe (steps of one model run one at a time).
 */
SIBYL_API sibyl_status sibyl_model_step(SIBYL_NONNULL sibyl_model* model, uint64_t budget_us,
                                        SIBYL_NULLABLE sibyl_step_report* out_report);

/* ---------------------------------------------------------------- layout (since 0.8) */
/* The layout of the public structs as this library was built, for FFI bindings (Python ctypes,
   C#, LuaJIT) to check their own mirrors at load time. Thread-safe, no allocation. */

/** sizeof the struct named `name` (e.g. "sibyl_event"); 0 for a name this library does not know. */
SIBYL_API size_t sibyl_struct_size(SIBYL_NULLABLE const char* name);
/** offsetof `field` in struct `name`; SIZE_MAX for an unknown struct or field. */
SIBYL_API size_t sibyl_struct_offset(SIBYL_NULLABLE const char* name, SIBYL_NULLABLE const char* field);
/** The name of public struct number `index` (0, 1, …); NULL past the last. Static storage. */
SIBYL_API const char* sibyl_struct_name(size_t index);
/** The name of field number `index` of struct `name`, in declaration order; NULL past the last. */
SIBYL_API const char* sibyl_struct_field(SIBYL_NULLABLE const char* name, size_t index);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* SIBYL_SIBYL_H */
