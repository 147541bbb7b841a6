// sibyl-bench: prompt-processing (pp) and generation (tg) speed, llama-bench style.
// Medians over repetitions; every repetition uses a fresh session.
#include <sibyl/sibyl.h>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "bench_mtp.h"
#include "cli_model.h"
#include "read_bandwidth.h"

static const char* kUsage =
    "usage: sibyl-bench [--model PATH] [options]\n"
    "  --model PATH  model directory, GGUF file or .sibyl pack (default: the embedded tiny-reasoner)\n"
    "  --prompt N    prompt tokens processed in one append (default 64; 0 = skip)\n"
    "  --gen N       tokens generated one at a time, greedy (default 32; 0 = skip)\n"
    "  --depth D     tokens already in the context before each test (default 0)\n"
    "  --reps R      repetitions; the median is reported (default 5)\n"
    SIBYL_CLI_MODEL_FLAGS_HELP
    "  --sessions N  also N concurrent sessions through the scheduler (a list such as 1,32 alternates\n"
    "                the counts rep by rep): all submit --prompt tokens at once, then all decode --gen\n"
    "                tokens at once; reports aggregate prompt and decode tokens/s and per-session\n"
    "                latency (with one count, its aggregates are the JSON's top-level figures)\n"
    "  --mtp         also compare decoding with speculative decoding (the model's MTP layer) and\n"
    "                without, alternated rep by rep: chat prompts, up to --gen tokens through the\n"
    "                blocking generate call; prints both rates, their ratio and the acceptance\n"
    "                (pp and tg above then run without MTP); with --sessions, also that many\n"
    "                concurrent chat requests each way (set --mtp-max-batch to draft in batches)\n"
    "  --json        print one JSON object instead of the table\n"
    "Also reported: the load time (open → ready for the first token), the first token's time,\n"
    "resident memory before and after each (Linux /proc/self/statm), and decode's memory-bandwidth\n"
    "ceiling: the read bandwidth measured with the same thread count ÷ the bytes one decoded token\n"
    "reads (weights of the dense layers, shared and top-k average routed experts, the latent cache\n"
    "at the mean context), with the fraction of it tg reached.\n";

namespace {

using Clock = std::chrono::steady_clock;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n == 0 ? 0.0 : n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Resident set size in MiB (0 where /proc is unavailable).
double rss_mib() {
  long pages = 0, resident = 0;
  if (FILE* f = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    std::fclose(f);
  }
  return static_cast<double>(resident) * static_cast<double>(sysconf(_SC_PAGESIZE)) / (1 << 20);
}

double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "error: %s: %s\n", what, sibyl_last_error_message());
  std::exit(1);
}

void check(sibyl_status st, const char* what) {
  if (st != SIBYL_OK) die(what);
}

// Deterministic token ids spread over the vocabulary.
std::vector<int32_t> tokens(size_t n, int32_t vocab, uint32_t salt) {
  std::vector<int32_t> t(n);
  uint32_t x = 2463534242u ^ salt;
  for (auto& id : t) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    id = static_cast<int32_t>(x % static_cast<uint32_t>(vocab));
  }
  return t;
}

// Through the scheduler: every session's prompt at once, then all sessions decode at once.
struct SessionsRun {
  double prompt_tokens_per_s = 0, gen_tokens_per_s = 0, latency_ms_p50 = 0, latency_ms_max = 0,
         first_token_ms_p50 = 0;
};

// Waits for a request's end (its events read and dropped); exits on a failure.
void wait_done(sibyl_request* r) {
  sibyl_event e;
  e.struct_size = sizeof e;
  for (;;) {
    check(sibyl_request_wait(r, -1, nullptr), "wait");
    check(sibyl_request_poll(r, &e), "poll");
    if (e.type == SIBYL_EVENT_DONE) break;
  }
  if (e.status != SIBYL_OK) {
    std::fprintf(stderr, "error: a session failed: %s\n", e.text);
    std::exit(1);
  }
}

