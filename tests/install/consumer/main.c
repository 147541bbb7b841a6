/* A program that uses an installed Sibyl: built by check_install.sh through find_package(Sibyl)
   (shared and static) and through pkg-config, after the install prefix was moved. It asks the
   default model — found by the library in the moved prefix — a question and checks the answer. */
#include <sibyl/sibyl.h>
#include <stdio.h>
#include <string.h>

enum { ANSWER_CAPACITY = 1024 };

static int on_text(sibyl_channel channel, const char* piece, size_t len, void* user_data) {
    char* answer = (char*)user_data;
    size_t used = strlen(answer);
    if (channel != SIBYL_CHANNEL_ANSWER) return 0;
    if (len > ANSWER_CAPACITY - 1 - used) len = ANSWER_CAPACITY - 1 - used;
    memcpy(answer + used, piece, len);
    answer[used + len] = '\0';
    return 0;
}

int main(void) {
    char path[4096];
    size_t path_len = 0;
    if (sibyl_default_model_path(path, sizeof path, &path_len) != SIBYL_OK) {
        fprintf(stderr, "no default model: %s\n", sibyl_last_error_message());
        return 1;
    }
    printf("default model: %s\n", path);
    sibyl_model* model = NULL;
    if (sibyl_model_load(NULL, NULL, &model) != SIBYL_OK) {
        fprintf(stderr, "load: %s\n", sibyl_last_error_message());
        return 1;
    }
    sibyl_session* session = NULL;
    if (sibyl_session_create(model, NULL, &session) != SIBYL_OK) {
        fprintf(stderr, "session: %s\n", sibyl_last_error_message());
        sibyl_model_destroy(model);
        return 1;
    }
    const char* question = "What is 29 + 17?";
    sibyl_chat_message message = {"user", question, strlen(question)};
    char answer[ANSWER_CAPACITY] = "";
    sibyl_status st = sibyl_session_chat(session, &message, 1, NULL, on_text, answer, NULL);
    if (st != SIBYL_OK) fprintf(stderr, "chat: %s\n", sibyl_last_error_message());
    else printf("answer: %s\n", answer);
    sibyl_session_destroy(session);
    sibyl_model_destroy(model);
    return st == SIBYL_OK && strstr(answer, "46") ? 0 : 1;
}
