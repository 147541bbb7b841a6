// The fast path's element-wise math (vec_math.h) against libm in double: the stated error
// bound over the whole input range, the clamps at both ends, and each value bitwise the same
// at every SIMD level this machine has (lower ones forced) and for every array length (the
// softmax also with NaN and ±0 ties).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "backends/cpu/simd.h"
#include "backends/cpu/vec_math.h"
#include "tests/cpu_simd_levels.h"

namespace sibyl::backend::cpu {
namespace {

class VecMath : public ::testing::Test {
 protected:
  void TearDown() override { simd_cap(SimdLevel::avx512_bf16); }
};

// Distance in units in the last place of `want` (a double rounded to float's grid).
double ulps(float got, double want) {
  const float w = static_cast<float>(want);
  const float step = std::nextafter(std::fabs(w), std::numeric_limits<float>::infinity()) - std::fabs(w);
  return std::fabs(static_cast<double>(got) - want) / static_cast<double>(step);
}

// Inputs over the whole working range plus its ends and the values just outside it.
std::vector<float> exp_inputs() {
  std::vector<float> x;
  for (int i = 0; i <= 200000; ++i) x.push_back(-87.3f + 175.6f * static_cast<float>(i) / 200000.0f);
  for (float v : {0.0f, -0.0f, 1.0f, -1.0f, 1e-8f, -1e-8f, 0.34657359f, -0.34657359f, 88.37f, -87.33f}) x.push_back(v);
  return x;
}

TEST_F(VecMath, ExpWithinTwoUlpOfLibm) {
  const std::vector<float> x = exp_inputs();
  for (SimdLevel level : levels()) {
    simd_cap(level);
    std::vector<float> y(x.size());
    fast_exp(y.data(), x.data(), static_cast<int64_t>(x.size()));
    double worst = 0.0;
    for (size_t i = 0; i < x.size(); ++i) worst = std::max(worst, ulps(y[i], std::exp(static_cast<double>(x[i]))));
    EXPECT_LE(worst, 2.0) << simd_name(level);
  }
}

TEST_F(VecMath, ExpClampsOutsideTheRange) {
  const std::vector<float> x = {-88.0f, -100.0f, -1e30f, -std::numeric_limits<float>::infinity(), 89.0f, 1e30f};
  for (SimdLevel level : levels()) {
    simd_cap(level);
    std::vector<float> y(x.size());
    fast_exp(y.data(), x.data(), static_cast<int64_t>(x.size()));
    for (size_t i = 0; i < 4; ++i) EXPECT_EQ(y[i], 0.0f) << simd_name(level) << " x=" << x[i];
    for (size_t i = 4; i < 6; ++i) {  // exp(88.376…), finite
      EXPECT_TRUE(std::isfinite(y[i])) << simd_name(level);
      EXPECT_LE(ulps(y[i], std::exp(static_cast<double>(88.3762626647949f))), 2.0) << simd_name(level);
    }
  }
}

// Every level and every array length (vector bodies, masked and scalar tails) give the same bits.
TEST_F(VecMath, BitwiseTheSameAtEveryLevelAndLength) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> dist(-30.0f, 30.0f);
  std::vector<float> x(203), u(203);
  for (size_t i = 0; i < x.size(); ++i) {
    x[i] = dist(rng);
    u[i] = dist(rng);
  }
  auto run = [&](int64_t n, int64_t offset, std::vector<float>& e, std::vector<float>& s, std::vector<float>& sm) {
    e.assign(static_cast<size_t>(n), 0.0f);
    s.assign(static_cast<size_t>(n), 0.0f);
    fast_exp(e.data(), x.data() + offset, n);
    fast_silu_mul(s.data(), x.data() + offset, u.data() + offset, n);
    sm.assign(x.begin() + offset, x.begin() + offset + n);
    fast_softmax(sm.data(), n);
  };
  std::vector<float> e0, s0, m0;
  run(200, 0, e0, s0, m0);
  for (SimdLevel level : levels()) {
    simd_cap(level);
    std::vector<float> e, s, m;
    run(200, 0, e, s, m);
    EXPECT_EQ(0, std::memcmp(e.data(), e0.data(), e.size() * 4)) << simd_name(level);
    EXPECT_EQ(0, std::memcmp(s.data(), s0.data(), s.size() * 4)) << simd_name(level);
    EXPECT_EQ(0, std::memcmp(m.data(), m0.data(), m.size() * 4)) << simd_name(level);
    for (int64_t n : {1, 7, 8, 15, 16, 17, 33}) {  // element i of a shorter array: same exp and SiLU bits
      for (int64_t offset : {0, 3}) {
        run(n, offset, e, s, m);
        EXPECT_EQ(0, std::memcmp(e.data(), e0.data() + offset, static_cast<size_t>(n) * 4)) << n << simd_name(level);
        EXPECT_EQ(0, std::memcmp(s.data(), s0.data() + offset, static_cast<size_t>(n) * 4)) << n << simd_name(level);
      }
    }
  }
}

// The softmax is the portable one's, bitwise, at every level and length: the largest value
// wherever it sits (vector body or tail), ±0 ties, a NaN ignored unless it comes first.
TEST_F(VecMath, SoftmaxIsThePortablesAtEveryLevelAndLength) {
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> dist(-20.0f, 20.0f);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (int64_t n = 1; n <= 100; n += (n < 40 ? 1 : 7)) {
    for (int64_t peak = 0; peak < n; peak += std::max<int64_t>(1, n / 5)) {
      for (int variant = 0; variant < 4; ++variant) {
        std::vector<float> s(static_cast<size_t>(n));
        for (auto& v : s) v = dist(rng);
        s[static_cast<size_t>(peak)] = 25.0f;  // the largest, anywhere
        if (variant == 1) {                    // ±0 ties
          std::fill(s.begin(), s.end(), 0.0f);
          s[static_cast<size_t>(peak)] = -0.0f;
        }
        if (variant == 2 && n > 1) s[static_cast<size_t>(n - 1 - peak)] = nan;  // ignored (unless first)
        if (variant == 3) s[0] = nan;
        simd_cap(SimdLevel::portable);
        std::vector<float> want = s;
        fast_softmax(want.data(), n);
        for (SimdLevel level : levels()) {
          simd_cap(level);
          std::vector<float> got = s;
          fast_softmax(got.data(), n);
          EXPECT_EQ(0, std::memcmp(got.data(), want.data(), want.size() * 4))
              << simd_name(level) << " n=" << n << " peak=" << peak << " variant=" << variant;
        }
        if (variant == 0) {  // exp(25 − 25) = 1 over a sum of at least 1
          EXPECT_GT(want[static_cast<size_t>(peak)], 0.0f);
          EXPECT_LE(want[static_cast<size_t>(peak)], 1.0f);
        }
      }
    }
  }
}

TEST_F(VecMath, SiluMulMatchesTheFormula) {
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> dist(-40.0f, 40.0f);
  std::vector<float> g(1001), u(1001);
  for (size_t i = 0; i < g.size(); ++i) {
    g[i] = dist(rng);
    u[i] = dist(rng);
  }
  g[0] = -100.0f;  // exp(-g) clamped: SiLU ≈ 0
  g[1] = 100.0f;   // exp(-g) = 0: SiLU = g
  for (SimdLevel level : levels()) {
    simd_cap(level);
    std::vector<float> out(g.size());
    fast_silu_mul(out.data(), g.data(), u.data(), static_cast<int64_t>(g.size()));
    for (size_t i = 0; i < g.size(); ++i) {
      const double gd = g[i], want = gd / (1.0 + std::exp(-gd)) * u[i];
      EXPECT_NEAR(out[i], want, 4e-7 * std::fabs(want) + 1e-30) << simd_name(level) << " g=" << g[i];
    }
    std::vector<float> in_place = g;  // out may alias g
    fast_silu_mul(in_place.data(), in_place.data(), u.data(), static_cast<int64_t>(g.size()));
    EXPECT_EQ(0, std::memcmp(in_place.data(), out.data(), out.size() * 4));
  }
}

TEST_F(VecMath, SoftmaxMatchesDoublePrecision) {
  std::mt19937 rng(11);
  std::normal_distribution<float> dist(0.0f, 6.0f);
  for (int64_t n : {1, 2, 5, 8, 9, 64, 257, 1000}) {
    std::vector<float> s(static_cast<size_t>(n));
    for (auto& v : s) v = dist(rng);
    float m = s[0];
    for (float v : s) m = std::max(m, v);
    double sum = 0.0;  // of exp(s − max) with the difference rounded to float, as both paths do
    for (float v : s) sum += std::exp(static_cast<double>(v - m));
    for (SimdLevel level : levels()) {
      simd_cap(level);
      std::vector<float> p = s;
      fast_softmax(p.data(), n);
      double total = 0.0;
      for (int64_t t = 0; t < n; ++t) {
        const double want = std::exp(static_cast<double>(s[t] - m)) / sum;
        EXPECT_NEAR(p[t], want, 6e-7 * want + 1e-37) << "n=" << n << " " << simd_name(level);
        total += p[t];
      }
      EXPECT_NEAR(total, 1.0, 1e-5);
    }
  }
}

}  // namespace
}  // namespace sibyl::backend::cpu
