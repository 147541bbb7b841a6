// npc-village: many NPCs share one reasoning model inside a 60 Hz game loop, written against
// the C ABI only. Each NPC owns a session and keeps asking the model small questions with
// sibyl_session_submit_chat; the game loop polls every request once per frame
// (sibyl_request_poll, never waiting) while the library's worker thread, below normal
// priority, runs the model. The frame period the player would see is measured and reported.
#include <sibyl/sibyl.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "cli_model.h"

static const char* kUsage =
    "usage: npc-village [options]\n"
    "A 60 Hz game loop in which NPCs, each with its own session on one shared model, keep\n"
    "asking the model questions; their answers are polled once per frame, never waited for.\n"
    "  --model PATH         model directory, GGUF file or .sibyl pack (default: the embedded tiny-reasoner)\n"
    "  --npcs N             number of NPCs, one session each (default 8; 0: the game loop alone)\n"
    "  --seconds S          how long the game runs (default 10)\n"
    "  --work-ms MS         simulated game work per frame, a busy loop (default 2)\n"
    "  --max-pause-ms MS    an NPC waits a random 0..MS before its next question (default 1000)\n"
    "  --think-budget N     reasoning tokens before the answer is forced (default: unlimited)\n"
    "  --max-new N          tokens per reply, reasoning included (default 256)\n"
    "  --seed S             seed of the questions and pauses (default 1)\n"
    "  --json               print only one JSON line of statistics at the end\n"
    "  --quiet              do not print the answers, only the summary\n"
    "  --report-slow-ms MS  report every Sibyl call of the game loop slower than MS, and every\n"
    "                       frame over 25 ms with where its time went\n"
    SIBYL_CLI_MODEL_FLAGS_HELP;

