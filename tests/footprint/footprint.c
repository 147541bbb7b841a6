/* What loading Sibyl costs a program on a machine without a GPU: resident memory after loading
   the default model on the CPU (< 20 MiB), `auto` falling back to the CPU without mapping GPU
   drivers, and destroy giving back the memory loading took (no growth over load/destroy cycles).
   Prints the figures (docs/PERFORMANCE.md quotes them); fails on the limits. Not for sanitizers. */
#include <sibyl/sibyl.h>

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A field of /proc/self/status in KiB ("VmRSS", "RssAnon"). */
static long status_kib(const char* field) {
    FILE* f = fopen("/proc/self/status", "r");
    char line[256];
    long value = -1;
    size_t n = strlen(field);
    if (!f) return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, field, n) == 0 && line[n] == ':') value = atol(line + n + 1);
    fclose(f);
    return value;
}

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static sibyl_model* load(sibyl_backend_kind backend, double* ms) {
    sibyl_model_options o;
    sibyl_model* model = NULL;
    sibyl_model_options_init(&o);
    o.backend = backend;
    double t0 = now_ms();
    if (sibyl_model_load(NULL, &o, &model) != SIBYL_OK) {
        fprintf(stderr, "load failed: %s\n", sibyl_last_error_message());
        exit(1);
    }
    *ms = now_ms() - t0;
    return model;
}

/* Anonymous resident memory once freed heap is returned (glibc keeps it otherwise). */
static long anon_after_trim(void) {
    malloc_trim(0);
    return status_kib("RssAnon");
}

int main(void) {
    int failures = 0;
    double ms = 0;
    const long anon_before = anon_after_trim();

    sibyl_model* model = load(SIBYL_BACKEND_CPU, &ms);
    const long rss_loaded = status_kib("VmRSS");
    printf("cpu: load %.1f ms, VmRSS %.1f MiB after load\n", ms, rss_loaded / 1024.0);
    if (rss_loaded > 20 * 1024) {
        fprintf(stderr, "FAIL: VmRSS %ld KiB after loading on the CPU (limit 20 MiB)\n", rss_loaded);
        ++failures;
    }
    sibyl_model_destroy(model);
    const long anon_first = anon_after_trim();

    model = load(SIBYL_BACKEND_AUTO, &ms);
    sibyl_model_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    sibyl_model_get_info(model, &info);
    printf("auto: backend %s, load %.1f ms, VmRSS %.1f MiB\n", info.backend, ms, status_kib("VmRSS") / 1024.0);
    sibyl_model_destroy(model);

    for (int i = 0; i < 4; ++i) sibyl_model_destroy(load(SIBYL_BACKEND_CPU, &ms));
    const long anon_after = anon_after_trim();
    printf("RssAnon: %ld KiB before, %ld after the first destroy, %ld after 6 load/destroy cycles\n", anon_before,
           anon_first, anon_after);
    /* The first load leaves the library's own once-per-process state (thread-local buffers, the
       log sink); later cycles must give everything back. */
    if (anon_first - anon_before > 1024) {
        fprintf(stderr, "FAIL: destroy kept %ld KiB of what loading took\n", anon_first - anon_before);
        ++failures;
    }
    if (anon_after - anon_first > 256) {
        fprintf(stderr, "FAIL: %ld KiB more after 5 more load/destroy cycles\n", anon_after - anon_first);
        ++failures;
    }
    return failures ? 1 : 0;
}
