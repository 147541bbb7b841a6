// sibyl-logits: write the float32 logits of every position of a token sequence.
#include <sibyl/sibyl.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "cli_model.h"

static const char* kUsage =
    "usage: sibyl-logits [--model PATH] --tokens-file F --out OUT [--mode prefill|decode] [model flags]\n"
    "Reads whitespace-separated token ids from F and writes the logits of every\n"
    "position as raw little-endian float32, row-major [T, vocab], no header, to OUT.\n"
    "prefill: one forward over all tokens; decode: one token at a time (absorbed MLA).\n"
    "--model (a directory, GGUF file or .sibyl pack) defaults to the embedded tiny-reasoner.\n"
    SIBYL_CLI_MODEL_FLAGS_HELP;

namespace {
int fail(const char* what) {
  std::fprintf(stderr, "error: %s: %s\n", what, sibyl_last_error_message());
  return 1;
}
}  // namespace

int main(int argc, char** argv) {
  sibyl::cli::Args args(argc, argv, sibyl::cli::with_model_flags({"--model", "--tokens-file", "--out", "--mode"}), kUsage,
                        sibyl::cli::with_model_switches({}));
  for (const char* f : {"--tokens-file", "--out"})
    if (!args.has(f)) args.die(std::string(f) + " is required");
  const std::string mode = args.get("--mode", "prefill");
  if (mode != "prefill" && mode != "decode") args.die("--mode must be prefill or decode");

  std::ifstream in(args.get("--tokens-file"));
  if (!in) args.die("cannot read " + args.get("--tokens-file"));
  std::stringstream text;
  text << in.rdbuf();
  std::vector<int32_t> tokens;
  if (!sibyl::cli::parse_token_list(text.str(), tokens) || tokens.empty())
    args.die("the tokens file must hold at least one integer id, separated by whitespace");

  sibyl_model_options mo = sibyl::cli::model_options(args, SIBYL_PRECISION_EXACT);  // the references are exact
  sibyl_model* model = nullptr;
  if (sibyl_model_load(sibyl::cli::default_model_dir_or(args).c_str(), &mo, &model) != SIBYL_OK) return fail("cannot load model");
  sibyl_session_options opts;
  sibyl_session_options_init(&opts);
  opts.max_context = static_cast<uint32_t>(tokens.size());
  sibyl_session* session = nullptr;
  std::vector<float> all;
  int rc = 0;
  if (sibyl_session_create(model, &opts, &session) != SIBYL_OK) {
    rc = fail("cannot create session");
  } else {
    const float* logits = nullptr;
    size_t rows = 0, vocab = 0;
    if (mode == "prefill") {
      if (sibyl_session_append(session, tokens.data(), tokens.size(), SIBYL_LOGITS_ALL) != SIBYL_OK ||
          sibyl_session_logits(session, &logits, &rows, &vocab) != SIBYL_OK)
        rc = fail("forward pass failed");
      else
        all.assign(logits, logits + rows * vocab);
    } else {
      for (int32_t t : tokens) {
        if (sibyl_session_append(session, &t, 1, SIBYL_LOGITS_LAST) != SIBYL_OK ||
            sibyl_session_logits(session, &logits, &rows, &vocab) != SIBYL_OK) {
          rc = fail("decode step failed");
          break;
        }
        all.insert(all.end(), logits, logits + vocab);
      }
    }
  }
  if (rc == 0) {
    std::ofstream out(args.get("--out"), std::ios::binary);
    out.write(reinterpret_cast<const char*>(all.data()), static_cast<std::streamsize>(all.size() * sizeof(float)));
    if (!out) {
      std::fprintf(stderr, "error: cannot write %s\n", args.get("--out").c_str());
      rc = 1;
    }
  }
  sibyl_session_destroy(session);
  sibyl_model_destroy(model);
  return rc;
}
