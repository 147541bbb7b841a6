/* Three NPCs ask one model at once; each answer is JSON following the game's schema. */
#include <sibyl/sibyl.h>

#include <stdio.h>
#include <string.h>

#define NPCS 3

static const char* kAction =
    "{\"type\": \"object\", \"properties\": {"
    "  \"answer\": {\"type\": \"integer\", \"minimum\": 0, \"maximum\": 100000},"
    "  \"mood\": {\"enum\": [\"glad\", \"annoyed\", \"unsure\"]}},"
    " \"required\": [\"answer\", \"mood\"]}";

int main(int argc, char** argv) {
    const char* path = argc > 1 ? argv[1] : "models/tiny-reasoner";
    const char* questions[NPCS] = {"What is 12 + 30?", "What is 7 times 6?", "Which is bigger, 848 or 375?"};
    sibyl_model* model = NULL;
    sibyl_grammar* action = NULL;
    sibyl_session* sessions[NPCS] = {NULL};
    sibyl_request* requests[NPCS] = {NULL};
    char answers[NPCS][512];
    size_t lengths[NPCS] = {0};
    int done[NPCS] = {0}, remaining = NPCS, ok = 1, i;
    sibyl_chat_options options;

    /* At load time: the model, the schema compiled once, and its masks for this vocabulary. */
    if (sibyl_model_load(path, NULL, &model) != SIBYL_OK ||
        sibyl_grammar_from_json_schema(kAction, &action) != SIBYL_OK ||
        sibyl_grammar_prepare(action, model, SIBYL_GRAMMAR_ANSWER) != SIBYL_OK) {
        fprintf(stderr, "%s\n", sibyl_last_error_message());
        sibyl_grammar_destroy(action);
        sibyl_model_destroy(model);
        return 1;
    }
    sibyl_chat_options_init(&options);
    options.max_new_tokens = 512;
    options.grammar = action; /* the reasoning stays free; the answer follows the schema */

    for (i = 0; i < NPCS; ++i) {
        sibyl_chat_message m;
        m.role = "user";
        m.content = questions[i];
        m.content_len = strlen(questions[i]);
        if (sibyl_session_create(model, NULL, &sessions[i]) != SIBYL_OK ||
            sibyl_session_submit_chat(sessions[i], &m, 1, &options, NULL, &requests[i]) != SIBYL_OK) {
            fprintf(stderr, "%s\n", sibyl_last_error_message());
            return 1;
        }
    }
    /* A game polls once per frame; here we wait a little between polls. */
    while (remaining > 0) {
        for (i = 0; i < NPCS; ++i) {
            sibyl_event e;
            memset(&e, 0, sizeof e);
            e.struct_size = sizeof e;
            while (!done[i] && sibyl_request_poll(requests[i], &e) == SIBYL_OK && e.type != SIBYL_EVENT_NONE) {
                if (e.type == SIBYL_EVENT_TEXT && e.channel == SIBYL_CHANNEL_ANSWER &&
                    lengths[i] + e.text_len < sizeof answers[i]) {
                    memcpy(answers[i] + lengths[i], e.text, e.text_len);
                    lengths[i] += e.text_len;
                } else if (e.type == SIBYL_EVENT_DONE) {
                    done[i] = 1;
                    --remaining;
                    ok = ok && e.status == SIBYL_OK && e.stop_reason == SIBYL_STOP_EOS;
                }
            }
        }
        if (remaining > 0) sibyl_request_wait(requests[0], 2000, NULL);
    }
    for (i = 0; i < NPCS; ++i) {
        answers[i][lengths[i]] = '\0';
        printf("%s -> %s\n", questions[i], answers[i]);
        ok = ok && lengths[i] > 0 && answers[i][0] == '{' && answers[i][lengths[i] - 1] == '}';
        sibyl_request_destroy(requests[i]);
        sibyl_session_destroy(sessions[i]);
    }
    sibyl_grammar_destroy(action);
    sibyl_model_destroy(model);
    return ok ? 0 : 1;
}
