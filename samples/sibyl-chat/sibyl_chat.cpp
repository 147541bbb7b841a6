// sibyl-chat: a terminal chat with a reasoning model, written against the C ABI only.
// The model's thinking streams dimmed (or hidden), the answer in plain text, and a
// final line reports speed. One-shot with --prompt, interactive otherwise. With --tools the
// model may call tools: each call prints as a JSON line, and interactively you type its output.
#include <pthread.h>
#include <sibyl/sibyl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
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
    "  --tools FILE         tools the model may call: a JSON list of {name, description, parameters}\n"
    "                       (or OpenAI's {type: function, function: {...}}); a call prints as one line\n"
    "                       {\"tool_call\": {\"name\": ..., \"arguments\": {...}}}; interactively you then type its output\n"
    "  --tool-choice C      auto (default), none, required, or a tool's name (that one tool is called)\n"
    SIBYL_CLI_MODEL_FLAGS_HELP
    "Interactive commands: /reset (new conversation), /quit, /help; a line starting with // sends\n"
    "one / and the rest. Ctrl-C stops the reply being written (and, between replies, the program).\n";

namespace {

struct Stream {
  bool show_reasoning = true;
  bool tty = false;
  bool in_reasoning = false;
  bool any_answer = false;
  size_t pieces = 0;
  std::chrono::steady_clock::time_point start, first;
  std::string answer;  // kept for the conversation history
  std::vector<std::pair<std::string, std::string>> calls;  // this reply's tool calls
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


int on_tool_call(const char* name, size_t name_len, const char* args, size_t args_len, void* user_data) {
  auto* s = static_cast<Stream*>(user_data);
  if (s->in_reasoning) std::fputs(s->tty ? "\x1b[0m\n\n" : "\n\n", stdout);
  s->in_reasoning = false;
  s->calls.emplace_back(std::string(name, name_len), std::string(args, args_len));
  // The arguments are JSON the schema accepted: written as they are, inside one line.
  std::string line = "{\"tool_call\": {\"name\": " + nlohmann::json(s->calls.back().first).dump() + ", \"arguments\": ";
  for (char c : s->calls.back().second) line += c == '\n' ? ' ' : c;
  std::printf("%s}}\n", line.c_str());
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

// Ctrl-C: while a reply runs it cancels the reply (sibyl_session_cancel, from a thread of its
// own: a signal handler may not call into the library); between replies it ends the program.
std::atomic<sibyl_session*> g_replying{nullptr};

void watch_interrupts() {  // before any other thread starts, so that all of them block SIGINT
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::thread([set] {
    for (int sig = 0;;) {
      if (sigwait(&set, &sig) != 0) continue;
      if (sibyl_session* s = g_replying.load()) {
        sibyl_session_cancel(s);
      } else {
        std::fputs("\n", stdout);
        std::fflush(stdout);
        std::_Exit(130);
      }
    }
  }).detach();
}

// The tools of --tools FILE, with the strings they point to.
struct Tools {
  std::vector<std::string> names, descriptions, parameters;
  std::vector<sibyl_tool> list;
};

void load_tools(const sibyl::cli::Args& args, Tools& tools) {
  if (!args.has("--tools")) return;
  const std::string path = args.get("--tools");
  std::string text;
  if (!read_file(path, text)) args.die("cannot read --tools " + path);
  const nlohmann::ordered_json j = nlohmann::ordered_json::parse(text, nullptr, false);
  if (!j.is_array() || j.empty()) args.die(path + ": --tools wants a non-empty JSON list of tools");
  for (const auto& entry : j) {
    const auto& t = entry.contains("function") ? entry["function"] : entry;
    if (!t.is_object() || !t.contains("name") || !t["name"].is_string())
      args.die(path + ": every tool needs a \"name\" (a string)");
    tools.names.push_back(t["name"]);
    tools.descriptions.push_back(t.contains("description") && t["description"].is_string() ? t["description"] : "");
    tools.parameters.push_back(t.contains("parameters") ? t["parameters"].dump() : "");
  }
  for (size_t i = 0; i < tools.names.size(); ++i)
    tools.list.push_back({tools.names[i].c_str(), tools.descriptions[i].c_str(),
                          tools.parameters[i].empty() ? nullptr : tools.parameters[i].c_str()});
}

}  // namespace

int main(int argc, char** argv) {
  sibyl::cli::Args args(argc, argv,
                        sibyl::cli::with_model_flags({"--model", "--prompt", "--system", "--think-budget", "--max-new", "--seed", "--temperature",
                         "--top-k", "--top-p", "--json-schema", "--grammar", "--grammar-scope", "--tools", "--tool-choice"}),
                        kUsage, sibyl::cli::with_model_switches({"--no-think", "--hide-reasoning"}));
  const std::string model_dir = args.get("--model", sibyl::cli::default_model_dir());
  const std::string scope = args.get("--grammar-scope", "answer");
  if (scope != "answer" && scope != "whole") args.die("--grammar-scope must be answer or whole");
  sibyl_grammar* grammar = grammar_from_flags(args);
  Tools tools;
  load_tools(args, tools);
  const std::string tool_choice = args.get("--tool-choice", "auto");
  if (args.has("--tool-choice") && !args.has("--tools")) args.die("--tool-choice needs --tools");
  watch_interrupts();
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
  co.tools = tools.list.data();
  co.n_tools = tools.list.size();
  co.tool_choice = tool_choice == "auto" ? SIBYL_TOOL_CHOICE_AUTO
                   : tool_choice == "none" ? SIBYL_TOOL_CHOICE_NONE
                                           : SIBYL_TOOL_CHOICE_REQUIRED;
  if (tool_choice != "auto" && tool_choice != "none" && tool_choice != "required") co.tool_name = tool_choice.c_str();
  co.on_tool_call = on_tool_call;

  Stream stream;
  stream.show_reasoning = args.get_int("--hide-reasoning", 0) == 0;
  stream.tty = isatty(STDOUT_FILENO) != 0;
  std::vector<std::string> roles, contents;  // the conversation so far
  std::vector<size_t> call_message;          // its tool calls: the assistant message, name, arguments
  std::vector<std::string> call_names, call_args;
  if (args.has("--system")) {
    roles.push_back("system");
    contents.push_back(args.get("--system"));
  }
  auto forget_from = [&](size_t n_messages) {  // drops messages [n_messages, ...) and their calls
    roles.resize(n_messages);
    contents.resize(n_messages);
    while (!call_message.empty() && call_message.back() >= n_messages) {
      call_message.pop_back();
      call_names.pop_back();
      call_args.pop_back();
    }
  };

  bool cancelled = false;  // the last reply was stopped by Ctrl-C (what it wrote is kept)
  auto reply = [&](const std::string& role, const std::string& content) -> bool {
    roles.push_back(role);
    contents.push_back(content);
    std::vector<sibyl_chat_message> messages;
    for (size_t i = 0; i < roles.size(); ++i)
      messages.push_back({roles[i].c_str(), contents[i].data(), contents[i].size()});
    std::vector<sibyl_tool_call> calls;
    for (size_t i = 0; i < call_message.size(); ++i)
      calls.push_back({call_message[i], call_names[i].c_str(), call_args[i].c_str()});
    co.tool_calls = calls.data();
    co.n_tool_calls = calls.size();
    stream.start = std::chrono::steady_clock::now();
    stream.pieces = 0;
    stream.answer.clear();
    stream.calls.clear();
    stream.in_reasoning = stream.any_answer = false;
    sibyl_chat_result result;
    result.struct_size = sizeof result;
    g_replying = session;
    sibyl_status st = sibyl_session_chat(session, messages.data(), messages.size(), &co, on_text, &stream, &result);
    g_replying = nullptr;
    if (stream.in_reasoning && stream.tty) std::fputs("\x1b[0m", stdout);
    std::fputs("\n", stdout);
    std::fflush(stdout);
    if (st != SIBYL_OK) {
      std::fprintf(stderr, "error: %s\n", sibyl_last_error_message());
      return false;
    }
    roles.push_back("assistant");
    contents.push_back(stream.answer);
    for (const auto& [name, arguments] : stream.calls) {
      call_message.push_back(roles.size() - 1);
      call_names.push_back(name);
      call_args.push_back(arguments);
    }
    auto end = std::chrono::steady_clock::now();
    double total = std::chrono::duration<double>(end - stream.start).count();
    double ttft = std::chrono::duration<double>((stream.pieces ? stream.first : end) - stream.start).count();
    uint32_t generated = result.reasoning_tokens + result.answer_tokens;
    std::fprintf(stderr, "[%s%u reasoning + %u answer tokens, %.1f tokens/s, first token after %.1f ms, prompt %u (+%u cached)]\n",
                 result.stop_reason == SIBYL_STOP_CANCELLED ? "cancelled; " : "", result.reasoning_tokens,
                 result.answer_tokens, total > 0 ? generated / total : 0.0, ttft * 1e3, result.prompt_tokens,
                 result.reused_tokens);
    cancelled = result.stop_reason == SIBYL_STOP_CANCELLED;
    return true;
  };

  // Interactive: the outputs of the reply's tool calls, one line each, then the model goes on.
  auto answer_tool_calls = [&]() -> bool {
    while (!stream.calls.empty()) {
      const auto calls = stream.calls;
      const size_t before = roles.size();
      std::string output;
      for (size_t i = 0; i < calls.size(); ++i) {
        std::printf("output of %s> ", calls[i].first.c_str());
        std::fflush(stdout);
        if (!std::getline(std::cin, output)) return false;
        if (i + 1 < calls.size()) {
          roles.push_back("tool");
          contents.push_back(output);
        }
      }
      // The outputs answered the calls: the model goes on in words or calls again, as it likes.
      const sibyl_tool_choice choice = co.tool_choice;
      const char* name = co.tool_name;
      co.tool_choice = SIBYL_TOOL_CHOICE_AUTO;
      co.tool_name = nullptr;
      const bool ok = reply("tool", output);
      co.tool_choice = choice;
      co.tool_name = name;
      if (!ok) {
        forget_from(before);
        return true;
      }
    }
    return true;
  };

  int rc = 0;
  if (args.has("--prompt")) {
    rc = !reply("user", args.get("--prompt")) ? 1 : cancelled ? 130 : 0;
  } else {
    std::string line;
    while ((std::fputs("> ", stdout), std::fflush(stdout), std::getline(std::cin, line))) {
      if (line == "/quit") break;
      if (line == "/reset") {
        forget_from(args.has("--system") ? 1 : 0);
        continue;
      }
      if (line == "/help") {
        std::fputs("/reset: start a new conversation; /quit: leave; //text: send \"/text\"; Ctrl-C: stop the reply\n",
                   stdout);
        continue;
      }
      if (line.empty()) continue;
      if (line.rfind("//", 0) == 0) {
        line.erase(0, 1);
      } else if (line[0] == '/') {  // never sent to the model by mistake
        std::fprintf(stderr, "unknown command %s (/help lists them; //text sends \"/text\")\n", line.c_str());
        continue;
      }
      const size_t before = roles.size();
      if (!reply("user", line)) {  // drop the failed turn and go on
        forget_from(before);
        continue;
      }
      if (!answer_tool_calls()) break;
    }
  }
  sibyl_session_destroy(session);
  sibyl_model_destroy(model);
  sibyl_grammar_destroy(grammar);
  return rc;
}
