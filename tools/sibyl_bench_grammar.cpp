// sibyl-bench-grammar: what constrained decoding costs. For each test case (a JSON Schema and
// JSON documents it accepts) it compiles the schema, then walks each document's tokens as a
// model would produce them, timing the token mask before each one (and checking that the
// token is allowed, and end-of-sequence after the last). The first pass over a case's
// documents starts from a freshly compiled grammar (cold); later passes reuse it, as a game
// reusing its action schema does (warm). A third run compiles the schema again and prepares it
// for the vocabulary first (sibyl_grammar_prepare), then walks the documents once (prepared).
// With --model, one decode step of that model is timed too, and the mask is reported as a
// share of it.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli_args.h"
#include "engine/core/failure.h"
#include "engine/formats/file_util.h"
#include "engine/grammar/compiled_grammar.h"
#include "engine/grammar/gbnf.h"
#include "engine/grammar/json_schema.h"
#include "engine/grammar/token_constraint.h"
#include "engine/model/model.h"
#include "engine/model/session.h"
#include "engine/text/tokenizer.h"

static const char* kUsage =
    "usage: sibyl-bench-grammar [--tokenizer PATH | --model DIR] [--cases FILE] [--passes N] [--json]\n"
    "  --tokenizer PATH   tokenizer.json or a folder holding one (default: the embedded tiny-reasoner's)\n"
    "  --model DIR        a model: its tokenizer, and one decode step timed for the mask's share\n"
    "  --cases FILE       JSON list of {name, schema, documents} (default: tools/data/grammar_bench_cases.json)\n"
    "  --passes N         passes over each case's documents with its grammar kept (default 3; the first is cold)\n"
    "  --json             one JSON object on stdout instead of the table\n";

namespace {

using Clock = std::chrono::steady_clock;
using namespace sibyl::engine;

double us_since(Clock::time_point t) { return std::chrono::duration<double, std::micro>(Clock::now() - t).count(); }

struct Stats {
  double mean = 0, p50 = 0, p99 = 0, max = 0;
  size_t n = 0;
};

Stats stats_of(std::vector<double> v) {
  Stats s;
  s.n = v.size();
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  for (double x : v) s.mean += x;
  s.mean /= static_cast<double>(v.size());
  auto at = [&](double q) { return v[std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())))]; };
  s.p50 = at(0.5);
  s.p99 = at(0.99);
  s.max = v.back();
  return s;
}

nlohmann::json to_json(const Stats& s) {
  return {{"tokens", s.n}, {"mean_us", s.mean}, {"p50_us", s.p50}, {"p99_us", s.p99}, {"max_us", s.max}};
}

// Microseconds per decoded token of `model`: 64 greedy tokens after a short prompt.
double decode_step_us(const std::shared_ptr<Model>& model) {
  Session session(model, {});
  const std::vector<int32_t> prompt = model->tokenizer().encode("Once upon a time in a quiet village,");
  GenerateParams params;
  params.stop_at_eos = false;
  params.max_new_tokens = 8;  // the prompt, and a warm-up
  int64_t generated = 0;
  session.generate(prompt.data(), static_cast<int64_t>(prompt.size()), params, nullptr, generated, nullptr);
  params.max_new_tokens = 64;
  const auto t = Clock::now();
  session.generate(nullptr, 0, params, nullptr, generated, nullptr);
  return us_since(t) / static_cast<double>(std::max<int64_t>(generated, 1));
}

}  // namespace

