// The sampler's rules, each on logits whose right answer is known.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <map>
#include <random>
#include <vector>

#include "engine/model/sampler.h"

namespace sibyl::engine::test {
namespace {

const std::vector<float> kLogits = {1.0f, 3.0f, 2.0f, 0.5f, 2.9f};
const std::vector<int32_t> kNoHistory;

std::map<int32_t, int> histogram(const SamplerParams& p, int draws, uint64_t seed = 7) {
  Rng rng(seed);
  std::map<int32_t, int> h;
  for (int i = 0; i < draws; ++i) ++h[sample_token(kLogits.data(), 5, p, kNoHistory, rng)];
  return h;
}

TEST(Sampler, GreedyPicksArgmax) {
  Rng rng(1);
  EXPECT_EQ(sample_token(kLogits.data(), 5, {}, kNoHistory, rng), 1);
}

TEST(Sampler, RepetitionPenaltyDemotesSeenTokens) {
  Rng rng(1);
  SamplerParams p;
  p.repetition_penalty = 2.0f;  // 3.0 → 1.5, so 2.9 wins
  EXPECT_EQ(sample_token(kLogits.data(), 5, p, {1}, rng), 4);
  p.repetition_last_n = 1;  // only the last token (0) is penalised
  EXPECT_EQ(sample_token(kLogits.data(), 5, p, {1, 0}, rng), 1);
}

TEST(Sampler, TopKOneIsGreedy) {
  SamplerParams p;
  p.temperature = 1.5f;
  p.top_k = 1;
  EXPECT_EQ(histogram(p, 200), (std::map<int32_t, int>{{1, 200}}));
}

TEST(Sampler, TopKTwoKeepsTheTwoBest) {
  SamplerParams p;
  p.temperature = 1.0f;
  p.top_k = 2;
  auto h = histogram(p, 2000);
  EXPECT_EQ(h.size(), 2u);
  EXPECT_GT(h[1], 900);  // p ≈ 0.525 vs 0.475
  EXPECT_GT(h[4], 800);
}

TEST(Sampler, TopPKeepsTheNucleus) {
  SamplerParams p;
  p.temperature = 1.0f;
  p.top_p = 0.5f;  // probabilities: 0.36 (id 1), 0.33 (id 4), 0.13 (id 2), …
  auto h = histogram(p, 1000);
  EXPECT_EQ(h.size(), 2u);
  EXPECT_TRUE(h.count(1) && h.count(4));
}

TEST(Sampler, MinPDropsUnlikelyTokens) {
  SamplerParams p;
  p.temperature = 1.0f;
  p.min_p = 0.3f;  // keeps ids with p >= 0.3 · p_max: 1, 4, 2 (0.37 of max)
  auto h = histogram(p, 3000);
  EXPECT_EQ(h.size(), 3u);
  EXPECT_FALSE(h.count(0));
  EXPECT_FALSE(h.count(3));
}

TEST(Sampler, TemperatureFollowsSoftmax) {
  SamplerParams p;
  p.temperature = 1.0f;
  auto h = histogram(p, 20000);
  double z = 0;
  for (float l : kLogits) z += std::exp(l);
  for (int32_t id = 0; id < 5; ++id) EXPECT_NEAR(h[id] / 20000.0, std::exp(kLogits[id]) / z, 0.015) << id;
}

TEST(Sampler, TinyTemperatureNanAndInfinityStaySane) {
  Rng rng(3);
  SamplerParams p;
  for (float t : {1e-38f, 1e-45f}) {
    p.temperature = t;  // (score - max) / T stays finite: the argmax wins
    EXPECT_EQ(sample_token(kLogits.data(), 5, p, kNoHistory, rng), 1) << t;
  }
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> odd = {NAN, 0.5f, NAN, 2.0f, -inf};
  p.temperature = 0.0f;
  EXPECT_EQ(sample_token(odd.data(), 5, p, kNoHistory, rng), 3);  // NaN is never chosen
  p.temperature = 1.0f;
  for (int i = 0; i < 50; ++i) {
    int32_t t = sample_token(odd.data(), 5, p, kNoHistory, rng);
    EXPECT_TRUE(t == 1 || t == 3) << t;
  }
  std::vector<float> all_inf(5, -inf);
  EXPECT_EQ(sample_token(all_inf.data(), 5, p, kNoHistory, rng), 0);
}

TEST(Sampler, OnlyAllowedIdsAreDrawn) {
  Rng rng(11);
  std::vector<bool> allowed = {true, false, true, true, false};
  SamplerParams p;
  p.allowed = &allowed;
  EXPECT_EQ(sample_token(kLogits.data(), 5, p, kNoHistory, rng), 2);  // best allowed
  p.temperature = 2.0f;
  for (int i = 0; i < 200; ++i) {
    int32_t t = sample_token(kLogits.data(), 5, p, kNoHistory, rng);
    EXPECT_TRUE(allowed[t]) << t;
  }
}

// Plain greedy (no bias, no penalty) takes a one-pass argmax; a zero bias sends the same
// choice through the general path: both agree on ties, NaN, -infinity, masks and constraints.
TEST(Sampler, PlainGreedyAgreesWithTheGeneralPath) {
  std::mt19937 gen(5);
  std::uniform_int_distribution<int> pick(0, 9);
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  for (int trial = 0; trial < 400; ++trial) {
    const int64_t vocab = 1 + trial % 150;
    std::vector<float> logits(static_cast<size_t>(vocab));
    for (auto& l : logits) {
      const int r = pick(gen);
      l = r == 0 ? nan : r == 1 ? -inf : r == 2 ? 2.0f : static_cast<float>(pick(gen)) * 0.25f;  // ties likely
    }
    std::vector<bool> allowed(static_cast<size_t>(vocab - trial % 3));  // may be short: ids past it banned
    for (size_t i = 0; i < allowed.size(); ++i) allowed[i] = pick(gen) < 7;
    std::vector<uint64_t> constraint(static_cast<size_t>((vocab + 63) / 64) - (trial % 5 == 4 ? 1 : 0));
    for (auto& w : constraint) w = (static_cast<uint64_t>(gen()) << 32) | gen();
    SamplerParams p;
    if (trial % 2) p.allowed = &allowed;
    if (trial % 4 >= 2) p.constraint = &constraint;
    SamplerParams general = p;
    general.logit_bias = {{0, 0.0f}};
    Rng a(1), b(1);
    EXPECT_EQ(sample_token(logits.data(), vocab, p, kNoHistory, a),
              sample_token(logits.data(), vocab, general, kNoHistory, b))
        << "trial " << trial;
  }
}

TEST(Sampler, SameSeedSameTokens) {
  SamplerParams p;
  p.temperature = 0.9f;
  Rng a(42), b(42), c(43);
  std::vector<int32_t> sa, sb, sc;
  for (int i = 0; i < 64; ++i) {
    sa.push_back(sample_token(kLogits.data(), 5, p, kNoHistory, a));
    sb.push_back(sample_token(kLogits.data(), 5, p, kNoHistory, b));
    sc.push_back(sample_token(kLogits.data(), 5, p, kNoHistory, c));
  }
  EXPECT_EQ(sa, sb);
  EXPECT_NE(sa, sc);
}

TEST(Rng, KnownStreamIsStableAcrossPlatforms) {
  Rng r(0);
  uint64_t first = r.next();
  Rng again(0);
  EXPECT_EQ(again.next(), first);
  double u = Rng(5).uniform();
  EXPECT_GE(u, 0.0);
  EXPECT_LT(u, 1.0);
}

}  // namespace
}  // namespace sibyl::engine::test

