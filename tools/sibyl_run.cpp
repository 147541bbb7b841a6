// sibyl-run: continue a token sequence with a model and print the new token ids.
#include <sibyl/sibyl.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <deque>
#include <fstream>
#include <iterator>

#include "cli_model.h"

static const char* kUsage =
    "usage: sibyl-run [--model PATH] --tokens \"1,2,3\" [options]\n"
    "       sibyl-run [--model PATH] --batch FILE [--sessions N] [options]\n"
    "       sibyl-run [--model PATH] --load-state FILE [--tokens \"1,2\"] [options]\n"
    "  --batch FILE         one JSON object per line, {\"id\": \"...\", \"tokens\": [...], \"max_new\": N};\n"
    "                       all run concurrently (batched); one line per request on stdout,\n"
    "                       {\"id\": \"...\", \"tokens\": [...]}, in the order they finish\n"
    "  --sessions N         --batch: at most N sessions live at once (default 8)\n"
    "  --save-state FILE    after generating, write the session's state to FILE\n"
    "  --load-state FILE    continue a saved session (same model) instead of starting empty\n"
    "  --model PATH         model directory, GGUF file or .sibyl pack (default: the embedded tiny-reasoner)\n"
    "  --max-new N          tokens to generate (default 32); stops early at end-of-sequence\n"
    "  --seed S             sampling seed (default 0)\n"
    "  --temperature T      0 = greedy (default)\n"
    "  --top-k K  --top-p P  --min-p P  --repeat-penalty R  --repeat-last-n N\n"
    SIBYL_CLI_MODEL_FLAGS_HELP
    "Prints the generated ids space-separated on stdout and timing on stderr.\n";