int main(int argc, char** argv) {
  sibyl::cli::Args args(argc, argv, {"--tokenizer", "--model", "--cases", "--passes"}, kUsage, {"--json"});
  try {
    std::shared_ptr<Model> model;
    std::unique_ptr<Tokenizer> own_tokenizer;
    if (args.has("--model")) {
      model = Model::load(args.get("--model"), {});
    } else {
      own_tokenizer = Tokenizer::load(args.get("--tokenizer", sibyl::cli::default_model_dir()));
    }
    const Tokenizer& tok = model ? model->tokenizer() : *own_tokenizer;
    const std::string cases_path = args.get("--cases", std::string(SIBYL_GRAMMAR_BENCH_CASES));
    // ordered_json: a schema's properties keep their order.
    const nlohmann::ordered_json cases = nlohmann::ordered_json::parse(read_text_file(cases_path));
    const long long passes = args.get_int("--passes", 3);
    if (passes < 1 || passes > 1000) args.die("--passes must be in [1, 1000]");
    const bool as_json = args.get_int("--json", 0) != 0;

    auto t = Clock::now();
    tok.text_trie();
    const double trie_ms = us_since(t) / 1e3;
    std::vector<int32_t> eos;
    if (auto id = tok.token_id("<｜end▁of▁sentence｜>")) eos.push_back(*id);
    const int32_t end_id = eos.empty() ? tok.vocab_size() : eos[0];
    const int64_t vocab = tok.vocab_size() + (eos.empty() ? 1 : 0);
    if (eos.empty()) eos.push_back(end_id);  // a stand-in id past the vocabulary

    nlohmann::json report = {{"tokenizer_vocab", tok.vocab_size()}, {"trie_build_ms", trie_ms}, {"cases", nlohmann::json::array()}};
    std::vector<double> all_cold, all_warm, all_prepared;
    if (!as_json)
      std::printf("%-14s %8s %8s %6s | cold: %7s %7s | prepared: %7s %7s | warm: %7s %7s\n", "case", "compile",
                  "prepare", "tokens", "mean us", "p99 us", "mean us", "p99 us", "mean us", "p99 us");
    for (const nlohmann::ordered_json& c : cases) {
      const std::string name = c["name"].get<std::string>();
      t = Clock::now();
      const std::string gbnf = json_schema_to_gbnf(c["schema"].dump());
      const CompiledGrammar grammar(parse_gbnf(gbnf));
      const double compile_ms = us_since(t) / 1e3;
      std::vector<double> cold, warm, prepared;
      size_t tokens = 0;
      // Every document's tokens through `automaton`, each mask timed into `times`.
      auto walk = [&](const std::shared_ptr<GrammarAutomaton>& automaton, std::vector<double>& times) {
        for (const nlohmann::ordered_json& d : c["documents"]) {
          const std::vector<int32_t> ids = tok.encode(d.get<std::string>());
          TokenConstraint constraint(automaton, tok, eos, vocab);
          for (size_t i = 0; i <= ids.size(); ++i) {
            const auto start = Clock::now();
            const TokenMask& mask = constraint.mask();
            times.push_back(us_since(start));
            const int32_t want = i < ids.size() ? ids[i] : end_id;
            if (!mask_has(mask, want))
              fail(Errc::internal, name + ": the mask bans token " + std::to_string(i) + " (id " +
                                       std::to_string(want) + ") of a document the schema accepts");
            constraint.follow(want);
          }
        }
      };
      walk(grammar.whole, cold);
      tokens = cold.size();
      for (long long pass = 1; pass < passes; ++pass) walk(grammar.whole, warm);
      t = Clock::now();
      const CompiledGrammar again(parse_gbnf(gbnf));
      const size_t states = again.whole->prepare(tok.text_trie(), kPrepareStates);
      const double prepare_ms = us_since(t) / 1e3;
      walk(again.whole, prepared);
      all_cold.insert(all_cold.end(), cold.begin(), cold.end());
      all_warm.insert(all_warm.end(), warm.begin(), warm.end());
      all_prepared.insert(all_prepared.end(), prepared.begin(), prepared.end());
      const Stats sc = stats_of(cold), sw = stats_of(warm), sp = stats_of(prepared);
      report["cases"].push_back({{"name", name}, {"compile_ms", compile_ms}, {"gbnf_bytes", gbnf.size()},
                                 {"prepare_ms", prepare_ms}, {"prepared_states", states}, {"cold", to_json(sc)},
                                 {"prepared", to_json(sp)}, {"warm", to_json(sw)}});
      if (!as_json)
        std::printf("%-14s %5.2f ms %5.1f ms %6zu | %13.1f %7.1f | %17.1f %7.1f | %13.1f %7.1f\n", name.c_str(),
                    compile_ms, prepare_ms, tokens, sc.mean, sc.p99, sp.mean, sp.p99, sw.mean, sw.p99);
    }
    const Stats cold = stats_of(all_cold), warm = stats_of(all_warm), prepared = stats_of(all_prepared);
    report["cold"] = to_json(cold);
    report["prepared"] = to_json(prepared);
    report["warm"] = to_json(warm);
    if (!as_json)
      std::printf("%-14s %8s %8s %6zu | %13.1f %7.1f | %17.1f %7.1f | %13.1f %7.1f\n", "all", "", "", cold.n,
                  cold.mean, cold.p99, prepared.mean, prepared.p99, warm.mean, warm.p99);
    if (model) {
      const double step = decode_step_us(model);
      report["decode_step_us"] = step;
      report["cold_mean_share"] = cold.mean / step;
      report["warm_mean_share"] = warm.n ? warm.mean / step : 0.0;
      if (!as_json)
        std::printf("decode step %.1f us: the mask is %.2f%% of it cold, %.2f%% warm (means)\n", step,
                    100 * cold.mean / step, warm.n ? 100 * warm.mean / step : 0.0);
    }
    if (as_json)
      std::printf("%s\n", report.dump(2).c_str());
    else
      std::printf("vocabulary %d tokens, trie built in %.1f ms\n", tok.vocab_size(), trie_ms);
  } catch (const Failure& f) {
    std::fprintf(stderr, "error: %s\n", f.what());
    return 1;
  } catch (const nlohmann::json::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
