// sibyl-chat: a terminal chat with a reasoning model, written against the C ABI only.
// The model's thinking streams dimmed (or hidden), the answer in plain text, and a
// final line reports speed. One-shot with --prompt, interactive otherwise.
#include <sibyl/sibyl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include "cli_model.h"

static const char* kUsage =
    "usage: sibyl-chat [--prompt TEXT] [options]\n"
    "  --model PATH         model directory, GGUF file or .sibyl pack (default: the embedded tiny-reasoner)\n"
    "  --prompt TEXT        answer one question and exit (default: interactive chat)\n"
    "  --system TEXT        a system message\n"
    "  --think-budget N     reasoning tokens before the answer is forced (default: unlimited)\n"
    "  --no-think           skip the reasoning\n"
    "  --hide-reasoning     do not print the reasoning\n"
    "  --max-new N          tokens per reply (default 1024)\n"
    "  --seed S  --temperature T  --top-k K  --top-p P   sampling (default: greedy)\n"
    "  --json-schema FILE   the answer is JSON following this JSON Schema\n"
    "  --grammar FILE       the answer follows this GBNF grammar (start rule: root)\n"
    "  --grammar-scope S    answer (default): the reasoning stays free; whole: every generated token\n"
    SIBYL_CLI_MODEL_FLAGS_HELP
    "Interactive commands: /reset (new conversation), /quit.\n";

namespace {

struct Stream {
  bool show_reasoning = true;
  bool tty = false;
  bool in_reasoning = false;
  bool any_answer = false;
  size_t pieces = 0;
  std::chrono::steady_clock::time_point start, first;
  std::string answer;  // kept for the conversation history
};

int on_text(sibyl_channel channel, const char* piece, size_t len, void* user_data) {
  auto* s = static_cast<Stream*>(user_data);
  if (s->pieces++ == 0) s->first = std::chrono::steady_clock::now();
  if (channel == SIBYL_CHANNEL_REASONING) {
    if (!s->show_reasoning) return 0;
    if (!s->in_reasoning && s->tty) std::fputs("\x1b[2m", stdout);  // dim
    s->in_reasoning = true;
  } else {
    if (s->in_reasoning) std::fputs(s->tty ? "\x1b[0m\n\n" : "\n\n", stdout);
    s->in_reasoning = false;
    s->any_answer = true;
    s->answer.append(piece, len);
  }
  std::fwrite(piece, 1, len, stdout);
  std::fflush(stdout);
  return 0;
}


bool read_file(const std::string& path, std::string& out) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return false;
  out.assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
  return true;
}

// The grammar of --json-schema or --grammar (NULL when neither is given); exits on errors.
sibyl_grammar* grammar_from_flags(const sibyl::cli::Args& args) {
  if (args.has("--json-schema") && args.has("--grammar")) args.die("give --json-schema or --grammar, not both");
  const char* flag = args.has("--json-schema") ? "--json-schema" : args.has("--grammar") ? "--grammar" : nullptr;
  if (!flag) return nullptr;
  std::string text;
  if (!read_file(args.get(flag), text)) args.die(std::string("cannot read ") + flag + " " + args.get(flag));
  sibyl_grammar* g = nullptr;
  const sibyl_status st = args.has("--json-schema") ? sibyl_grammar_from_json_schema(text.c_str(), &g)
                                                    : sibyl_grammar_from_gbnf(text.c_str(), nullptr, &g);
  if (st != SIBYL_OK) args.die(args.get(flag) + ": " + sibyl_last_error_message());
  return g;
}

}  // namespace