namespace {

using Clock = std::chrono::steady_clock;

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

// ------------------------------------------------------------------ questions

// One question of a task family the tiny-reasoner knows, and a piece of text its correct
// answer contains (e.g. "= 936." for "What is 347 + 589?").
struct Question {
  std::string text;
  std::string expect;
};

Question make_question(std::mt19937& rng) {
  auto uniform = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  auto number = [&](int max_digits) {  // 1..max_digits digits, every length equally likely
    int digits = uniform(1, max_digits), lo = 1;
    for (int i = 1; i < digits; ++i) lo *= 10;
    return uniform(digits == 1 ? 1 : lo, lo * 10 - 1);
  };
  switch (uniform(0, 5)) {
    case 0: {
      int a = number(4), b = number(4);
      return {"What is " + std::to_string(a) + " + " + std::to_string(b) + "?", "= " + std::to_string(a + b) + "."};
    }
    case 1: {
      int a = uniform(1000, 9999), b = uniform(10, a - 1);  // the minuends the model was trained on
      return {"What is " + std::to_string(a) + " - " + std::to_string(b) + "?", "= " + std::to_string(a - b) + "."};
    }
    case 2: {
      int a = uniform(2, 99), b = uniform(2, 9);
      return {"What is " + std::to_string(a) + " times " + std::to_string(b) + "?", "is " + std::to_string(a * b) + "."};
    }
    case 3: {
      static const char* const names[] = {"Mira", "Bram", "Tobin", "Lysa", "Sera", "Corin", "Aldric", "Nell"};
      struct Item {
        const char* name;
        int price;
      };
      static const Item items[] = {{"shield", 25}, {"lantern", 15}, {"apple", 3}, {"torch", 5},
                                   {"sword", 12},  {"arrow", 2},    {"bread", 4}, {"map", 9},
                                   {"bow", 30},    {"rope", 6},     {"helmet", 18}, {"potion", 7}};
      const int n_items = static_cast<int>(sizeof items / sizeof items[0]);
      int i = uniform(0, n_items - 1), j = uniform(0, n_items - 2);
      if (j >= i) ++j;
      int qi = uniform(1, 9), qj = uniform(1, 9);
      std::string text = std::string(names[uniform(0, 7)]) + " sells a " + items[i].name + " for " +
                         std::to_string(items[i].price) + " gold and a " + items[j].name + " for " +
                         std::to_string(items[j].price) + " gold. How much for " + std::to_string(qi) + " " +
                         items[i].name + " and " + std::to_string(qj) + " " + items[j].name + "?";
      return {text, "That is " + std::to_string(qi * items[i].price + qj * items[j].price) + " gold."};
    }
    case 4: {
      static const char* const words[] = {"tavern", "adventure", "scroll", "mississippi", "barrel", "banana",
                                          "treasure", "strawberry", "apple", "castle", "wizard"};
      std::string word = words[uniform(0, 10)];
      char letter = word[static_cast<size_t>(uniform(0, static_cast<int>(word.size()) - 1))];
      int count = static_cast<int>(std::count(word.begin(), word.end(), letter));
      return {std::string("How many ") + letter + " are in " + word + "?",
              (count == 1 ? "There is 1 " : "There are " + std::to_string(count) + " ") + letter + " in " + word};
    }
    default: {
      int a = uniform(10, 999), b = uniform(10, 998);
      if (b >= a) ++b;
      return {"Which is bigger, " + std::to_string(a) + " or " + std::to_string(b) + "?",
              std::to_string(std::max(a, b)) + " is bigger"};
    }
  }
}

// ------------------------------------------------------------------ simulated frame work

volatile uint64_t g_sink = 0;  // keeps the busy loop from being optimised away

void busy_work(uint64_t iterations) {
  uint64_t x = g_sink | 1;
  for (uint64_t i = 0; i < iterations; ++i) {  // xorshift64: a serial dependency chain
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
  }
  g_sink = x;
}

// Iterations of busy_work that take `ms` milliseconds on this machine (the fastest of a few
// tries, i.e. an undisturbed CPU; later frames may take longer when the CPU is shared).
uint64_t calibrate_work(double ms) {
  if (ms <= 0) return 0;
  const uint64_t probe = 200000;
  double best = 1e300;
  for (int i = 0; i < 7; ++i) {
    auto t = Clock::now();
    busy_work(probe);
    best = std::min(best, ms_between(t, Clock::now()));
  }
  return static_cast<uint64_t>(static_cast<double>(probe) * ms / std::max(best, 1e-6));
}

// ------------------------------------------------------------------ NPCs

struct Npc {
  int id = 0;
  sibyl_session* session = nullptr;
  sibyl_request* request = nullptr;  // the question in flight, or null while pausing
  uint64_t ask_frame = 0;            // pausing: the frame in which to ask the next question
  Question question;
  std::string answer;  // answer-channel text received so far
  Clock::time_point submitted;
};

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const auto rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(v.size())));  // nearest rank
  return v[std::min(v.size(), std::max<size_t>(rank, 1)) - 1];
}

std::string one_line(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  size_t start = s.find_first_not_of("\n ");
  s.erase(0, start == std::string::npos ? s.size() : start);
  std::replace(s.begin(), s.end(), '\n', ' ');
  return s;
}

const char* stop_name(sibyl_stop_reason r) {
  switch (r) {
    case SIBYL_STOP_EOS: return "eos";
    case SIBYL_STOP_MAX_TOKENS: return "max tokens";
    case SIBYL_STOP_STRING: return "stop string";
    case SIBYL_STOP_CALLBACK: return "callback";
    case SIBYL_STOP_CANCELLED: return "cancelled";
    case SIBYL_STOP_ERROR: return "error";
    default: return "?";
  }
}

}  // namespace

