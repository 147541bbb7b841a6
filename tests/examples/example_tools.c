/* An NPC acts through tools: the model calls give_item or walk_to with arguments that follow
 * the tool's schema, the game runs the action, and the tool's output continues the chat on the
 * cached prompt. Usage: example_tools MODEL (a DeepSeek-V3 or R1 model). */
#include <sibyl/sibyl.h>

#include <stdio.h>
#include <string.h>

#define MAX_CALLS 4

typedef struct Calls {
    char names[MAX_CALLS][65];
    char arguments[MAX_CALLS][512];
    size_t n;
} Calls;

/* The game's side: act on each call as it arrives, and keep it for the conversation. */
static int on_tool_call(const char* name, size_t name_len, const char* arguments, size_t arguments_len,
                        void* user_data) {
    Calls* calls = (Calls*)user_data;
    if (calls->n == MAX_CALLS || name_len >= sizeof calls->names[0] || arguments_len >= sizeof calls->arguments[0])
        return 1; /* more than this game handles: stop the reply */
    memcpy(calls->names[calls->n], name, name_len);
    calls->names[calls->n][name_len] = '\0';
    memcpy(calls->arguments[calls->n], arguments, arguments_len);
    calls->arguments[calls->n][arguments_len] = '\0';
    printf("NPC action: %s %s\n", calls->names[calls->n], calls->arguments[calls->n]);
    calls->n++;
    return 0;
}

int main(int argc, char** argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL\n", argv[0]);
        return 2;
    }
    sibyl_model* model = NULL;
    sibyl_session* npc = NULL;
    if (sibyl_model_load(argv[1], NULL, &model) != SIBYL_OK || sibyl_session_create(model, NULL, &npc) != SIBYL_OK) {
        fprintf(stderr, "error: %s\n", sibyl_last_error_message());
        sibyl_model_destroy(model);
        return 1;
    }
    const sibyl_tool tools[] = {
        {"give_item", "Give the player an item from your stock.",
         "{\"type\":\"object\",\"properties\":{\"item\":{\"enum\":[\"sword\",\"bread\"]},"
         "\"count\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":3}},\"required\":[\"item\"]}"},
        {"walk_to", "Walk somewhere in the village.",
         "{\"type\":\"object\",\"properties\":{\"place\":{\"enum\":[\"inn\",\"smithy\",\"well\"]}},"
         "\"required\":[\"place\"],\"additionalProperties\":false}"},
    };
    const char* player = "I paid you. Give me the sword.";
    const char* output = "{\"done\": true}";
    sibyl_chat_message messages[3 + MAX_CALLS] = {
        {"system", "You are Brom, the smith.", 24},
        {"user", player, strlen(player)},
        {"assistant", "", 0}, /* the reply: its calls go in tool_calls, their outputs follow */
    };
    Calls calls = {0};
    sibyl_chat_options options;
    sibyl_chat_options_init(&options);
    options.max_new_tokens = 256;
    options.tools = tools;
    options.n_tools = 2;
    options.tool_choice = SIBYL_TOOL_CHOICE_REQUIRED; /* this turn must act: one call or more */
    options.on_tool_call = on_tool_call;
    sibyl_chat_result result;
    result.struct_size = sizeof result;
    int rc = 0;
    if (sibyl_session_chat(npc, messages, 2, &options, NULL, &calls, &result) != SIBYL_OK) {
        fprintf(stderr, "error: %s\n", sibyl_last_error_message());
        rc = 1;
    } else if (calls.n == 0) {
        fprintf(stderr, "no tool call (the reply ran out of tokens)\n");
        rc = 1;
    } else {
        /* The call and its output continue the conversation: the prompt reuses the session's cache. */
        sibyl_tool_call made[MAX_CALLS];
        for (size_t i = 0; i < calls.n; ++i) {
            made[i] = (sibyl_tool_call){2, calls.names[i], calls.arguments[i]};
            messages[3 + i] = (sibyl_chat_message){"tool", output, strlen(output)}; /* the game's result */
        }
        options.tool_calls = made;
        options.n_tool_calls = calls.n;
        options.tool_choice = SIBYL_TOOL_CHOICE_NONE; /* now answer in words */
        options.max_new_tokens = 16;
        if (sibyl_session_chat(npc, messages, 3 + calls.n, &options, NULL, &calls, &result) != SIBYL_OK) {
            fprintf(stderr, "error: %s\n", sibyl_last_error_message());
            rc = 1;
        } else {
            printf("continued: %u prompt tokens reused, %u new\n", result.reused_tokens, result.prompt_tokens);
        }
    }
    sibyl_session_destroy(npc);
    sibyl_model_destroy(model);
    return rc;
}