namespace {

struct Timing {
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now(), first;
  size_t count = 0;
};

int on_token(int32_t token, void* user_data) {
  auto* t = static_cast<Timing*>(user_data);
  if (t->count++ == 0) t->first = std::chrono::steady_clock::now();
  std::printf(t->count == 1 ? "%d" : " %d", token);
  std::fflush(stdout);
  return 0;
}

int fail(const char* what) {
  std::fprintf(stderr, "error: %s: %s\n", what, sibyl_last_error_message());
  return 1;
}

bool write_file(const std::string& path, const std::vector<char>& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return static_cast<bool>(f);
}

struct BatchItem {
  std::string id;
  std::vector<int32_t> tokens;
  long long max_new;
};

std::vector<BatchItem> read_batch(const sibyl::cli::Args& args, const std::string& path, long long default_max) {
  std::ifstream f(path);
  if (!f) args.die("cannot read --batch file " + path);
  std::vector<BatchItem> items;
  std::string line;
  for (int n = 1; std::getline(f, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    try {
      const nlohmann::json j = nlohmann::json::parse(line);
      BatchItem b{j.at("id").is_string() ? j.at("id").get<std::string>() : j.at("id").dump(),
                  j.at("tokens").get<std::vector<int32_t>>(), j.value("max_new", default_max)};
      if (b.tokens.empty() || b.max_new < 0) throw std::runtime_error("empty tokens or negative max_new");
      items.push_back(std::move(b));
    } catch (const std::exception& e) {
      args.die(path + ":" + std::to_string(n) + ": " + e.what());
    }
  }
  return items;
}

// --batch: every request through the scheduler, at most `n_sessions` at once.
int run_batch(sibyl_model* model, const std::vector<BatchItem>& items, long long n_sessions,
              sibyl_generate_options go) {
  struct Live {
    sibyl_session* session = nullptr;
    sibyl_request* request = nullptr;
    size_t item = 0;
    std::vector<int32_t> out;
  };
  std::vector<Live> live(static_cast<size_t>(std::min<long long>(n_sessions, static_cast<long long>(items.size()))));
  for (Live& l : live)
    if (sibyl_session_create(model, nullptr, &l.session) != SIBYL_OK) return fail("cannot create session");
  size_t next = 0, done = 0;
  int rc = 0;
  auto start = [&](Live& l) {
    l.item = next++;
    l.out.clear();
    go.max_new_tokens = static_cast<uint32_t>(items[l.item].max_new);
    const auto& t = items[l.item].tokens;
    if (sibyl_session_reset(l.session) != SIBYL_OK ||
        sibyl_session_submit_generate(l.session, t.data(), t.size(), &go, nullptr, &l.request) != SIBYL_OK) {
      std::printf("%s\n", nlohmann::json{{"id", items[l.item].id}, {"error", sibyl_last_error_message()}}.dump().c_str());
      l.request = nullptr;
      rc = 1;
      ++done;
    }
  };
  for (Live& l : live)
    if (next < items.size()) start(l);
  while (done < items.size()) {
    bool progressed = false;
    for (Live& l : live) {
      if (!l.request) continue;
      sibyl_event e;
      e.struct_size = sizeof e;
      while (sibyl_request_poll(l.request, &e) == SIBYL_OK && e.type != SIBYL_EVENT_NONE) {
        progressed = true;
        if (e.type == SIBYL_EVENT_TOKEN) l.out.push_back(e.token);
        if (e.type != SIBYL_EVENT_DONE) continue;
        nlohmann::json line{{"id", items[l.item].id}, {"tokens", l.out}};
        if (e.status != SIBYL_OK) {
          line["error"] = std::string(e.text, e.text_len);
          rc = 1;
        }
        std::printf("%s\n", line.dump().c_str());
        std::fflush(stdout);
        sibyl_request_destroy(l.request);
        l.request = nullptr;
        ++done;
        if (next < items.size()) start(l);
        break;
      }
    }
    if (!progressed)  // nothing new: wait a little on any live request
      for (Live& l : live)
        if (l.request) {
          sibyl_request_wait(l.request, 1000, nullptr);
          break;
        }
  }
  for (Live& l : live) sibyl_session_destroy(l.session);
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  sibyl::cli::Args args(argc, argv,
                        sibyl::cli::with_model_flags({"--model", "--tokens", "--max-new", "--seed", "--temperature", "--top-k", "--top-p",
                         "--min-p", "--repeat-penalty", "--repeat-last-n", "--batch", "--sessions",
                         "--save-state", "--load-state"}),
                        kUsage, sibyl::cli::with_model_switches({}));
  std::vector<int32_t> prompt;
  const bool batch = args.has("--batch"), resume = args.has("--load-state");
  if (batch && (args.has("--tokens") || resume || args.has("--save-state")))
    args.die("--batch takes its prompts from the file: no --tokens, --load-state or --save-state");
  if (!batch && (!sibyl::cli::parse_token_list(args.get("--tokens"), prompt) || (prompt.empty() && !resume)))
    args.die("--tokens needs a non-empty list of integer ids");
  const long long n_sessions = args.get_int("--sessions", 8);
  if (n_sessions < 1) args.die("--sessions must be at least 1");

  sibyl_model_options mo = sibyl::cli::model_options(args);
  sibyl_model* model = nullptr;
  if (sibyl_model_load(sibyl::cli::default_model_dir_or(args).c_str(), &mo, &model) != SIBYL_OK) return fail("cannot load model");
  sibyl_session* session = nullptr;
  if (!batch && sibyl_session_create(model, nullptr, &session) != SIBYL_OK) {
    sibyl_model_destroy(model);
    return fail("cannot create session");
  }
  if (resume) {
    std::ifstream f(args.get("--load-state"), std::ios::binary);
    if (!f) args.die("cannot read --load-state file " + args.get("--load-state"));
    const std::vector<char> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (sibyl_session_load_state(session, bytes.data(), bytes.size()) != SIBYL_OK) return fail("cannot load state");
  }

  sibyl_sampler_options so;
  sibyl_sampler_options_init(&so);
  so.temperature = static_cast<float>(args.get_double("--temperature", 0.0));
  so.top_k = static_cast<int32_t>(args.get_int("--top-k", 0));
  so.top_p = static_cast<float>(args.get_double("--top-p", 1.0));
  so.min_p = static_cast<float>(args.get_double("--min-p", 0.0));
  so.repetition_penalty = static_cast<float>(args.get_double("--repeat-penalty", 1.0));
  so.repetition_last_n = static_cast<int32_t>(args.get_int("--repeat-last-n", 0));
  sibyl_generate_options go;
  sibyl_generate_options_init(&go);
  long long max_new = args.get_int("--max-new", 32);
  if (max_new < 0) args.die("--max-new must not be negative");
  go.max_new_tokens = static_cast<uint32_t>(max_new);
  go.reseed = resume && !args.has("--seed") ? 0 : 1;  // a resumed session keeps its RNG
  go.seed = static_cast<uint64_t>(args.get_int("--seed", 0));
  go.sampler = &so;

  if (batch) {
    const int rc = run_batch(model, read_batch(args, args.get("--batch"), max_new), n_sessions, go);
    sibyl_model_destroy(model);
    return rc;
  }

  Timing timing;
  size_t n = 0;
  sibyl_status st = sibyl_session_generate(session, prompt.data(), prompt.size(), &go, on_token, &timing, &n);
  std::printf("\n");
  auto end = std::chrono::steady_clock::now();
  int rc = 0;
  if (st != SIBYL_OK) {
    rc = fail("generation failed");
  } else if (n > 0) {
    double total = std::chrono::duration<double>(end - timing.start).count();
    double first = std::chrono::duration<double>(timing.first - timing.start).count();
    double decode = total - first;
    std::fprintf(stderr, "prompt %zu tokens, generated %zu tokens in %.3f s; first token after %.1f ms",
                 prompt.size(), n, total, first * 1e3);
    if (n > 1 && decode > 0) std::fprintf(stderr, "; decode %.1f tokens/s", static_cast<double>(n - 1) / decode);
    uint64_t drafted = 0, accepted = 0;
    if (sibyl_session_mtp_stats(session, &drafted, &accepted) == SIBYL_OK && drafted > 0)
      std::fprintf(stderr, "; MTP drafts accepted %llu of %llu (%.1f %%)", static_cast<unsigned long long>(accepted),
                   static_cast<unsigned long long>(drafted), 100.0 * static_cast<double>(accepted) / static_cast<double>(drafted));
    std::fprintf(stderr, "\n");
  }
  if (rc == 0 && args.has("--save-state")) {
    size_t size = 0;
    sibyl_session_save_state(session, nullptr, 0, &size);  // the size first
    std::vector<char> bytes(size);
    size_t position = 0;
    if (sibyl_session_save_state(session, bytes.data(), bytes.size(), &size) != SIBYL_OK) {
      rc = fail("cannot save state");
    } else if (!write_file(args.get("--save-state"), bytes)) {
      std::fprintf(stderr, "error: cannot write %s\n", args.get("--save-state").c_str());
      rc = 1;
    } else if (sibyl_session_position(session, &position) == SIBYL_OK && position > 0) {
      std::fprintf(stderr, "state: %zu bytes for %zu tokens (%.1f bytes/token)\n", size, position,
                   static_cast<double>(size) / static_cast<double>(position));
    }
  }
  sibyl_session_destroy(session);
  sibyl_model_destroy(model);
  return rc;
}
