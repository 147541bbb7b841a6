// The CPU backend's float32 building blocks that the attention and norms use: each against
// its definition (bitwise where the kernel promises the same sums), on odd shapes; the rope
// angles each thread keeps per position against computing them afresh.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "backends/cpu/cpu_backend.h"
#include "backends/cpu/kernels.h"

namespace sibyl::backend::cpu {
namespace {

std::vector<float> random_floats(size_t n, unsigned seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

// cos/sin (× the attention factor) of inv_freq · pos, as the reference computes them.
std::vector<float> angles_by_definition(const std::vector<float>& inv_freq, int32_t pos, float factor) {
  std::vector<float> cs;
  for (float f : inv_freq) {
    const float angle = f * static_cast<float>(pos);
    cs.push_back(static_cast<float>(std::cos(static_cast<double>(angle))) * factor);
    cs.push_back(static_cast<float>(std::sin(static_cast<double>(angle))) * factor);
  }
  return cs;
}

// The angles a thread keeps per position follow every input they depend on: positions that
// share a slot, new inv_freq values in the same tensor (a later model at the same address),
// another attention factor, and rope dims past what is kept.
TEST(CpuRowKernels, RopeAnglesAreTheDefinitionsAfterEveryChange) {
  for (int64_t dim : {16, 64, 128}) {
    CpuTensor freq(DType::f32, 1, dim / 2);
    for (float factor : {1.0f, 1.25f}) {
      for (int round = 0; round < 3; ++round) {  // new frequencies, same tensor and factor
        std::vector<float> values =
            random_floats(static_cast<size_t>(dim / 2), 40 + static_cast<unsigned>(round), 0.3f);
        for (auto& v : values) v = std::fabs(v);
        std::memcpy(freq.mutable_bytes(), values.data(), values.size() * 4);
        const RopeParams rope{&freq, factor, true};
        for (int pass = 0; pass < 2; ++pass)  // the second pass reads what the first kept
          for (int32_t pos : {0, 1, 31, 32, 33, 64, 95, 1000, 1032, 7}) {
            std::vector<float> got(static_cast<size_t>(dim));
            rope_angles(got.data(), dim, pos, rope);
            EXPECT_EQ(got, angles_by_definition(values, pos, factor))
                << "dim " << dim << " round " << round << " factor " << factor << " pos " << pos;
          }
      }
    }
  }
}

// A 4 × 4 tile is, pair by pair, bitwise dot() — with and without a tail past the last 16.
TEST(CpuRowKernels, Tile4x4IsBitwiseDotForEveryPair) {
  for (int64_t k : {16, 32, 80, 576, 17, 45, 3}) {
    const int64_t ldx = k + 5;
    const std::vector<float> x = random_floats(static_cast<size_t>(4 * ldx), 1),
                             w = random_floats(static_cast<size_t>(4 * k), 2);
    const float* rows[4] = {w.data(), w.data() + k, w.data() + 2 * k, w.data() + 3 * k};
    float out[4 * 6];
    dot_4x4(x.data(), ldx, rows, k, out, 6);
    for (int r = 0; r < 4; ++r)
      for (int c = 0; c < 4; ++c) {
        const float want = dot(x.data() + r * ldx, rows[c], k);
        EXPECT_EQ(0, std::memcmp(&out[r * 6 + c], &want, 4)) << "k=" << k << " r=" << r << " c=" << c;
      }
  }
}

// axpy_rows: each element one fused multiply-add chain over the rows in order.
TEST(CpuRowKernels, AxpyRowsIsOneFmaChainPerElement) {
  for (int n_y = 1; n_y <= 4; ++n_y)
    for (int64_t n : {64, 512, 16, 80, 20, 3}) {
      for (int64_t n_rows : {1, 7, 33}) {
        const std::vector<float> data = random_floats(static_cast<size_t>(n_rows * (n + 3)), 3);
        std::vector<const float*> rows;
        for (int64_t t = 0; t < n_rows; ++t) rows.push_back(data.data() + (n_rows - 1 - t) * (n + 3));  // any order
        const int64_t lda = n_rows + 2;
        const std::vector<float> a = random_floats(static_cast<size_t>(4 * lda), 4);
        std::vector<std::vector<float>> y(4, random_floats(static_cast<size_t>(n), 5)), want = y;
        float* yp[4] = {y[0].data(), y[1].data(), y[2].data(), y[3].data()};
        axpy_rows(yp, a.data(), lda, n_y, rows.data(), n_rows, n);
        for (int g = 0; g < 4; ++g)
          for (int64_t c = 0; c < n; ++c) {
            if (g < n_y)
              for (int64_t t = 0; t < n_rows; ++t) want[g][c] = std::fma(a[g * lda + t], rows[t][c], want[g][c]);
            EXPECT_EQ(0, std::memcmp(&y[g][c], &want[g][c], 4)) << "n_y=" << n_y << " n=" << n << " g=" << g;
          }
      }
    }
}

// gemm_kmajor: each element one fused multiply-add chain over d, from zero.
TEST(CpuRowKernels, GemmKmajorIsOneFmaChainPerElement) {
  for (int64_t m : {64, 512, 70, 5}) {
    for (int64_t k : {32, 1, 13}) {
      const int64_t n = 7, ldx = k + 1, ldo = m + 2;
      const std::vector<float> x = random_floats(static_cast<size_t>(n * ldx), 6),
                               w = random_floats(static_cast<size_t>(k * m), 7);
      std::vector<float> out(static_cast<size_t>(n * ldo), -1.0f), want(out);
      gemm_kmajor(x.data(), ldx, n, w.data(), k, m, out.data(), ldo);
      for (int64_t i = 0; i < n; ++i) {
        float* o = want.data() + i * ldo;
        std::fill(o, o + m, 0.0f);
        for (int64_t d = 0; d < k; ++d)
          for (int64_t c = 0; c < m; ++c) o[c] = std::fma(x[i * ldx + d], w[d * m + c], o[c]);
      }
      EXPECT_EQ(0, std::memcmp(out.data(), want.data(), out.size() * 4)) << "m=" << m << " k=" << k;
    }
  }
}

// PagedRows::rows walks pages: the same pointers as at() for every position, across page ends.
TEST(CpuRowKernels, PagedRowsMatchesAtAcrossPages) {
  CpuKvPool pool(2, 8, 4);
  pool.grow(6);
  CpuTensor positions(DType::i32, 2, 1), row_seq(DType::i32, 2, 1), table(DType::i32, 2, 4);
  positions.i32()[0] = 13;
  positions.i32()[1] = 6;
  row_seq.i32()[0] = 0;
  row_seq.i32()[1] = 1;
  const int32_t pages[8] = {5, 2, 0, 3, 1, 4, -1, -1};
  std::memcpy(table.i32(), pages, sizeof pages);
  StepBatch batch;
  batch.positions = &positions;
  batch.row_seq = &row_seq;
  batch.page_table = &table;
  const PagedRows paged(pool, batch);
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t from : {0, 1, 3, 4, 5}) {
      const int64_t len = positions.i32()[i] + 1 - from;
      std::vector<const float*> got(static_cast<size_t>(len));
      paged.rows(1, i, from, len, got.data());
      for (int64_t t = 0; t < len; ++t) EXPECT_EQ(got[t], paged.at(1, i, from + t)) << i << " " << from << " " << t;
    }
  std::vector<const float*> past(9);  // past the sequence's two pages: an error, not a wild read
  EXPECT_ANY_THROW(paged.rows(0, 1, 0, 9, past.data()));
}

}  // namespace
}  // namespace sibyl::backend::cpu