namespace sibyl::engine {
namespace {

// Speculative sampling keeps the distribution: with any draft on offer, token frequencies
// match sample_token's probabilities (softmax with temperature, top-k, top-p).
TEST(Sampler, DraftAcceptanceKeepsTheDistribution) {
  const std::vector<float> logits = {1.0f, 2.5f, 0.3f, 2.0f, -1.0f, 1.7f};
  const std::vector<int32_t> history;
  SamplerParams p;
  p.temperature = 0.9f;
  p.top_k = 5;  // token 4 is never a candidate
  for (int32_t draft : {1, 2, 4}) {
    // expected: softmax over the 5 best at T = 0.9
    std::vector<double> want(logits.size(), 0.0);
    double sum = 0;
    for (size_t i = 0; i < logits.size(); ++i)
      if (i != 4) sum += want[i] = std::exp((logits[i] - 2.5) / 0.9);
    for (double& w : want) w /= sum;
    Rng rng(1234 + static_cast<uint64_t>(draft));
    const int n = 200000;
    std::vector<int> count(logits.size(), 0);
    for (int k = 0; k < n; ++k)
      ++count[static_cast<size_t>(sample_token_with_draft(logits.data(), 6, p, history, rng, draft))];
    for (size_t i = 0; i < logits.size(); ++i) {
      const double sigma = std::sqrt(want[i] * (1 - want[i]) / n) + 1e-9;
      EXPECT_LT(std::abs(count[i] / double(n) - want[i]), 5 * sigma + 1e-6) << "draft " << draft << " token " << i;
    }
  }
  p.temperature = 0.0f;  // greedy: the argmax, whatever the draft
  Rng rng(1);
  EXPECT_EQ(sample_token_with_draft(logits.data(), 6, p, history, rng, 3), 1);
}

}  // namespace
}  // namespace sibyl::engine

namespace sibyl::engine {
namespace {

// Logit bias comes first: it moves the greedy choice, -infinity bans a token whatever the
// temperature, and ids are taken as they are.
TEST(Sampler, LogitBiasMovesAndBansTokens) {
  const std::vector<float> logits = {1.0f, 2.5f, 0.3f, 2.0f};
  SamplerParams p;
  Rng rng(3);
  EXPECT_EQ(sample_token(logits.data(), 4, p, {}, rng), 1);
  p.logit_bias = {{3, 1.0f}};
  EXPECT_EQ(sample_token(logits.data(), 4, p, {}, rng), 3);
  p.logit_bias = {{1, -INFINITY}, {3, -INFINITY}};
  EXPECT_EQ(sample_token(logits.data(), 4, p, {}, rng), 0);
  p.temperature = 5.0f;
  for (int i = 0; i < 2000; ++i) {
    const int32_t t = sample_token(logits.data(), 4, p, {}, rng);
    ASSERT_TRUE(t == 0 || t == 2) << t;
  }
}

}  // namespace
}  // namespace sibyl::engine
