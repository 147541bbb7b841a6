#include "bench_mtp.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace sibyl::cli {
namespace {

using Clock = std::chrono::steady_clock;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n == 0 ? 0.0 : n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

void check(sibyl_status st, const char* what) {
  if (st == SIBYL_OK) return;
  std::fprintf(stderr, "error: %s: %s\n", what, sibyl_last_error_message());
  std::exit(1);
}

// Questions of the kinds the tiny-reasoner was trained on (and any chat model answers).
const char* const kQuestions[] = {
    "What is 6238 + 76?",
    "What is 904 - 387?",
    "What is 47 * 8?",
    "Mira sells a sword for 12 gold and a shield for 25 gold. How much for 2 sword and 1 shield?",
    "How many r are in the word strawberry?",
    "Which is larger, 4821 or 4812?",
};

std::vector<int32_t> prompt_for(sibyl_model* m, long long rep) {
  const char* q = kQuestions[rep % (sizeof kQuestions / sizeof *kQuestions)];
  const sibyl_chat_message msg{"user", q, std::char_traits<char>::length(q)};
  size_t len = 0;
  std::vector<int32_t> ids;
  sibyl_model_render_chat(m, &msg, 1, 1, nullptr, 0, &len);  // the size (0: no usable template)
  if (len == 0) return ids;
  std::string text(len, '\0');
  if (sibyl_model_render_chat(m, &msg, 1, 1, text.data(), text.size() + 1, &len) != SIBYL_OK) return ids;
  size_t n = 0;
  sibyl_model_tokenize(m, text.c_str(), text.size(), nullptr, 0, &n);
  ids.resize(n);
  if (sibyl_model_tokenize(m, text.c_str(), text.size(), ids.data(), ids.size(), &n) != SIBYL_OK) ids.clear();
  return ids;
}

// The chat prompt of question `rep`, or (no chat template) a fixed pseudo-random prompt.
std::vector<int32_t> prompt_or_random(sibyl_model* m, long long rep) {
  std::vector<int32_t> prompt = prompt_for(m, rep);
  if (!prompt.empty()) return prompt;
  sibyl_model_info info;
  info.struct_size = sizeof info;
  check(sibyl_model_get_info(m, &info), "model info");
  for (int i = 0; i < 32; ++i)
    prompt.push_back(static_cast<int32_t>((2654435761u * static_cast<uint32_t>(i + 7 * rep + 1)) %
                                          static_cast<uint32_t>(info.vocab_size)));
  return prompt;
}

struct Run {
  double tokens_per_s = 0;
  size_t tokens = 0;
  uint64_t drafted = 0, accepted = 0;
};

Run decode(sibyl_model* m, const std::vector<int32_t>& prompt, long long n_gen) {
  sibyl_session* s = nullptr;
  check(sibyl_session_create(m, nullptr, &s), "session");
  sibyl_generate_options g;
  sibyl_generate_options_init(&g);
  g.max_new_tokens = static_cast<uint32_t>(n_gen);
  struct Clocks {
    Clock::time_point first;
    bool seen = false;
  } clocks;
  auto on_token = [](int32_t, void* user) {
    auto* c = static_cast<Clocks*>(user);
    if (!c->seen) c->first = Clock::now(), c->seen = true;
    return 0;
  };
  size_t n = 0;
  check(sibyl_session_generate(s, prompt.data(), prompt.size(), &g, on_token, &clocks, &n), "generate");
  const double seconds = std::chrono::duration<double>(Clock::now() - clocks.first).count();
  Run r;
  r.tokens = n;
  r.tokens_per_s = n > 1 && seconds > 0 ? static_cast<double>(n - 1) / seconds : 0.0;
  check(sibyl_session_mtp_stats(s, &r.drafted, &r.accepted), "mtp stats");
  sibyl_session_destroy(s);
  return r;
}

// `n` sessions decode at once through submitted requests; aggregate tokens/s from the submit.
Run decode_batch(sibyl_model* m, long long n, long long first_question, long long n_gen) {
  std::vector<sibyl_session*> sessions(static_cast<size_t>(n));
  std::vector<sibyl_request*> requests(sessions.size());
  sibyl_generate_options g;
  sibyl_generate_options_init(&g);
  g.max_new_tokens = static_cast<uint32_t>(n_gen);
  std::vector<std::vector<int32_t>> prompts;
  for (long long i = 0; i < n; ++i) {
    check(sibyl_session_create(m, nullptr, &sessions[i]), "session");
    prompts.push_back(prompt_or_random(m, first_question + i));
  }
  const Clock::time_point t0 = Clock::now();
  for (size_t i = 0; i < sessions.size(); ++i)
    check(sibyl_session_submit_generate(sessions[i], prompts[i].data(), prompts[i].size(), &g, nullptr, &requests[i]),
          "submit");
  Run r;
  for (sibyl_request* q : requests) {
    sibyl_event e;
    e.struct_size = sizeof e;
    do {
      check(sibyl_request_wait(q, -1, nullptr), "wait");
      check(sibyl_request_poll(q, &e), "poll");
      if (e.type == SIBYL_EVENT_TOKEN) ++r.tokens;
    } while (e.type != SIBYL_EVENT_DONE);
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  r.tokens_per_s = seconds > 0 ? static_cast<double>(r.tokens) / seconds : 0.0;
  for (size_t i = 0; i < sessions.size(); ++i) {
    uint64_t d = 0, a = 0;
    check(sibyl_session_mtp_stats(sessions[i], &d, &a), "mtp stats");
    r.drafted += d;
    r.accepted += a;
    sibyl_request_destroy(requests[i]);
    sibyl_session_destroy(sessions[i]);
  }
  return r;
}

}  // namespace

MtpBatchComparison compare_mtp_batch(sibyl_model* with_mtp, sibyl_model* without, long long sessions, long long n_gen,
                                     long long reps) {
  MtpBatchComparison c;
  c.sessions = sessions;
  std::vector<double> with, plain;
  for (long long r = 0; r < reps; ++r) {
    const Run a = decode_batch(with_mtp, sessions, r * sessions, n_gen), b = decode_batch(without, sessions, r * sessions, n_gen);
    with.push_back(a.tokens_per_s);
    plain.push_back(b.tokens_per_s);
    c.drafted += a.drafted;
    c.accepted += a.accepted;
  }
  c.with_tokens_per_s = median(with);
  c.without_tokens_per_s = median(plain);
  return c;
}

MtpComparison compare_mtp(sibyl_model* with_mtp, sibyl_model* without, long long n_gen, long long reps) {
  std::vector<double> with, plain, tokens;
  MtpComparison c;
  for (long long r = 0; r < reps; ++r) {
    const std::vector<int32_t> prompt = prompt_or_random(with_mtp, r);
    const Run a = decode(with_mtp, prompt, n_gen), b = decode(without, prompt, n_gen);
    with.push_back(a.tokens_per_s);
    plain.push_back(b.tokens_per_s);
    tokens.push_back(static_cast<double>(a.tokens));
    c.drafted += a.drafted;
    c.accepted += a.accepted;
  }
  c.with_tokens_per_s = median(with);
  c.without_tokens_per_s = median(plain);
  c.tokens_per_rep = median(tokens);
  return c;
}

}  // namespace sibyl::cli