int main(int argc, char** argv) {
  sibyl::cli::Args args(argc, argv,
                        sibyl::cli::with_model_flags({"--model", "--npcs", "--seconds", "--work-ms", "--max-pause-ms",
                                                      "--think-budget", "--max-new", "--seed", "--report-slow-ms"}),
                        kUsage, sibyl::cli::with_model_switches({"--json", "--quiet"}));
  const long long n_npcs = args.get_int("--npcs", 8);
  const double seconds = args.get_double("--seconds", 10.0);
  const double work_ms = args.get_double("--work-ms", 2.0);
  const long long max_pause_ms = args.get_int("--max-pause-ms", 1000);
  const long long max_new = args.get_int("--max-new", 256);
  const long long think_budget = args.get_int("--think-budget", -1);
  if (n_npcs < 0 || n_npcs > 4096) args.die("--npcs must be in [0, 4096]");
  if (!(seconds > 0) || seconds > 86400) args.die("--seconds must be in (0, 86400]");
  if (!(work_ms >= 0) || work_ms > 1000) args.die("--work-ms must be in [0, 1000]");
  if (max_pause_ms < 0) args.die("--max-pause-ms must not be negative");
  if (max_new < 1 || max_new > 100000) args.die("--max-new must be in [1, 100000]");
  if (think_budget < -1 || think_budget > 100000) args.die("--think-budget must be -1 or in [0, 100000]");
  const double slow_ms = args.get_double("--report-slow-ms", -1);
  const bool json = args.has("--json");
  const bool quiet = json || args.has("--quiet");

  // One model for the whole village. Default model options: one library worker thread at
  // nice 10 runs every submitted request, batched; --threads sets the backend's CPU threads.
  const std::string model_path = sibyl::cli::default_model_dir_or(args);
  sibyl_model_options mo = sibyl::cli::model_options(args);
  sibyl_model* model = nullptr;
  if (sibyl_model_load(model_path.c_str(), &mo, &model) != SIBYL_OK) {
    std::fprintf(stderr, "error: %s\n", sibyl_last_error_message());
    return 1;
  }
  sibyl_model_info info;
  info.struct_size = sizeof info;
  if (sibyl_model_get_info(model, &info) != SIBYL_OK) {
    std::fprintf(stderr, "error: %s\n", sibyl_last_error_message());
    sibyl_model_destroy(model);
    return 1;
  }

  std::vector<Npc> npcs(static_cast<size_t>(n_npcs));
  std::mt19937 rng(static_cast<uint32_t>(args.get_int("--seed", 1)));
  const long long max_pause_frames = max_pause_ms * 60 / 1000;
  auto pause_frames = [&] {
    return static_cast<uint64_t>(std::uniform_int_distribution<long long>(0, max_pause_frames)(rng));
  };
  int rc = 0;
  for (size_t i = 0; i < npcs.size(); ++i) {
    npcs[i].id = static_cast<int>(i);
    npcs[i].ask_frame = pause_frames();  // stagger the first questions
    if (sibyl_session_create(model, nullptr, &npcs[i].session) != SIBYL_OK) {
      std::fprintf(stderr, "error: session for npc %zu: %s\n", i, sibyl_last_error_message());
      rc = 1;
      break;
    }
  }

  sibyl_chat_options co;
  sibyl_chat_options_init(&co);
  co.max_new_tokens = static_cast<uint32_t>(max_new);
  co.think_budget = static_cast<int32_t>(think_budget);

  const uint64_t work_iterations = calibrate_work(work_ms);
  if (!quiet)
    std::printf("npc-village: %lld NPCs on %s (%s backend, %d worker thread%s), %.3g s at 60 Hz, %.3g ms work per frame\n",
                n_npcs, model_path.c_str(), info.backend, info.worker_threads, info.worker_threads == 1 ? "" : "s",
                seconds, work_ms);

  // Statistics, all measured with the game loop's clock.
  std::vector<double> frame_ms, work_ms_seen, api_ms, answer_ms;
  uint64_t frames = 0, answers = 0, correct = 0, tokens = 0, errors = 0;
  const auto period = std::chrono::nanoseconds(16666667);  // 60 Hz
  const auto run_for = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  const Clock::time_point t0 = Clock::now();
  Clock::time_point deadline = t0, prev_start = t0;
  double prev_api = 0, prev_work = 0, prev_rest = 0;  // the last frame's parts, for --report-slow-ms

  // Runs one Sibyl call of the game loop; with --report-slow-ms, says which call was slow.
  auto timed = [&](const char* what, const Npc& npc, auto&& call) {
    const Clock::time_point t = Clock::now();
    const sibyl_status st = call();
    const double took = ms_between(t, Clock::now());
    if (slow_ms >= 0 && took > slow_ms)
      std::fprintf(stderr, "slow: %s (npc %d) took %.3f ms in frame %" PRIu64 "\n", what, npc.id, took, frames);
    return st;
  };

  while (rc == 0) {
    const Clock::time_point start = Clock::now();
    if (start - t0 >= run_for) break;
    if (frames > 0) {
      const double interval = ms_between(prev_start, start);
      frame_ms.push_back(interval);
      if (slow_ms >= 0 && interval > 25.0)
        std::fprintf(stderr,
                     "slow: frame %" PRIu64 " started %.3f ms after the last one (its Sibyl calls %.3f ms, work %.3f ms, "
                     "output %.3f ms; woke %.3f ms after its deadline)\n",
                     frames, interval, prev_api, prev_work, prev_rest, ms_between(deadline, start));
    }
    prev_start = start;

    // 1. The NPCs: read what the model produced since the last frame, ask new questions.
    for (Npc& npc : npcs) {
      if (!npc.request) {
        if (frames < npc.ask_frame) continue;
        npc.question = make_question(rng);
        npc.answer.clear();
        // A fresh one-message conversation per question: the request keeps the prefix it shares
        // with the session's last one (the template's opening, "What is ") and drops the rest on
        // the worker, so every context stays a few dozen tokens long. (No sibyl_session_reset
        // here: it takes the model's step lock, so on the frame thread it waits for a whole
        // batched step of the worker.)
        sibyl_chat_message message = {"user", npc.question.text.data(), npc.question.text.size()};
        npc.submitted = Clock::now();
        if (timed("sibyl_session_submit_chat", npc, [&] {
              return sibyl_session_submit_chat(npc.session, &message, 1, &co, nullptr, &npc.request);
            }) != SIBYL_OK) {
          std::fprintf(stderr, "error: npc %d could not ask: %s\n", npc.id, sibyl_last_error_message());
          rc = 1;
          break;
        }
        continue;
      }
      sibyl_event ev;
      ev.struct_size = sizeof ev;
      for (;;) {  // drain the queue, never wait
        if (timed("sibyl_request_poll", npc, [&] { return sibyl_request_poll(npc.request, &ev); }) != SIBYL_OK) {
          std::fprintf(stderr, "error: npc %d poll: %s\n", npc.id, sibyl_last_error_message());
          rc = 1;
          break;
        }
        if (ev.type == SIBYL_EVENT_NONE) break;
        if (ev.type == SIBYL_EVENT_TEXT && ev.channel == SIBYL_CHANNEL_ANSWER) npc.answer.append(ev.text, ev.text_len);
        if (ev.type != SIBYL_EVENT_DONE) continue;
        const Clock::time_point done = Clock::now();
        if (ev.status != SIBYL_OK) {
          std::fprintf(stderr, "error: npc %d, \"%s\": %s (%s)\n", npc.id, npc.question.text.c_str(),
                       ev.text ? ev.text : "", sibyl_status_string(ev.status));
          ++errors;
        } else {
          sibyl_chat_result result;
          result.struct_size = sizeof result;
          if (timed("sibyl_request_result", npc, [&] { return sibyl_request_result(npc.request, &result); }) == SIBYL_OK)
            tokens += result.reasoning_tokens + result.answer_tokens;
          const double latency = ms_between(npc.submitted, done);
          const std::string answer = one_line(npc.answer);
          const bool ok = answer.find(npc.question.expect) != std::string::npos;
          ++answers;
          correct += ok;
          answer_ms.push_back(latency);
          if (!quiet) {
            std::printf("[npc %d] %s -> %s (%.2f s)", npc.id, npc.question.text.c_str(),
                        answer.empty() ? "(no answer)" : answer.c_str(), latency / 1e3);
            if (ev.stop_reason != SIBYL_STOP_EOS) std::printf(" [stopped: %s]", stop_name(ev.stop_reason));
            if (!ok) std::printf(" [expected \"%s\"]", npc.question.expect.c_str());
            std::printf("\n");
          }
        }
        timed("sibyl_request_destroy", npc, [&] {
          sibyl_request_destroy(npc.request);
          return SIBYL_OK;
        });
        npc.request = nullptr;
        npc.ask_frame = frames + 1 + pause_frames();
        break;
      }
      if (rc != 0) break;
    }
    const Clock::time_point api_end = Clock::now();
    api_ms.push_back(ms_between(start, api_end));

    // 2. The rest of the game's frame: simulation, rendering... here a calibrated busy loop.
    busy_work(work_iterations);
    const Clock::time_point work_end = Clock::now();
    work_ms_seen.push_back(ms_between(api_end, work_end));
    if (!quiet) std::fflush(stdout);
    ++frames;
    prev_api = api_ms.back();
    prev_work = work_ms_seen.back();
    prev_rest = ms_between(work_end, Clock::now());

    // 3. Sleep until the next frame. A late frame starts the next one at once; the schedule
    //    restarts from there instead of catching up with a burst of short frames.
    deadline += period;
    const Clock::time_point now = Clock::now();
    if (deadline < now) deadline = now;
    std::this_thread::sleep_until(deadline);
  }
  const double elapsed_s = std::chrono::duration<double>(Clock::now() - t0).count();

  // Shut down: a request still running is cancelled by its destroy.
  uint64_t unfinished = 0;
  for (Npc& npc : npcs) {
    unfinished += npc.request != nullptr;
    sibyl_request_destroy(npc.request);
    sibyl_session_destroy(npc.session);
  }
  sibyl_model_destroy(model);
  if (rc != 0) return rc;

  const size_t over_25 = static_cast<size_t>(std::count_if(frame_ms.begin(), frame_ms.end(), [](double v) { return v > 25.0; }));
  const double frame_max = frame_ms.empty() ? 0 : *std::max_element(frame_ms.begin(), frame_ms.end());
  const double api_max = api_ms.empty() ? 0 : *std::max_element(api_ms.begin(), api_ms.end());
  if (json) {
    std::printf("{\"frames\": %" PRIu64 ", \"frame_ms_p50\": %.3f, \"frame_ms_p99\": %.3f, \"frame_ms_max\": %.3f, "
                "\"frames_over_25ms\": %zu, \"answers\": %" PRIu64 ", \"answer_ms_p50\": %.1f, \"answer_ms_p99\": %.1f, "
                "\"correct\": %" PRIu64 ", \"errors\": %" PRIu64 ", \"unfinished\": %" PRIu64 ", \"tokens\": %" PRIu64
                ", \"tokens_per_s\": %.1f, \"npcs\": %lld, \"seconds\": %.3f, \"work_ms_p50\": %.3f, \"work_ms_p99\": %.3f, "
                "\"api_ms_p99\": %.3f, \"api_ms_max\": %.3f}\n",
                frames, percentile(frame_ms, 50), percentile(frame_ms, 99), frame_max, over_25, answers,
                percentile(answer_ms, 50), percentile(answer_ms, 99), correct, errors, unfinished, tokens,
                elapsed_s > 0 ? static_cast<double>(tokens) / elapsed_s : 0.0, n_npcs, elapsed_s,
                percentile(work_ms_seen, 50), percentile(work_ms_seen, 99), percentile(api_ms, 99), api_max);
  } else {
    std::printf("\n%" PRIu64 " frames in %.1f s: frame period p50 %.2f ms, p99 %.2f ms, max %.2f ms, %zu over 25 ms\n",
                frames, elapsed_s, percentile(frame_ms, 50), percentile(frame_ms, 99), frame_max, over_25);
    std::printf("%" PRIu64 " answers (%" PRIu64 " correct, %" PRIu64 " errors): latency p50 %.0f ms, p99 %.0f ms; "
                "%.0f tokens/s; simulated work p50 %.2f ms; Sibyl calls per frame p99 %.3f ms, max %.3f ms\n",
                answers, correct, errors, percentile(answer_ms, 50), percentile(answer_ms, 99),
                elapsed_s > 0 ? static_cast<double>(tokens) / elapsed_s : 0.0, percentile(work_ms_seen, 50),
                percentile(api_ms, 99), api_max);
  }
  std::fflush(stdout);
  if (errors > 0) {
    std::fprintf(stderr, "error: %" PRIu64 " request%s failed\n", errors, errors == 1 ? "" : "s");
    return 1;
  }
  if (answers == 0 && n_npcs > 0) {
    std::fprintf(stderr, "error: no answer arrived in %.3g s\n", seconds);
    return 1;
  }
  return 0;
}
