// sibyl-run: continue a token sequence with a model and print the new token ids.
#include <sibyl/sibyl.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "cli_model.h"

static const char* kUsage =
    "usage: sibyl-run [--model PATH] --tokens \"1,2,3\" [options]\n"
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

}  // namespace

int main(int argc, char** argv) {
  sibyl::cli::Args args(argc, argv,
                        sibyl::cli::with_model_flags({"--model", "--tokens", "--max-new", "--seed", "--temperature", "--top-k", "--top-p",
                         "--min-p", "--repeat-penalty", "--repeat-last-n"}),
                        kUsage);
  std::vector<int32_t> prompt;
  if (!sibyl::cli::parse_token_list(args.get("--tokens"), prompt) || prompt.empty())
    args.die("--tokens needs a non-empty list of integer ids");

  sibyl_model_options mo = sibyl::cli::model_options(args);
  sibyl_model* model = nullptr;
  if (sibyl_model_load(sibyl::cli::default_model_dir_or(args, argv[0]).c_str(), &mo, &model) != SIBYL_OK) return fail("cannot load model");
  sibyl_session* session = nullptr;
  if (sibyl_session_create(model, nullptr, &session) != SIBYL_OK) {
    sibyl_model_destroy(model);
    return fail("cannot create session");
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
  go.reseed = 1;
  go.seed = static_cast<uint64_t>(args.get_int("--seed", 0));
  go.sampler = &so;

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
    std::fprintf(stderr, "\n");
  }
  sibyl_session_destroy(session);
  sibyl_model_destroy(model);
  return rc;
}
