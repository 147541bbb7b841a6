// The batched runtime: batch invariance (a session's logits are bitwise the same alone
// or batched, in any order), the paged cache (copy-on-write, shared prefixes, rewind,
// every page back in the pool), session state bytes, and the 160 tiny-reasoner eval
// problems submitted at once through 32 concurrent sessions.
#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "engine/chat/reasoning.h"
#include "engine/formats/file_util.h"
#include "engine/runtime/blocking.h"
#include "fixture_util.h"

namespace sibyl::engine::test {
namespace {

std::string reasoner_dir() { return data_dir() + "/../../models/tiny-reasoner"; }

std::shared_ptr<Model> load(const std::string& path, int workers = 1, int64_t kv_bytes = 0, int64_t page = 0) {
  ModelLoadOptions o;
  o.backend = backend::BackendKind::cpu;
  o.scheduler.workers = workers;
  o.kv_cache_bytes = kv_bytes;
  o.kv_page_tokens = page;
  return Model::load(path, o);
}

std::vector<int32_t> random_tokens(size_t n, int64_t vocab, uint32_t seed) {
  std::mt19937 g(seed);
  std::vector<int32_t> t(n);
  for (auto& x : t) x = static_cast<int32_t>(g() % static_cast<uint32_t>(vocab));
  return t;
}

bool bitwise_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * 4) == 0;
}

// Greedy tokens and the logits after every step of one session run alone.
struct Trace {
  std::vector<int32_t> tokens;
  std::vector<std::vector<float>> logits;
};

Trace run_alone(const std::shared_ptr<Model>& m, const std::vector<int32_t>& prompt, int steps) {
  Session s(m, {});
  Trace t;
  s.append(prompt.data(), static_cast<int64_t>(prompt.size()), LogitsMode::last);
  for (int i = 0; i < steps; ++i) {
    t.logits.push_back(s.logits());
    int32_t tok = s.sample({});
    t.tokens.push_back(tok);
    s.append(&tok, 1, LogitsMode::last);
  }
  return t;
}

// n sessions' random prompts (3 + stride·i tokens, seeded from `seed`) and their traces alone.
void run_each_alone(const std::shared_ptr<Model>& m, int n, int stride, uint32_t seed, int steps,
                    std::vector<std::vector<int32_t>>& prompts, std::vector<Trace>& alone) {
  for (int i = 0; i < n; ++i) {
    prompts.push_back(
        random_tokens(static_cast<size_t>(3 + stride * i), m->config().vocab_size, seed + static_cast<uint32_t>(i)));
    alone.push_back(run_alone(m, prompts.back(), steps));
  }
}

TEST(Runtime, BatchedStepsAreBitwiseEqualToSessionsAlone) {
  const auto m = load(data_dir() + "/tiny-v3", 0, 0, 16);
  const int64_t vocab = m->config().vocab_size;
  constexpr int kSessions = 6, kSteps = 5;
  std::vector<std::vector<int32_t>> prompts;
  std::vector<Trace> alone;
  run_each_alone(m, kSessions, 11, 100, kSteps, prompts, alone);
  // All sessions in every step through one forward; each round in a different order, and
  // the prompts of later sessions arrive while earlier ones decode (mixed steps).
  std::vector<std::unique_ptr<Session>> sessions;
  for (int i = 0; i < kSessions; ++i) sessions.push_back(std::make_unique<Session>(m, SessionOptions{}));
  std::vector<int> produced(kSessions, -1);  // -1: prompt not yet run
  std::mt19937 shuffle(7);
  for (int round = 0; round < kSteps + kSessions; ++round) {
    std::vector<int> order(kSessions);
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), shuffle);
    std::vector<int> in_step;
    std::vector<std::vector<int32_t>> feeds(kSessions);
    std::vector<SeqStep> seqs;
    std::lock_guard lock(m->step_mutex());
    for (int i : order) {
      if (produced[i] >= kSteps || i > round) continue;  // session i starts in round i
      Session& s = *sessions[i];
      if (produced[i] < 0) {
        feeds[i] = prompts[i];
      } else {
        feeds[i] = {alone[i].tokens[produced[i]]};
      }
      std::vector<PageCopy> copies;
      ASSERT_TRUE(s.reserve(*m, static_cast<int64_t>(feeds[i].size()), copies));
      seqs.push_back(s.step_for(feeds[i].data(), static_cast<int64_t>(feeds[i].size()), LogitsMode::last,
                                AttentionPath::automatic));
      in_step.push_back(i);
    }
    if (seqs.empty()) continue;
    std::vector<float> logits;
    m->forward(seqs, logits);
    for (size_t k = 0; k < in_step.size(); ++k) {
      const int i = in_step[k];
      const float* row = logits.data() + k * vocab;
      sessions[i]->commit(*m, feeds[i].data(), static_cast<int64_t>(feeds[i].size()), row, 1);
      ++produced[i];
      if (produced[i] < kSteps) {
        const std::vector<float>& want = alone[i].logits[produced[i]];
        EXPECT_TRUE(bitwise_equal(std::vector<float>(row, row + vocab), want))
            << "session " << i << " step " << produced[i] << " in a batch of " << in_step.size();
      }
    }
  }
}