SessionsRun run_sessions(sibyl_model* model, const sibyl_model_info& info, long long n_sessions, long long n_prompt,
                         long long n_gen, uint32_t salt) {
  SessionsRun out;
  std::vector<sibyl_session*> sessions(static_cast<size_t>(n_sessions));
  std::vector<std::vector<int32_t>> prompts;
  for (long long i = 0; i < n_sessions; ++i) {
    check(sibyl_session_create(model, nullptr, &sessions[i]), "session");
    prompts.push_back(tokens(static_cast<size_t>(std::max(1LL, n_prompt)), info.vocab_size,
                             salt * 977u + static_cast<uint32_t>(i)));
  }
  sibyl_generate_options g;
  sibyl_generate_options_init(&g);
  g.stop_at_eos = 0;
  std::vector<sibyl_request*> requests(sessions.size());
  // Every prompt at once (generate 0 tokens: the scheduler batches the prompts' chunks).
  g.max_new_tokens = 0;
  auto t0 = Clock::now();
  for (size_t i = 0; i < sessions.size(); ++i)
    check(sibyl_session_submit_generate(sessions[i], prompts[i].data(), prompts[i].size(), &g, nullptr, &requests[i]),
          "submit prompt");
  for (sibyl_request* r : requests) wait_done(r);
  out.prompt_tokens_per_s = static_cast<double>(n_sessions * std::max(1LL, n_prompt)) /
                            std::chrono::duration<double>(Clock::now() - t0).count();
  for (sibyl_request* r : requests) sibyl_request_destroy(r);
  // Then all decode at once.
  g.max_new_tokens = static_cast<uint32_t>(n_gen);
  t0 = Clock::now();
  for (size_t i = 0; i < sessions.size(); ++i)
    check(sibyl_session_submit_generate(sessions[i], nullptr, 0, &g, nullptr, &requests[i]), "submit");
  std::vector<double> latency, first;
  for (sibyl_request* r : requests) {
    wait_done(r);
    sibyl_chat_result res;
    res.struct_size = sizeof res;
    check(sibyl_request_result(r, &res), "result");
    latency.push_back(static_cast<double>(res.total_us) / 1000.0);
    first.push_back(static_cast<double>(res.first_token_us) / 1000.0);
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  for (sibyl_request* r : requests) sibyl_request_destroy(r);
  for (sibyl_session* s : sessions) sibyl_session_destroy(s);
  out.gen_tokens_per_s = static_cast<double>(n_sessions * n_gen) / seconds;
  out.latency_ms_p50 = median(latency);
  out.latency_ms_max = *std::max_element(latency.begin(), latency.end());
  out.first_token_ms_p50 = median(first);
  return out;
}

std::vector<long long> parse_counts(const sibyl::cli::Args& args, const std::string& text) {
  std::vector<long long> out;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t comma = text.find(',', pos);
    std::string item = text.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    char* end = nullptr;
    long long v = std::strtoll(item.c_str(), &end, 10);
    if (item.empty() || *end || v < 1 || v > 4096) args.die("--sessions takes counts from 1 to 4096, e.g. 32 or 1,32");
    out.push_back(v);
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  sibyl::cli::Args args(argc, argv, sibyl::cli::with_model_flags({"--model", "--prompt", "--gen", "--depth", "--reps", "--sessions"}), kUsage,
                        sibyl::cli::with_model_switches({"--json"}));
  const long long n_prompt = args.get_int("--prompt", 64), n_gen = args.get_int("--gen", 32),
                  depth = args.get_int("--depth", 0), reps = args.get_int("--reps", 5);
  if (n_prompt < 0 || n_gen < 0 || depth < 0 || reps <= 0) args.die("counts must not be negative; --reps >= 1");

  sibyl_model_options mo = sibyl::cli::model_options(args);
  const bool compare_mtp = args.has("--mtp");
  if (compare_mtp && n_gen == 0) args.die("--mtp needs --gen > 0");
  mo.mtp = 0;  // pp and tg measure the model's own step; --mtp compares below
  sibyl_model* model = nullptr;
  const double rss_start = rss_mib();
  auto t_load = Clock::now();
  check(sibyl_model_load(sibyl::cli::default_model_dir_or(args).c_str(), &mo, &model), "cannot load model");
  const double load_ms = ms_since(t_load), rss_loaded = rss_mib();
  sibyl_model_info info;
  info.struct_size = sizeof info;
  check(sibyl_model_get_info(model, &info), "model info");
  double first_token_ms = 0, rss_first_token = 0;
  {  // the first token of a fresh session: touches the pages one token needs
    sibyl_session* s = nullptr;
    check(sibyl_session_create(model, nullptr, &s), "session");
    int32_t tok = tokens(1, info.vocab_size, 7)[0];
    auto t0 = Clock::now();
    check(sibyl_session_append(s, &tok, 1, SIBYL_LOGITS_LAST), "first token");
    first_token_ms = ms_since(t0);
    rss_first_token = rss_mib();
    sibyl_session_destroy(s);
  }

  std::vector<double> pp, tg;
  for (long long r = 0; r < reps; ++r) {
    sibyl_session* s = nullptr;
    check(sibyl_session_create(model, nullptr, &s), "session");
    std::vector<int32_t> ctx = tokens(static_cast<size_t>(depth), info.vocab_size, 1);
    check(sibyl_session_append(s, ctx.data(), ctx.size(), SIBYL_LOGITS_NONE), "depth fill");
    if (n_prompt > 0) {
      std::vector<int32_t> p = tokens(static_cast<size_t>(n_prompt), info.vocab_size, 2 + static_cast<uint32_t>(r));
      auto t0 = Clock::now();
      check(sibyl_session_append(s, p.data(), p.size(), SIBYL_LOGITS_LAST), "prompt");
      pp.push_back(static_cast<double>(n_prompt) / std::chrono::duration<double>(Clock::now() - t0).count());
      check(sibyl_session_rewind(s, static_cast<size_t>(depth)), "rewind");
    }
    if (n_gen > 0) {
      int32_t tok = tokens(1, info.vocab_size, 99)[0];
      auto t0 = Clock::now();
      for (long long i = 0; i < n_gen; ++i) {
        check(sibyl_session_append(s, &tok, 1, SIBYL_LOGITS_LAST), "decode");
        check(sibyl_session_sample(s, nullptr, &tok), "sample");
      }
      tg.push_back(static_cast<double>(n_gen) / std::chrono::duration<double>(Clock::now() - t0).count());
    }
    sibyl_session_destroy(s);
  }

  // Concurrent sessions, counts alternating rep by rep (one sitting, same conditions).
  std::vector<long long> counts;
  if (args.has("--sessions")) counts = parse_counts(args, args.get("--sessions", ""));
  if (!counts.empty() && n_gen == 0) args.die("--sessions needs --gen > 0");
  std::vector<std::vector<SessionsRun>> runs(counts.size());
  for (long long r = 0; r < reps; ++r)
    for (size_t c = 0; c < counts.size(); ++c)
      runs[c].push_back(run_sessions(model, info, counts[c], n_prompt, n_gen, static_cast<uint32_t>(r + 1)));
  auto med = [](const std::vector<SessionsRun>& v, double SessionsRun::*field) {
    std::vector<double> x;
    for (const SessionsRun& s : v) x.push_back(s.*field);
    return median(x);
  };

  sibyl::cli::MtpComparison mtp;
  std::vector<sibyl::cli::MtpBatchComparison> mtp_batches;
  if (compare_mtp) {
    sibyl_model_options with = mo;
    with.mtp = 1;
    sibyl_model* spec = nullptr;
    check(sibyl_model_load(sibyl::cli::default_model_dir_or(args).c_str(), &with, &spec), "cannot load model");
    sibyl_model_info si;
    si.struct_size = sizeof si;
    check(sibyl_model_get_info(spec, &si), "model info");
    if (!si.mtp) {
      std::fprintf(stderr, "error: --mtp: the model has no MTP layer (num_nextn_predict_layers is 0)\n");
      return 1;
    }
    mtp = sibyl::cli::compare_mtp(spec, model, n_gen, reps);
    for (long long count : (args.has("--sessions") ? parse_counts(args, args.get("--sessions", "")) : std::vector<long long>{}))
      if (count > 1) mtp_batches.push_back(sibyl::cli::compare_mtp_batch(spec, model, count, n_gen, reps));
    sibyl_model_destroy(spec);
  }
  const double acceptance = mtp.drafted ? static_cast<double>(mtp.accepted) / static_cast<double>(mtp.drafted) : 0.0;
  const double mtp_speedup = mtp.without_tokens_per_s > 0 ? mtp.with_tokens_per_s / mtp.without_tokens_per_s : 0.0;

  const double kv_mib = static_cast<double>(info.kv_bytes_per_token) / (1 << 20);
  // Decode's ceiling: what one token reads at the mean context of the tg test ÷ bandwidth.
  const int bw_threads = mo.n_threads > 0 ? mo.n_threads : static_cast<int>(std::thread::hardware_concurrency());
  const double bandwidth = n_gen > 0 ? sibyl::cli::read_bandwidth(bw_threads) : 0.0;
  const double token_bytes = static_cast<double>(info.decode_weight_bytes) +
                             static_cast<double>(info.kv_bytes_per_token) * (static_cast<double>(depth) + 0.5 * n_gen);
  const double ceiling = token_bytes > 0 ? bandwidth / token_bytes : 0.0;
  const double fraction = ceiling > 0 ? median(tg) / ceiling : 0.0;
  const char* precision = info.precision == SIBYL_PRECISION_EXACT ? "exact" : "fast";
  const double gen_top = counts.size() == 1 ? med(runs[0], &SessionsRun::gen_tokens_per_s) : median(tg);
  const double prompt_top = counts.size() == 1 ? med(runs[0], &SessionsRun::prompt_tokens_per_s) : median(pp);
  if (args.has("--json")) {
    std::printf("{\"model\": \"%s\", \"backend\": \"%s\", \"parameters\": %llu, \"depth\": %lld, "
                "\"prompt_tokens\": %lld, \"prompt_tokens_per_s\": %.3f, \"gen_tokens\": %lld, "
                "\"gen_tokens_per_s\": %.3f, \"reps\": %lld, \"kv_bytes_per_token\": %llu, \"load_ms\": %.3f, "
                "\"first_token_ms\": %.3f, \"rss_start_mib\": %.1f, \"rss_loaded_mib\": %.1f, "
                "\"rss_first_token_mib\": %.1f, \"precision\": \"%s\", \"cpu_simd\": \"%s\", "
                "\"decode_bytes_per_token\": %.0f, \"read_bandwidth_gb_s\": %.3f, "
                "\"ceiling_tokens_per_s\": %.3f, \"ceiling_fraction\": %.4f",
                sibyl::cli::default_model_dir_or(args).c_str(), info.backend, static_cast<unsigned long long>(info.n_parameters), depth,
                n_prompt, prompt_top, n_gen, gen_top, reps,
                static_cast<unsigned long long>(info.kv_bytes_per_token), load_ms, first_token_ms, rss_start,
                rss_loaded, rss_first_token, precision, info.cpu_simd, token_bytes, bandwidth / 1e9, ceiling,
                fraction);
    // With one --sessions count, its aggregates are the top-level prompt_/gen_tokens_per_s as well.
    if (counts.size() == 1)
      std::printf(", \"sessions\": %lld, \"single_prompt_tokens_per_s\": %.3f, \"single_gen_tokens_per_s\": %.3f",
                  counts[0], median(pp), median(tg));
    std::printf(", \"sessions_runs\": [");
    for (size_t c = 0; c < counts.size(); ++c)
      std::printf("%s{\"sessions\": %lld, \"prompt_tokens_per_s\": %.3f, \"gen_tokens_per_s\": %.3f, "
                  "\"latency_ms_p50\": %.3f, \"latency_ms_max\": %.3f, \"first_token_ms_p50\": %.3f}",
                  c ? ", " : "", counts[c], med(runs[c], &SessionsRun::prompt_tokens_per_s),
                  med(runs[c], &SessionsRun::gen_tokens_per_s),
                  med(runs[c], &SessionsRun::latency_ms_p50), med(runs[c], &SessionsRun::latency_ms_max),
                  med(runs[c], &SessionsRun::first_token_ms_p50));
    std::printf("]");
    if (compare_mtp)
      std::printf(", \"mtp\": {\"gen_tokens_per_s\": %.3f, \"no_mtp_gen_tokens_per_s\": %.3f, \"speedup\": %.4f, "
                  "\"drafted\": %llu, \"accepted\": %llu, \"acceptance\": %.4f, \"tokens_per_rep\": %.1f}",
                  mtp.with_tokens_per_s, mtp.without_tokens_per_s, mtp_speedup,
                  static_cast<unsigned long long>(mtp.drafted), static_cast<unsigned long long>(mtp.accepted),
                  acceptance, mtp.tokens_per_rep);
    if (compare_mtp) {
      std::printf(", \"mtp_sessions\": [");
      for (size_t i = 0; i < mtp_batches.size(); ++i)
        std::printf("%s{\"sessions\": %lld, \"gen_tokens_per_s\": %.3f, \"no_mtp_gen_tokens_per_s\": %.3f, "
                    "\"drafted\": %llu, \"accepted\": %llu}",
                    i ? ", " : "", mtp_batches[i].sessions, mtp_batches[i].with_tokens_per_s,
                    mtp_batches[i].without_tokens_per_s, static_cast<unsigned long long>(mtp_batches[i].drafted),
                    static_cast<unsigned long long>(mtp_batches[i].accepted));
      std::printf("]");
    }
    std::printf("}\n");
  } else {
    std::printf("model %s (%s, %.2f M parameters, %s backend), KV cache %.4f MiB/token\n",
                sibyl::cli::default_model_dir_or(args).c_str(), info.architecture, static_cast<double>(info.n_parameters) / 1e6,
                info.backend, kv_mib);
    std::printf("load %.1f ms (RSS %.1f -> %.1f MiB); first token %.1f ms (RSS %.1f MiB)\n", load_ms, rss_start,
                rss_loaded, first_token_ms, rss_first_token);
    std::printf("precision %s (CPU kernels: %s)\n", precision, info.cpu_simd[0] ? info.cpu_simd : "-");
    if (n_gen > 0)
      std::printf("decode reads %.2f MB/token; read bandwidth %.1f GB/s (%d threads) -> ceiling %.1f tok/s; "
                  "tg reached %.1f %%\n",
                  token_bytes / 1e6, bandwidth / 1e9, bw_threads, ceiling, 100.0 * fraction);
    std::printf("| test            | depth | tokens/s (median of %lld) |\n|-----------------|-------|---------|\n", reps);
    if (n_prompt > 0) std::printf("| pp%-13lld | %5lld | %9.1f |\n", n_prompt, depth, median(pp));
    if (n_gen > 0) std::printf("| tg%-13lld | %5lld | %9.1f |\n", n_gen, depth, median(tg));
    for (size_t c = 0; c < counts.size(); ++c) {
      std::printf("| pp%lld x%-4lld sess |     0 | %9.1f | aggregate, every prompt submitted at once\n",
                  std::max(1LL, n_prompt), counts[c], med(runs[c], &SessionsRun::prompt_tokens_per_s));
      std::printf("| tg%lld x%-4lld sess | %5lld | %9.1f | aggregate; per session %.1f ms median, %.1f ms max\n",
                  n_gen, counts[c], n_prompt, med(runs[c], &SessionsRun::gen_tokens_per_s),
                  med(runs[c], &SessionsRun::latency_ms_p50), med(runs[c], &SessionsRun::latency_ms_max));
    }
    if (compare_mtp) {
      std::printf("| chat tg (MTP)   |     0 | %9.1f | speculative decoding: %.2fx, drafts accepted %.1f %% (%llu of %llu)\n",
                  mtp.with_tokens_per_s, mtp_speedup, 100.0 * acceptance,
                  static_cast<unsigned long long>(mtp.accepted), static_cast<unsigned long long>(mtp.drafted));
      std::printf("| chat tg (no MTP)|     0 | %9.1f | median %.0f tokens per reply, alternated rep by rep\n",
                  mtp.without_tokens_per_s, mtp.tokens_per_rep);
      for (const auto& b : mtp_batches)
        std::printf("| chat x%-4lld MTP  |     0 | %9.1f | aggregate; without MTP %.1f (%.2fx); drafts accepted %llu of %llu\n",
                    b.sessions, b.with_tokens_per_s, b.without_tokens_per_s,
                    b.without_tokens_per_s > 0 ? b.with_tokens_per_s / b.without_tokens_per_s : 0.0,
                    static_cast<unsigned long long>(b.accepted), static_cast<unsigned long long>(b.drafted));
    }
  }
  sibyl_model_destroy(model);
  return 0;
}
