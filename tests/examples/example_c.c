/* example_c.c: the Sibyl C API in one file. Loads a model, prints what it is,
 * generates 8 greedy tokens on each of two sessions running on two threads,
 * and shows how an error is reported.
 *
 *   cc -std=c99 example_c.c -lsibyl -lpthread && ./a.out tests/data/tiny-v3
 */
#include <sibyl/sibyl.h>

#include <pthread.h>
#include <stdio.h>

typedef struct worker {
    int id;
    sibyl_session* session;
    int32_t prompt[3];
    sibyl_status status;
} worker;

/* Called on the generating thread with each new token; non-zero would stop. */
static int print_token(int32_t token, void* user_data) {
    const worker* w = (const worker*)user_data;
    printf("session %d: token %d\n", w->id, (int)token);
    return 0;
}

static void* run_worker(void* arg) {
    worker* w = (worker*)arg;
    sibyl_generate_options gen;
    sibyl_generate_options_init(&gen); /* defaults; sampler NULL = greedy */
    gen.max_new_tokens = 8;
    size_t n_generated = 0;
    w->status = sibyl_session_generate(w->session, w->prompt, 3, &gen, print_token, w, &n_generated);
    if (w->status != SIBYL_OK) /* the message is thread-local: read it on this thread */
        fprintf(stderr, "session %d: %s\n", w->id, sibyl_last_error_message());
    else
        printf("session %d: %zu tokens generated\n", w->id, n_generated);
    return NULL;
}

int main(int argc, char** argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL_DIR\n", argv[0]);
        return 2;
    }
    if (sibyl_abi_version() / 10000 != SIBYL_ABI_VERSION_MAJOR || sibyl_abi_version() < SIBYL_ABI_VERSION) {
        fprintf(stderr, "libsibyl %s is not ABI-compatible with this program\n", sibyl_version_string());
        return 1;
    }

    sibyl_model* model = NULL;
    sibyl_status st = sibyl_model_load(argv[1], NULL, &model);
    if (st != SIBYL_OK) {
        fprintf(stderr, "cannot load %s: %s (%s)\n", argv[1], sibyl_last_error_message(), sibyl_status_string(st));
        return 1;
    }

    sibyl_model_info info;
    info.struct_size = sizeof info; /* an output struct: say which version we have */
    if (sibyl_model_get_info(model, &info) != SIBYL_OK) {
        fprintf(stderr, "model info: %s\n", sibyl_last_error_message());
        sibyl_model_destroy(model);
        return 1;
    }
    printf("%s on %s: vocab %d, hidden %d, %d layers, %d of %d experts per token, kv_lora_rank %d\n",
           info.architecture, info.backend, (int)info.vocab_size, (int)info.hidden_size, (int)info.n_layers,
           (int)info.n_experts_per_token, (int)info.n_routed_experts, (int)info.kv_lora_rank);

    /* Two sessions of one model, each used by its own thread. */
    worker workers[2] = {{0, NULL, {0, 17, 42}, SIBYL_OK}, {1, NULL, {0, 99, 7}, SIBYL_OK}};
    pthread_t threads[2];
    int ok = 1;
    for (int i = 0; i < 2; ++i) {
        if (sibyl_session_create(model, NULL, &workers[i].session) != SIBYL_OK) {
            fprintf(stderr, "session: %s\n", sibyl_last_error_message());
            ok = 0;
        }
    }
    int n_started = 0;
    while (ok && n_started < 2 && pthread_create(&threads[n_started], NULL, run_worker, &workers[n_started]) == 0)
        ++n_started;
    if (ok && n_started < 2) {
        fprintf(stderr, "pthread_create failed\n");
        ok = 0;
    }
    for (int i = 0; i < n_started; ++i) {
        pthread_join(threads[i], NULL);
        if (workers[i].status != SIBYL_OK) ok = 0;
    }

    /* Errors: a status code, plus a message on the failing thread. */
    if (ok) {
        const int32_t bad_token = info.vocab_size; /* one past the last valid id */
        st = sibyl_session_append(workers[0].session, &bad_token, 1, SIBYL_LOGITS_LAST);
        printf("appending token %d: %s: %s\n", (int)bad_token, sibyl_status_string(st), sibyl_last_error_message());
        if (st != SIBYL_ERR_INVALID_TOKEN) ok = 0;
    }

    for (int i = 0; i < 2; ++i) sibyl_session_destroy(workers[i].session); /* NULL is fine */
    sibyl_model_destroy(model);
    return ok ? 0 : 1;
}