// A decode step of many sessions runs in lanes side by side (one per CPU thread, here 3 on
// any machine): each lane's rows are still bitwise what they are alone, also when the
// lanes carry several rows of one sequence, and the logits come back in sequence order.
class RuntimeLanes : public ::testing::TestWithParam<backend::Precision> {};

TEST_P(RuntimeLanes, StepsSplitInLanesAreBitwiseEqualToSessionsAlone) {
  ModelLoadOptions o;
  o.backend = backend::BackendKind::cpu;
  o.backend_options.n_threads = 3;
  o.backend_options.precision = GetParam();
  o.scheduler.workers = 0;
  o.kv_page_tokens = 16;
  const auto m = Model::load(data_dir() + "/tiny-v3", o);
  const int64_t vocab = m->config().vocab_size;
  constexpr int kSessions = 9, kSteps = 3;
  std::vector<std::vector<int32_t>> prompts;
  std::vector<Trace> alone;
  run_each_alone(m, kSessions, 5, 300, kSteps, prompts, alone);
  const int64_t lanes_before = m->lane_steps();
  std::vector<std::unique_ptr<Session>> sessions;
  for (int i = 0; i < kSessions; ++i) sessions.push_back(std::make_unique<Session>(m, SessionOptions{}));
  std::lock_guard lock(m->step_mutex());
  // Every prompt's first two tokens in one step (9 sequences of 2 rows: 3 lanes of 6 rows),
  // then the rest of each prompt alone, then the sessions decode together.
  auto run = [&](const std::vector<std::vector<int32_t>>& feeds, LogitsMode mode) {
    std::vector<SeqStep> seqs;
    for (int i = 0; i < kSessions; ++i) {
      std::vector<PageCopy> copies;
      EXPECT_TRUE(sessions[i]->reserve(*m, static_cast<int64_t>(feeds[i].size()), copies));
      seqs.push_back(sessions[i]->step_for(feeds[i].data(), static_cast<int64_t>(feeds[i].size()), mode,
                                           AttentionPath::automatic));
    }
    std::vector<float> logits;
    m->forward(seqs, logits);
    for (int i = 0; i < kSessions; ++i)
      sessions[i]->commit(*m, feeds[i].data(), static_cast<int64_t>(feeds[i].size()),
                          mode == LogitsMode::last ? logits.data() + i * vocab : nullptr, mode == LogitsMode::last);
    return logits;
  };
  std::vector<std::vector<int32_t>> heads, feeds(kSessions);
  for (const auto& p : prompts) heads.emplace_back(p.begin(), p.begin() + 2);
  run(heads, LogitsMode::none);
  for (int i = 0; i < kSessions; ++i) {
    const std::vector<int32_t> rest(prompts[i].begin() + 2, prompts[i].end());
    sessions[i]->append(rest.data(), static_cast<int64_t>(rest.size()), LogitsMode::last);
    ASSERT_TRUE(bitwise_equal(sessions[i]->logits(), alone[i].logits[0])) << "session " << i;
  }
  for (int step = 0; step + 1 < kSteps; ++step) {
    for (int i = 0; i < kSessions; ++i) feeds[i] = {alone[i].tokens[step]};
    const std::vector<float> logits = run(feeds, LogitsMode::last);
    for (int i = 0; i < kSessions; ++i)
      EXPECT_TRUE(bitwise_equal(std::vector<float>(logits.begin() + i * vocab, logits.begin() + (i + 1) * vocab),
                                alone[i].logits[step + 1]))
          << "session " << i << " step " << step;
  }
  EXPECT_EQ(m->lane_steps() - lanes_before, kSteps);  // the prompt heads' step and each decode step
}

