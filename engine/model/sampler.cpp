#include "engine/model/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <unordered_set>

namespace sibyl::engine {

void Rng::seed_with(uint64_t seed) {
  for (auto& s : s_) {  // splitmix64
    seed += 0x9e3779b97f4a7c15ull;
    uint64_t z = seed;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    s = z ^ (z >> 31);
  }
}

uint64_t Rng::next() {
  auto rotl = [](uint64_t x, int k) { return (x << k) | (x >> (64 - k)); };
  const uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

double Rng::uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

namespace {

// The candidates a sampled draw chooses from, by descending probability (ties: lower id
// first, so draws are reproducible), with their probabilities summing to `total`.
struct Candidates {
  std::vector<int32_t> ids;
  std::vector<double> probs;
  double total = 0.0;
  int32_t greedy = 0;  // the argmax (what temperature 0 picks)
  bool sampled = false;  // false: greedy (temperature <= 0, or every score -inf)
};

// Greedy without biases or penalties, in one pass over the logits (no copy): the first
// largest allowed score; NaN never wins; 0 when nothing beats -infinity — what the general
// path's max_element over the masked copy gives.
int32_t plain_argmax(const float* logits, int64_t vocab, const SamplerParams& p) {
  float best = -std::numeric_limits<float>::infinity();
  int32_t id = 0;
  for (int64_t i = 0; i < vocab; ++i) {
    if (!(logits[i] > best)) continue;
    if (p.allowed && (i >= static_cast<int64_t>(p.allowed->size()) || !(*p.allowed)[i])) continue;
    if (p.constraint) {
      const auto w = static_cast<size_t>(i / 64);
      if (w >= p.constraint->size() || !(((*p.constraint)[w] >> (i & 63)) & 1)) continue;
    }
    best = logits[i];
    id = static_cast<int32_t>(i);
  }
  return id;
}

// A repetition penalty applies unless it is 1 (or not positive).
bool penalty_active(const SamplerParams& p) { return p.repetition_penalty != 1.0f && p.repetition_penalty > 0.0f; }

Candidates candidates(const float* logits, int64_t vocab, const SamplerParams& p, const std::vector<int32_t>& history) {
  if (p.temperature <= 0.0f && p.logit_bias.empty() && !penalty_active(p)) {
    Candidates c;
    c.greedy = plain_argmax(logits, vocab, p);
    return c;
  }
  std::vector<float> score(logits, logits + vocab);
  const float neg_inf = -std::numeric_limits<float>::infinity();
  for (float& s : score)  // a NaN logit can never be chosen (and would break the ordering below)
    if (std::isnan(s)) s = neg_inf;
  for (const auto& [id, bias] : p.logit_bias)
    if (id >= 0 && id < vocab) score[id] += bias;
  if (p.allowed)
    for (int64_t i = 0; i < vocab; ++i)
      if (i >= static_cast<int64_t>(p.allowed->size()) || !(*p.allowed)[i]) score[i] = neg_inf;
  if (p.constraint) {
    const std::vector<uint64_t>& bits = *p.constraint;
    for (int64_t w = 0; w * 64 < vocab; ++w) {
      const uint64_t word = static_cast<size_t>(w) < bits.size() ? bits[static_cast<size_t>(w)] : 0;
      if (word == ~uint64_t{0}) continue;
      for (int64_t i = w * 64; i < std::min(vocab, w * 64 + 64); ++i)
        if (!((word >> (i & 63)) & 1)) score[i] = neg_inf;
    }
  }
  if (penalty_active(p)) {
    size_t from = p.repetition_last_n > 0 && history.size() > static_cast<size_t>(p.repetition_last_n)
                      ? history.size() - static_cast<size_t>(p.repetition_last_n)
                      : 0;
    std::unordered_set<int32_t> seen(history.begin() + static_cast<std::ptrdiff_t>(from), history.end());
    for (int32_t t : seen) {
      if (t < 0 || t >= vocab) continue;
      score[t] = score[t] < 0 ? score[t] * p.repetition_penalty : score[t] / p.repetition_penalty;
    }
  }
  Candidates c;
  c.greedy = static_cast<int32_t>(std::max_element(score.begin(), score.end()) - score.begin());
  if (p.temperature <= 0.0f) return c;

  std::vector<int32_t>& order = c.ids;
  order.resize(static_cast<size_t>(vocab));
  std::iota(order.begin(), order.end(), 0);
  size_t keep = order.size();
  if (p.top_k > 0) keep = std::min(keep, static_cast<size_t>(p.top_k));
  auto by_score = [&](int32_t a, int32_t b) { return score[a] > score[b] || (score[a] == score[b] && a < b); };
  std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(keep), order.end(), by_score);
  order.resize(keep);
  c.greedy = order[0];

  // Softmax in double of (score - max) / T: finite for any temperature > 0.
  std::vector<double>& prob = c.probs;
  prob.resize(keep);
  const double top = score[order[0]];
  double sum = 0.0;
  for (size_t i = 0; i < keep; ++i) {
    double z = (static_cast<double>(score[order[i]]) - top) / static_cast<double>(p.temperature);
    sum += (prob[i] = std::isnan(z) ? 0.0 : std::exp(z));
  }
  if (!(sum > 0.0) || !std::isfinite(sum)) return c;  // every score -inf: take the first
  for (auto& x : prob) x /= sum;

  if (p.top_p < 1.0f) {  // smallest prefix whose mass reaches top_p (at least one token)
    double mass = 0.0;
    size_t n = 0;
    while (n < keep && mass < p.top_p) mass += prob[n++];
    keep = std::max<size_t>(n, 1);
  }
  if (p.min_p > 0.0f) {
    size_t n = 1;
    while (n < keep && prob[n] >= p.min_p * prob[0]) ++n;
    keep = n;
  }
  order.resize(keep);
  prob.resize(keep);
  c.total = std::accumulate(prob.begin(), prob.end(), 0.0);
  c.sampled = true;
  return c;
}

// One draw from the candidates, leaving out `skip` (-1: none) and its probability.
int32_t draw(const Candidates& c, Rng& rng, int32_t skip) {
  double total = c.total;
  for (size_t i = 0; i < c.ids.size(); ++i)
    if (c.ids[i] == skip) total -= c.probs[i];
  double u = rng.uniform() * total;
  int32_t last = c.ids.back();
  for (size_t i = 0; i < c.ids.size(); ++i) {
    if (c.ids[i] == skip) continue;
    last = c.ids[i];
    u -= c.probs[i];
    if (u < 0) return c.ids[i];
  }
  return last;
}

}  // namespace

int32_t sample_token(const float* logits, int64_t vocab, const SamplerParams& p, const std::vector<int32_t>& history,
                     Rng& rng) {
  const Candidates c = candidates(logits, vocab, p, history);
  return c.sampled ? draw(c, rng, -1) : c.greedy;
}

int32_t sample_token_with_draft(const float* logits, int64_t vocab, const SamplerParams& p,
                                const std::vector<int32_t>& history, Rng& rng, int32_t draft) {
  const Candidates c = candidates(logits, vocab, p, history);
  if (!c.sampled) return c.greedy;
  double p_draft = 0.0;
  for (size_t i = 0; i < c.ids.size(); ++i)
    if (c.ids[i] == draft) p_draft = c.probs[i] / c.total;
  if (p_draft <= 0.0) return draw(c, rng, -1);
  if (rng.uniform() < p_draft) return draft;
  if (c.ids.size() == 1) return draft;  // nothing else can be drawn (p_draft is 1 up to rounding)
  return draw(c, rng, draft);
}

}  // namespace sibyl::engine