int main(int argc, char** argv) {
  sibyl::cli::Args args(argc, argv,
                        sibyl::cli::with_model_flags({"--model", "--prompt", "--system", "--think-budget", "--max-new", "--seed", "--temperature",
                         "--top-k", "--top-p", "--json-schema", "--grammar", "--grammar-scope"}),
                        kUsage, sibyl::cli::with_model_switches({"--no-think", "--hide-reasoning"}));
  const std::string model_dir = args.get("--model", sibyl::cli::default_model_dir(argv[0]));
  const std::string scope = args.get("--grammar-scope", "answer");
  if (scope != "answer" && scope != "whole") args.die("--grammar-scope must be answer or whole");
  sibyl_grammar* grammar = grammar_from_flags(args);
  sibyl_model_options mo = sibyl::cli::model_options(args);
  sibyl_model* model = nullptr;
  if (sibyl_model_load(model_dir.c_str(), &mo, &model) != SIBYL_OK) {
    std::fprintf(stderr, "error: %s\n", sibyl_last_error_message());
    sibyl_grammar_destroy(grammar);
    return 1;
  }
  sibyl_session* session = nullptr;
  if (sibyl_session_create(model, nullptr, &session) != SIBYL_OK) {
    std::fprintf(stderr, "error: %s\n", sibyl_last_error_message());
    sibyl_model_destroy(model);
    sibyl_grammar_destroy(grammar);
    return 1;
  }

  sibyl_sampler_options so;
  sibyl_sampler_options_init(&so);
  so.temperature = static_cast<float>(args.get_double("--temperature", 0.0));
  so.top_k = static_cast<int32_t>(args.get_int("--top-k", 0));
  so.top_p = static_cast<float>(args.get_double("--top-p", 1.0));
  sibyl_chat_options co;
  sibyl_chat_options_init(&co);
  co.max_new_tokens = static_cast<uint32_t>(args.get_int("--max-new", 1024));
  co.think_budget = static_cast<int32_t>(args.get_int("--think-budget", -1));
  co.thinking = args.get_int("--no-think", 0) ? 0 : 1;
  co.sampler = &so;
  co.reseed = 1;
  co.seed = static_cast<uint64_t>(args.get_int("--seed", 0));
  co.grammar = grammar;
  co.grammar_scope = scope == "whole" ? SIBYL_GRAMMAR_WHOLE : SIBYL_GRAMMAR_ANSWER;

  Stream stream;
  stream.show_reasoning = args.get_int("--hide-reasoning", 0) == 0;
  stream.tty = isatty(STDOUT_FILENO) != 0;
  std::vector<std::string> roles, contents;  // the conversation so far
  if (args.has("--system")) {
    roles.push_back("system");
    contents.push_back(args.get("--system"));
  }

  auto reply = [&](const std::string& user) -> bool {
    roles.push_back("user");
    contents.push_back(user);
    std::vector<sibyl_chat_message> messages;
    for (size_t i = 0; i < roles.size(); ++i)
      messages.push_back({roles[i].c_str(), contents[i].data(), contents[i].size()});
    stream.start = std::chrono::steady_clock::now();
    stream.pieces = 0;
    stream.answer.clear();
    stream.in_reasoning = stream.any_answer = false;
    sibyl_chat_result result;
    result.struct_size = sizeof result;
    sibyl_status st = sibyl_session_chat(session, messages.data(), messages.size(), &co, on_text, &stream, &result);
    if (stream.in_reasoning && stream.tty) std::fputs("\x1b[0m", stdout);
    std::fputs("\n", stdout);
    std::fflush(stdout);
    if (st != SIBYL_OK) {
      std::fprintf(stderr, "error: %s\n", sibyl_last_error_message());
      return false;
    }
    roles.push_back("assistant");
    contents.push_back(stream.answer);
    auto end = std::chrono::steady_clock::now();
    double total = std::chrono::duration<double>(end - stream.start).count();
    double ttft = std::chrono::duration<double>((stream.pieces ? stream.first : end) - stream.start).count();
    uint32_t generated = result.reasoning_tokens + result.answer_tokens;
    std::fprintf(stderr, "[%u reasoning + %u answer tokens, %.1f tokens/s, first token after %.1f ms, prompt %u (+%u cached)]\n",
                 result.reasoning_tokens, result.answer_tokens, total > 0 ? generated / total : 0.0, ttft * 1e3,
                 result.prompt_tokens, result.reused_tokens);
    return true;
  };

  int rc = 0;
  if (args.has("--prompt")) {
    rc = reply(args.get("--prompt")) ? 0 : 1;
  } else {
    std::string line;
    while ((std::fputs("> ", stdout), std::fflush(stdout), std::getline(std::cin, line))) {
      if (line == "/quit") break;
      if (line == "/reset") {
        roles.resize(args.has("--system") ? 1 : 0);
        contents.resize(roles.size());
        continue;
      }
      if (line.empty()) continue;
      if (!reply(line)) {  // drop the failed turn and go on
        roles.pop_back();
        contents.pop_back();
      }
    }
  }
  sibyl_session_destroy(session);
  sibyl_model_destroy(model);
  sibyl_grammar_destroy(grammar);
  return rc;
}