INSTANTIATE_TEST_SUITE_P(Precisions, RuntimeLanes,
                         ::testing::Values(backend::Precision::exact, backend::Precision::fast),
                         [](const auto& info) { return info.param == backend::Precision::fast ? "fast" : "exact"; });

TEST(Runtime, ConcurrentRequestsMatchSessionsAloneBitwise) {
  const auto m = load(reasoner_dir(), 1);
  const int64_t vocab = m->config().vocab_size;
  constexpr int kSessions = 12, kGen = 10;
  std::vector<std::shared_ptr<Session>> sessions;
  std::vector<std::shared_ptr<Request>> requests;
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < kSessions; ++i) {
    prompts.push_back(random_tokens(static_cast<size_t>(5 + 7 * i), vocab, 300 + i));
    sessions.push_back(std::make_shared<Session>(m, SessionOptions{}));
    requests.push_back(std::make_shared<Request>());
    GenerateJobParams p;
    p.prompt = prompts.back();
    p.max_new_tokens = kGen;
    p.stop_at_eos = false;
    m->scheduler().submit(make_generate_job(*sessions.back(), sessions.back(), requests.back(), std::move(p)));
  }
  for (int i = 0; i < kSessions; ++i) {
    std::vector<int32_t> got;
    Event e;
    for (;;) {
      requests[i]->wait(-1);
      if (!requests[i]->poll(e)) continue;
      if (e.kind == EventKind::token) got.push_back(e.token);
      if (e.kind == EventKind::done) break;
    }
    ASSERT_EQ(e.error, 0) << e.message;
    const Trace alone = run_alone(m, prompts[i], kGen);
    EXPECT_EQ(got, alone.tokens) << "session " << i;
    // The last token was appended too: the session's logits are the alone run's next ones.
    Session s(m, {});
    std::vector<int32_t> all = prompts[i];
    all.insert(all.end(), got.begin(), got.end());
    s.append(all.data(), static_cast<int64_t>(all.size()), LogitsMode::last);
    EXPECT_TRUE(bitwise_equal(sessions[i]->logits(), s.logits())) << "session " << i;
  }
}

// The 160 problems through 32 live sessions: every reply is the reference's. `mtp_batch` > 1:
// MTP drafts are verified in the batched steps too (the default drafts for one request only).
void eval_through_32_sessions(int64_t mtp_batch) {
  ModelLoadOptions o;
  o.backend = backend::BackendKind::cpu;
  o.scheduler.mtp_max_batch = mtp_batch;
  const auto m = Model::load(reasoner_dir(), o);
  uint64_t drafted = 0, accepted = 0;
  const nlohmann::json results = nlohmann::json::parse(read_text_file(reasoner_dir() + "/eval.public.json"))["results"];
  ASSERT_EQ(results.size(), 160u);
  constexpr size_t kLive = 32;
  struct Live {
    std::shared_ptr<Session> session;
    std::shared_ptr<Request> request;
    size_t problem = 0;
    std::vector<int32_t> out;
  };
  std::vector<Live> live(kLive);
  size_t next = 0, done = 0;
  auto start = [&](Live& l) {
    l.problem = next++;
    l.session = std::make_shared<Session>(m, SessionOptions{});
    l.request = std::make_shared<Request>();
    l.out.clear();
    const std::vector<ChatMessage> ask = {{"user", results[l.problem]["question"].get<std::string>(), {}}};
    m->scheduler().submit(make_chat_job(*l.session, l.session, l.request, m->tokenizer(), m->chat_format(), ask, {}));
  };
  for (Live& l : live) start(l);
  while (done < results.size()) {
    bool any = false;
    for (Live& l : live) {
      if (!l.request) continue;
      Event e;
      while (l.request->poll(e)) {
        any = true;
        if (e.kind == EventKind::token) l.out.push_back(e.token);
        if (e.kind != EventKind::done) continue;
        ASSERT_EQ(e.error, 0) << e.message;
        EXPECT_EQ(e.stop, StopReason::eos);
        EXPECT_EQ(l.out, results[l.problem]["output_ids"].get<std::vector<int32_t>>())
            << results[l.problem]["question"];
        ++done;
        drafted += l.session->drafted();
        accepted += l.session->accepted();
        l.request.reset();
        l.session.reset();
        if (next < results.size()) start(l);
        break;
      }
    }
    if (!any)
      for (Live& l : live)
        if (l.request) {
          l.request->wait(2000);
          break;
        }
  }
  // The worker drops its last references to finished sessions just after their end.
  int64_t in_use = -1;
  for (int i = 0; i < 200 && in_use != 0; ++i) {
    {
      std::lock_guard lock(m->step_mutex());
      in_use = m->kv_pages().pages_in_use();
    }
    if (in_use) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(in_use, 0) << "every cache page is back in the pool";
  if (mtp_batch > 1) {
    EXPECT_GT(drafted, 3000u);
    EXPECT_GT(accepted, drafted * 9 / 10);
  }
}

TEST(Runtime, EvalProblemsThroughThirtyTwoConcurrentSessions) { eval_through_32_sessions(1); }

TEST(Runtime, EvalProblemsThroughThirtyTwoSessionsVerifyingMtpDrafts) { eval_through_32_sessions(64); }

TEST(Runtime, SharedPrefixPagesAreComputedOnceAndForkIsCopyOnWrite) {
  const auto m = load(data_dir() + "/tiny-v3", 0, 0, 8);
  const int64_t vocab = m->config().vocab_size;
  const std::vector<int32_t> persona = random_tokens(40, vocab, 5);  // 5 full pages
  auto run = [&](Session& s, std::vector<int32_t> tail, RequestStats* stats) {
    std::vector<int32_t> prompt = persona;
    prompt.insert(prompt.end(), tail.begin(), tail.end());
    GenerateJobParams p;
    p.prompt = prompt;
    p.max_new_tokens = 4;
    p.stop_at_eos = false;
    auto r = std::make_shared<Request>(true);
    std::vector<int32_t> out;
    Event end =
        run_blocking(m->scheduler(), make_generate_job(s, nullptr, r, std::move(p)), r, nullptr, [&](const Event& e) {
          if (e.kind == EventKind::token) out.push_back(e.token);
          return false;
        });
    EXPECT_EQ(end.error, 0) << end.message;
    if (stats) *stats = r->stats();
    return out;
  };
  Session a(m, {}), b(m, {}), alone(m, {});
  RequestStats sa, sb;
  const auto out_a = run(a, {1, 2, 3}, &sa);
  const int64_t used_after_a = m->kv_pages().pages_in_use();
  const auto out_b = run(b, {4, 5}, &sb);
  EXPECT_EQ(sa.reused_tokens, 0);
  EXPECT_EQ(sb.reused_tokens, 40) << "b shares a's five persona pages";
  EXPECT_EQ(sb.prompt_tokens, 2);
  EXPECT_LT(m->kv_pages().pages_in_use() - used_after_a, used_after_a);
  {  // b's results equal a session that computed everything itself
    std::vector<int32_t> prompt = persona;
    prompt.insert(prompt.end(), {4, 5});
    Session fresh(m, {});
    fresh.append(prompt.data(), static_cast<int64_t>(prompt.size()), LogitsMode::last);
    std::vector<int32_t> out;
    for (int i = 0; i < 4; ++i) {
      int32_t t = fresh.sample({});
      out.push_back(t);
      fresh.append(&t, 1, LogitsMode::last);
    }
    EXPECT_EQ(out_b, out);
  }
  // Fork shares every page; writing into the fork copies the shared last page only.
  const int64_t before = m->kv_pages().pages_in_use();
  Session f(m, {});
  f.fork_from(b);
  EXPECT_EQ(m->kv_pages().pages_in_use(), before) << "a fork costs references, not pages";
  f.rewind(f.position() - 3);
  int32_t t = 7;
  f.append(&t, 1, LogitsMode::last);
  EXPECT_EQ(m->kv_pages().pages_in_use(), before + 1) << "one copied page";
  // b is unchanged by the fork's write: its next logits equal a replay.
  int32_t nb = b.sample({});
  b.append(&nb, 1, LogitsMode::last);
  std::vector<int32_t> hist = b.tokens();
  Session replay(m, {});
  replay.append(hist.data(), static_cast<int64_t>(hist.size()), LogitsMode::last);
  EXPECT_TRUE(bitwise_equal(b.logits(), replay.logits()));
  // Rewind releases pages.
  b.rewind(0);
  f.rewind(0);
  a.rewind(0);
  replay.rewind(0);
  EXPECT_EQ(m->kv_pages().pages_in_use(), 0);
}

TEST(Runtime, ThePoolFullWaitsAndWhatCanNeverFitFailsNamingSizes) {
  // 4 pages of 8 tokens.
  const auto probe = load(data_dir() + "/tiny-v3", 0, 0, 8);
  const int64_t page_bytes = static_cast<int64_t>(probe->kv_pages().page_bytes());
  const auto m = load(data_dir() + "/tiny-v3", 0, 4 * page_bytes, 8);
  EXPECT_EQ(m->kv_pages().max_pages(), 4);
  Session s(m, {});
  std::vector<int32_t> big = random_tokens(40, m->config().vocab_size, 1);  // 5 pages: never fits
  GenerateJobParams p;
  p.prompt = big;
  p.max_new_tokens = 1;
  auto r = std::make_shared<Request>(true);
  Event end = run_blocking(m->scheduler(), make_generate_job(s, nullptr, r, p), r, nullptr, nullptr);
  EXPECT_EQ(end.error, static_cast<int>(Errc::out_of_memory));
  EXPECT_NE(end.message.find("4 pages of 8 tokens"), std::string::npos) << end.message;
  EXPECT_EQ(s.position(), 0);
  // Direct appends report the same condition at once.
  try {
    s.append(big.data(), static_cast<int64_t>(big.size()), LogitsMode::last);
    ADD_FAILURE() << "expected out_of_memory";
  } catch (const Failure& f) {
    EXPECT_EQ(f.code(), Errc::out_of_memory);
  }
  EXPECT_EQ(m->kv_pages().pages_in_use(), 0);
}

TEST(Runtime, SessionStateRoundTripsAndRejectsBadBytes) {
  const auto m = load(data_dir() + "/tiny-v3", 0, 0, 16);
  const int64_t vocab = m->config().vocab_size;
  Session s(m, {});
  const auto prompt = random_tokens(37, vocab, 9);
  s.append(prompt.data(), static_cast<int64_t>(prompt.size()), LogitsMode::last);
  const std::vector<uint8_t> state = s.save_state();
  // Only the used rows: header + tokens + one logits row + 37 latent rows per layer + checksum.
  const size_t latent = 37 * static_cast<size_t>(m->config().n_layers * m->config().kv_width()) * 4;
  EXPECT_EQ(state.size(), 96 + 37 * 4 + static_cast<size_t>(vocab) * 4 + latent + 8);

  Session t(m, {});
  t.load_state(state.data(), state.size());
  EXPECT_EQ(t.tokens(), s.tokens());
  EXPECT_TRUE(bitwise_equal(t.logits(), s.logits()));
  for (int i = 0; i < 6; ++i) {  // the continuation is identical
    int32_t a = s.sample({}), b = t.sample({});
    ASSERT_EQ(a, b);
    s.append(&a, 1, LogitsMode::last);
    t.append(&b, 1, LogitsMode::last);
    ASSERT_TRUE(bitwise_equal(t.logits(), s.logits()));
  }
  // Corrupt, truncated and foreign states: Errc::format, the session unchanged.
  Session u(m, {});
  int32_t one = 3;
  u.append(&one, 1, LogitsMode::last);
  auto expect_format = [&](const std::vector<uint8_t>& bytes, const char* what) {
    try {
      u.load_state(bytes.data(), bytes.size());
      ADD_FAILURE() << what << ": loaded";
    } catch (const Failure& f) {
      EXPECT_EQ(f.code(), Errc::format) << what << ": " << f.what();
    }
    EXPECT_EQ(u.tokens(), std::vector<int32_t>{one}) << what;
  };
  for (size_t at : {size_t{0}, size_t{9}, size_t{20}, size_t{100}, state.size() / 2, state.size() - 1}) {
    std::vector<uint8_t> bad = state;
    bad[at] ^= 0x40;
    expect_format(bad, "flipped byte");
  }
  for (size_t len : {size_t{0}, size_t{50}, size_t{104}, state.size() - 8, state.size() - 1})
    expect_format(std::vector<uint8_t>(state.begin(), state.begin() + static_cast<std::ptrdiff_t>(len)), "truncated");
  const auto other = load(reasoner_dir(), 0);
  Session foreign(other, {});
  const auto ftoks = random_tokens(5, other->config().vocab_size, 2);
  foreign.append(ftoks.data(), 5, LogitsMode::last);
  expect_format(foreign.save_state(), "another model's state");
}

}  // namespace
}  // namespace sibyl::engine::test
