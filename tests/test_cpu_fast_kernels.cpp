// The CPU fast path's matmul kernels against the exact path: every weight dtype, every SIMD
// level this machine has (lower ones forced), odd shapes; error bounds that follow from the
// activation rounding; and the determinism contract (a pair's value never depends on the
// tile, the other rows or the thread count). Weights packed 16 rows to a vector too.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "backends/cpu/cpu_backend.h"
#include "backends/cpu/fast_kernels.h"
#include "backends/cpu/packed.h"
#include "backends/cpu/simd.h"
#include "tests/cpu_simd_levels.h"
#include "engine/core/quant.h"

namespace sibyl::backend::cpu {
namespace {

using engine::DType;

struct Weights {
  DType dtype;
  int64_t rows, k;
  std::vector<uint8_t> bytes;
  std::vector<float> scale;  // f8_e4m3: block scales
  int64_t block_rows = 0, block_cols = 0;
  WeightRows view() const {
    return {bytes.data(), dtype, rows, k, scale.empty() ? nullptr : scale.data(), block_rows, block_cols};
  }
};

Weights make_weights(DType dtype, int64_t rows, int64_t k, std::mt19937& rng) {
  Weights w{dtype, rows, k, {}, {}};
  std::normal_distribution<float> g(0.0f, 0.05f);
  if (dtype == DType::f8_e4m3) {
    w.bytes.resize(static_cast<size_t>(rows * k));
    std::uniform_int_distribution<int> byte(0, 255);
    for (auto& b : w.bytes) {
      int v = byte(rng);
      if ((v & 0x7f) == 0x7f) v &= 0xfe;  // 0x7f / 0xff are NaN in e4m3fn
      b = static_cast<uint8_t>(v);
    }
    w.block_rows = 2;
    w.block_cols = 50;  // not a multiple of 16 (blocks end mid-vector), nor of k (a partial last block)
    const int64_t nb = ((rows + 1) / 2) * ((k + 49) / 50);
    std::uniform_real_distribution<float> s(0.001f, 0.01f);
    for (int64_t i = 0; i < nb; ++i) w.scale.push_back(s(rng));
    return w;
  }
  const size_t rb = engine::row_bytes(dtype, k);
  w.bytes.resize(rb * static_cast<size_t>(rows));
  std::vector<float> row(static_cast<size_t>(k));
  for (int64_t r = 0; r < rows; ++r) {
    for (auto& v : row) v = g(rng);
    if (r % 3 == 1) row[static_cast<size_t>(r % k)] = 0.9f;  // an outlier
    engine::quantize_row(dtype, row.data(), w.bytes.data() + rb * static_cast<size_t>(r), k);
  }
  return w;
}

std::vector<float> make_x(int64_t n, int64_t k, std::mt19937& rng) {
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n * k));
  for (auto& v : x) v = g(rng);
  for (int64_t i = 0; i < n; ++i) x[static_cast<size_t>(i * k + (7 * i) % k)] = 12.0f;  // an outlier per row
  if (n > 2) std::fill_n(x.begin() + k, std::min<int64_t>(k, 64), 0.0f);                // zero blocks in row 1
  return x;
}

// The activation rounding's share of the error of one element: half a quantization step
// (8-bit formats: amax of the element's block / 254), a bf16 rounding, or none.
std::vector<float> act_error(ActFormat format, const float* x, int64_t k) {
  std::vector<float> e(static_cast<size_t>(k), 0.0f);
  const int64_t block = format == ActFormat::q8_32 ? 32 : format == ActFormat::q8_256 ? 256 : 0;
  for (int64_t b = 0; block && b < k / block; ++b) {
    float amax = 0.0f;
    for (int64_t i = 0; i < block; ++i) amax = std::max(amax, std::fabs(x[b * block + i]));
    for (int64_t i = 0; i < block; ++i) e[static_cast<size_t>(b * block + i)] = amax / 254.0f * 1.0001f;
  }
  if (format == ActFormat::bf16)
    for (int64_t i = 0; i < k; ++i) e[static_cast<size_t>(i)] = std::fabs(x[i]) * (1.0f / 256.0f);
  return e;
}

struct Case {
  DType dtype;
  int64_t block;  // the weight dtype's block of columns
};

const Case kCases[] = {{DType::f32, 1},  {DType::f16, 1},  {DType::bf16, 1}, {DType::f8_e4m3, 1},
                       {DType::q8_0, 32}, {DType::q5_0, 32}, {DType::q4_k, 256}, {DType::q6_k, 256}};

class FastKernels : public ::testing::TestWithParam<Case> {
 protected:
  void TearDown() override { simd_cap(SimdLevel::avx512_bf16); }
};

std::string name(DType d) { return engine::dtype_name(d); }

TEST_P(FastKernels, EveryLevelEveryShapeWithinTheRoundingBound) {
  const Case c = GetParam();
  std::mt19937 rng(1234);
  ThreadPool pool(1);
  const Exec fast{pool, Precision::fast};
  // One block, two, an odd count, and past the kernels' 32-block groups.
  const int64_t ks[] = {c.block == 1 ? 19 : c.block, c.block == 1 ? 64 : 2 * c.block,
                        c.block == 1 ? 333 : 7 * c.block, c.block == 1 ? 4099 : 33 * c.block};
  for (SimdLevel level : levels()) {
    simd_cap(level);
    const FastKernel kernel = fast_kernel(c.dtype);
    ASSERT_NE(kernel.tile, nullptr) << name(c.dtype) << " has no fast kernel at " << simd_name(level);
    for (int64_t k : ks) {
      if (kernel.act == ActFormat::q8_32 && k % 32) continue;
      for (int64_t n : {1, 3, 4, 9}) {
        for (int64_t rows : {1, 2, 4, 7}) {
          const Weights w = make_weights(c.dtype, rows, k, rng);
          const std::vector<float> x = make_x(n, k, rng);
          std::vector<float> out(static_cast<size_t>(n * rows), NAN);
          gemm(fast, x.data(), n, k, w.view(), out.data(), rows);
          std::vector<float> scratch(static_cast<size_t>(k));
          for (int64_t i = 0; i < n; ++i) {
            const std::vector<float> ex = act_error(kernel.act, x.data() + i * k, k);
            for (int64_t j = 0; j < rows; ++j) {
              const float* wr = w.view().row(j, scratch.data());
              double ref = 0.0, mag = 0.0, bound = 0.0;
              for (int64_t t = 0; t < k; ++t) {
                ref += static_cast<double>(wr[t]) * x[static_cast<size_t>(i * k + t)];
                mag += std::fabs(static_cast<double>(wr[t]) * x[static_cast<size_t>(i * k + t)]);
                bound += std::fabs(static_cast<double>(wr[t])) * ex[static_cast<size_t>(t)];
              }
              bound += 2e-6 * mag + 1e-6;  // float32 accumulation
              const float got = out[static_cast<size_t>(i * rows + j)];
              ASSERT_LE(std::fabs(got - ref), bound)
                  << name(c.dtype) << " " << simd_name(level) << " k=" << k << " n=" << n << " rows=" << rows
                  << " pair (" << i << "," << j << "): " << got << " vs " << ref;
            }
          }
        }
      }
    }
  }
}

TEST_P(FastKernels, APairDoesNotDependOnTileRowsOrThreads) {
  const Case c = GetParam();
  std::mt19937 rng(99);
  ThreadPool one(1), two(2);
  const int64_t k = c.block == 1 ? 333 : 7 * c.block, n = 11, rows = 9;  // odd block counts and tails
  const Weights w = make_weights(c.dtype, rows, k, rng);
  const std::vector<float> x = make_x(n, k, rng);
  for (SimdLevel level : levels()) {
    simd_cap(level);
    std::vector<float> all(static_cast<size_t>(n * rows)), threaded(all.size());
    gemm(Exec{one, Precision::fast}, x.data(), n, k, w.view(), all.data(), rows);
    // Big enough that two threads really split it.
    gemm(Exec{two, Precision::fast}, x.data(), n, k, w.view(), threaded.data(), rows);
    EXPECT_EQ(0, std::memcmp(all.data(), threaded.data(), all.size() * 4)) << simd_name(level);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < rows; ++j) {
        float alone = NAN;
        gemm(Exec{one, Precision::fast}, x.data() + i * k, 1, k, w.view().rows_from(j, 1), &alone, 1);
        ASSERT_EQ(0, std::memcmp(&alone, &all[static_cast<size_t>(i * rows + j)], 4))
            << name(c.dtype) << " " << simd_name(level) << " pair (" << i << "," << j << ")";
      }
  }
}

INSTANTIATE_TEST_SUITE_P(AllDtypes, FastKernels, ::testing::ValuesIn(kCases),
                         [](const auto& info) { return name(info.param.dtype); });

TEST(FastActivations, EightBitBlocksRoundTripWithinHalfAStep) {
  std::mt19937 rng(5);
  const int64_t k = 512;
  std::vector<float> x = make_x(3, k, rng);
  x.resize(static_cast<size_t>(k));
  for (ActFormat f : {ActFormat::q8_32, ActFormat::q8_256}) {
    const int64_t block = f == ActFormat::q8_32 ? 32 : 256, span = f == ActFormat::q8_32 ? 32 : 16;
    std::vector<uint8_t> buf(act_row_bytes(f, k));
    ASSERT_EQ(buf.size() % 64, 0u);
    convert_activation(f, x.data(), k, buf.data());
    const auto* qs = reinterpret_cast<const int8_t*>(buf.data());
    const auto* d = reinterpret_cast<const float*>(buf.data() + k);
    const auto* s = reinterpret_cast<const int16_t*>(buf.data() + k + (k / block) * 4);
    const std::vector<float> e = act_error(f, x.data(), k);
    for (int64_t i = 0; i < k; ++i) {
      ASSERT_LE(std::fabs(d[i / block] * qs[i] - x[static_cast<size_t>(i)]), e[static_cast<size_t>(i)]) << i;
      ASSERT_GE(qs[i], -127);
    }
    for (int64_t g = 0; g < k / span; ++g) {
      int sum = 0;
      for (int64_t i = 0; i < span; ++i) sum += qs[g * span + i];
      ASSERT_EQ(sum, s[g]) << g;
    }
  }
}

TEST(FastActivations, EveryLevelGivesTheSameBytes) {
  std::mt19937 rng(8);
  const int64_t k = 768;
  std::vector<float> x = make_x(1, k, rng);
  x[5] = std::numeric_limits<float>::quiet_NaN();  // bf16 keeps it a quiet NaN
  x[6] = -std::numeric_limits<float>::infinity();
  x[7] = 1.00390625f;                               // halfway: to even
  x[8] = 1e-40f;                                    // subnormal: kept, not flushed
  for (ActFormat f : {ActFormat::bf16}) {
    std::vector<std::vector<uint8_t>> out;
    for (SimdLevel level : levels()) {
      simd_cap(level);
      out.emplace_back(act_row_bytes(f, k));
      convert_activation(f, x.data(), k - 3, out.back().data());  // a tail past the last 16
    }
    simd_cap(SimdLevel::avx512_bf16);
    for (size_t i = 1; i < out.size(); ++i) EXPECT_EQ(out[i], out[0]) << "level " << i;
    for (int64_t i = 0; i < k - 3; ++i)
      ASSERT_EQ(reinterpret_cast<const uint16_t*>(out[0].data())[i], engine::f32_to_bf16(x[static_cast<size_t>(i)])) << i;
  }
  for (int64_t i = 5; i <= 8; ++i) x[static_cast<size_t>(i)] = 0.5f;  // q8 formats take finite values
  for (ActFormat f : {ActFormat::q8_32, ActFormat::q8_256}) {
    std::vector<std::vector<uint8_t>> out;
    for (SimdLevel level : levels()) {
      simd_cap(level);
      out.emplace_back(act_row_bytes(f, k));
      convert_activation(f, x.data(), k, out.back().data());
    }
    simd_cap(SimdLevel::avx512_bf16);
    for (size_t i = 1; i < out.size(); ++i) EXPECT_EQ(out[i], out[0]) << "level " << i;
  }
}

TEST(FastActivations, Bf16RoundsToNearestEven) {
  const float x[4] = {1.0f, 1.00390625f /* halfway: stays 1 */, 1.01171875f /* halfway: up */, -3.5f};
  uint16_t out[32] = {};
  convert_activation(ActFormat::bf16, x, 4, reinterpret_cast<uint8_t*>(out));
  EXPECT_EQ(out[0], 0x3f80);
  EXPECT_EQ(out[1], 0x3f80);
  EXPECT_EQ(out[2], 0x3f82);
  EXPECT_EQ(out[3], 0xc060);
}

TEST(FastKernelsExact, ExactPrecisionIgnoresTheFastKernels) {
  std::mt19937 rng(7);
  ThreadPool pool(1);
  const Weights w = make_weights(DType::q4_k, 5, 512, rng);
  const std::vector<float> x = make_x(3, 512, rng);
  std::vector<float> a(15), b(15);
  gemm(Exec{pool, Precision::exact}, x.data(), 3, 512, w.view(), a.data(), 5);
  gemm_exact(pool, x.data(), 3, 512, w.view(), b.data(), 5);
  EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * 4));
}

// A matrix packed 16 rows to a vector (packed.h), next to its row-major bytes.
struct Packed {
  Weights rows;
  std::vector<uint8_t> store;
  WeightRows view() const {
    WeightRows v = rows.view();
    auto p = reinterpret_cast<uintptr_t>(store.data());
    v.packed = store.data() + (64 - p % 64) % 64;
    return v;
  }
};

Packed make_packed(DType dtype, int64_t n_rows, int64_t k, std::mt19937& rng) {
  Packed p{make_weights(dtype, n_rows, k, rng), {}};
  p.store.resize(packed_bytes(dtype, n_rows, k) + 64);
  pack_rows(dtype, p.rows.bytes.data(), n_rows, k, const_cast<uint8_t*>(p.view().packed));
  return p;
}

class PackedWeights : public ::testing::TestWithParam<DType> {
 protected:
  void SetUp() override {
    if (!packed_wanted(GetParam(), 256))
      GTEST_SKIP() << "SKIP: this CPU lacks the AVX-512 level that packs " << name(GetParam());
  }
};

TEST_P(PackedWeights, OddShapesWithinTheRoundingBoundAndCloseToTheRowTiles) {
  const DType dtype = GetParam();
  const FastKernel kernel = fast_kernel(dtype);
  std::mt19937 rng(4321);
  ThreadPool pool(1);
  const Exec fast{pool, Precision::fast};
  const bool kquant = dtype == DType::q4_k || dtype == DType::q6_k;
  const std::vector<int64_t> ks = dtype == DType::bf16 ? std::vector<int64_t>{2, 34, 128, 130, 768, kPackedMaxK}
                                  : kquant             ? std::vector<int64_t>{256, 512, 768, kPackedMaxK}
                                                       : std::vector<int64_t>{32, 64, 128, 160, 768, kPackedMaxK};
  for (int64_t k : ks) {
    for (int64_t n : {1, 2, 3, 4, 5, 9}) {
      for (int64_t rows : {1, 15, 16, 17, 40, 130}) {
        const Packed w = make_packed(dtype, rows, k, rng);
        const std::vector<float> x = make_x(n, k, rng);
        std::vector<float> out(static_cast<size_t>(n * rows), NAN), row_major(out.size(), NAN);
        gemm(fast, x.data(), n, k, w.view(), out.data(), rows);
        gemm(fast, x.data(), n, k, w.rows.view(), row_major.data(), rows);
        std::vector<float> scratch(static_cast<size_t>(k));
        for (int64_t i = 0; i < n; ++i) {
          const std::vector<float> ex = act_error(kernel.act, x.data() + i * k, k);
          for (int64_t j = 0; j < rows; ++j) {
            const float* wr = w.rows.view().row(j, scratch.data());
            double ref = 0.0, mag = 0.0, bound = 0.0;
            for (int64_t t = 0; t < k; ++t) {
              ref += static_cast<double>(wr[t]) * x[static_cast<size_t>(i * k + t)];
              mag += std::fabs(static_cast<double>(wr[t]) * x[static_cast<size_t>(i * k + t)]);
              bound += std::fabs(static_cast<double>(wr[t])) * ex[static_cast<size_t>(t)];
            }
            const size_t at = static_cast<size_t>(i * rows + j);
            ASSERT_LE(std::fabs(out[at] - ref), bound + 2e-6 * mag + 1e-6)
                << name(dtype) << " k=" << k << " n=" << n << " rows=" << rows << " pair (" << i << "," << j << ")";
            // The same products (same activation rounding) summed in another order.
            ASSERT_LE(std::fabs(out[at] - row_major[at]), 4e-6 * mag + 1e-6)
                << name(dtype) << " k=" << k << " pair (" << i << "," << j << ")";
          }
        }
      }
    }
  }
}

TEST_P(PackedWeights, APairDoesNotDependOnTileRowsOrThreads) {
  const DType dtype = GetParam();
  std::mt19937 rng(77);
  ThreadPool one(1), two(2);
  // Groups of 16 with a partial last one, odd row tiles; past the 2^18 multiply-adds under
  // which a loop stays on the caller, so two threads split it.
  const int64_t k = dtype == DType::bf16 ? 130 : (dtype == DType::q4_k || dtype == DType::q6_k) ? 256 : 160;
  const int64_t n = 11, rows = 310;
  const Packed w = make_packed(dtype, rows, k, rng);
  const std::vector<float> x = make_x(n, k, rng);
  std::vector<float> all(static_cast<size_t>(n * rows)), threaded(all.size());
  gemm(Exec{one, Precision::fast}, x.data(), n, k, w.view(), all.data(), rows);
  gemm(Exec{two, Precision::fast}, x.data(), n, k, w.view(), threaded.data(), rows);
  EXPECT_EQ(0, std::memcmp(all.data(), threaded.data(), all.size() * 4));
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t m : {1, 2, 3}) {  // each tile shape's group count; all n rows above
      if (i + m > n) continue;
      std::vector<float> few(static_cast<size_t>(m * rows));
      gemm(Exec{one, Precision::fast}, x.data() + i * k, m, k, w.view(), few.data(), rows);
      ASSERT_EQ(0, std::memcmp(few.data(), &all[static_cast<size_t>(i * rows)], few.size() * 4))
          << name(dtype) << ": " << m << " rows from " << i;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(PackedDtypes, PackedWeights, ::testing::Values(DType::bf16, DType::q8_0, DType::q5_0, DType::q4_k, DType::q6_k),
                         [](const auto& info) { return name(info.param); });

// gemm_pair (two weights on one input, converted once, one loop) gives the bits of two gemm
// calls: same dtype (packed or not), two dtypes of one activation format, two formats (Q8_0
// and Q4_K: no sharing), float32, and the exact precision.
TEST(FastKernelsPair, TwoWeightsOnOneInputAreTwoGemms) {
  std::mt19937 rng(9);
  const std::pair<DType, DType> pairs[] = {{DType::bf16, DType::bf16}, {DType::q8_0, DType::q5_0},
                                           {DType::q8_0, DType::q4_k}, {DType::f32, DType::f32},
                                           {DType::q4_k, DType::q6_k}};
  for (const auto& [da, db] : pairs)
    for (Precision precision : {Precision::fast, Precision::exact})
      for (int threads : {1, 2}) {
        const int64_t k = 512, n = 5;
        const Weights wa = make_weights(da, 40, k, rng), wb = make_weights(db, 23, k, rng);
        CpuTensor ta(da, 40, k, wa.bytes.data()), tb(db, 23, k, wb.bytes.data());
        ta.allow_packing();
        tb.allow_packing();
        const std::vector<float> x = make_x(n, k, rng);
        ThreadPool pool(threads);
        const Exec ex{pool, precision};
        std::vector<float> a(static_cast<size_t>(n * 40)), b(static_cast<size_t>(n * 23)), a2(a), b2(b);
        gemm_pair(ex, x.data(), n, k, ta.matmul_rows(), a.data(), 40, tb.matmul_rows(), b.data(), 23);
        gemm(ex, x.data(), n, k, ta.matmul_rows(), a2.data(), 40);
        gemm(ex, x.data(), n, k, tb.matmul_rows(), b2.data(), 23);
        EXPECT_EQ(0, std::memcmp(a.data(), a2.data(), a.size() * 4)) << name(da) << "+" << name(db);
        EXPECT_EQ(0, std::memcmp(b.data(), b2.data(), b.size() * 4)) << name(da) << "+" << name(db);
      }
}

TEST(PackedWeightsTensor, ATensorPacksOnFirstUseWhenAllowed) {
  if (!packed_wanted(DType::bf16, 64)) GTEST_SKIP() << "SKIP: this CPU has no AVX-512 BF16, so nothing is packed";
  std::mt19937 rng(5);
  const Weights small = make_weights(DType::bf16, 40, 256, rng), wide = make_weights(DType::bf16, 8, 2048, rng);
  CpuTensor plain(DType::bf16, 40, 256, small.bytes.data());
  EXPECT_EQ(plain.matmul_rows().packed, nullptr);  // upload allows packing only on the fast path
  CpuTensor t(DType::bf16, 40, 256, small.bytes.data());
  t.allow_packing();
  const WeightRows w = t.matmul_rows();
  ASSERT_NE(w.packed, nullptr);
  EXPECT_EQ(w.packed, t.matmul_rows().packed);  // packed once
  EXPECT_EQ(reinterpret_cast<uintptr_t>(w.packed) % 64, 0u);
  EXPECT_EQ(w.data, small.bytes.data());           // the row-major bytes stay where they were
  EXPECT_EQ(w.rows_from(8, 8).packed, nullptr);   // a view from mid-group reads the stored rows
  EXPECT_NE(w.rows_from(16, 8).packed, nullptr);   // one from a group start keeps the packed copy
  {  // and computes bitwise what the whole matrix does for those rows
    ThreadPool pool(1);
    const std::vector<float> x = make_x(3, 256, rng);
    std::vector<float> all(3 * 40), some(3 * 20);
    gemm(Exec{pool, Precision::fast}, x.data(), 3, 256, w, all.data(), 40);
    gemm(Exec{pool, Precision::fast}, x.data(), 3, 256, w.rows_from(16, 20), some.data(), 20);
    for (int i = 0; i < 3; ++i)
      EXPECT_EQ(0, std::memcmp(&some[static_cast<size_t>(i * 20)], &all[static_cast<size_t>(i * 40 + 16)], 20 * 4));
  }
  CpuTensor big(DType::bf16, 8, 2048, wide.bytes.data());
  big.allow_packing();
  EXPECT_EQ(big.matmul_rows().packed, nullptr);  // k past kPackedMaxK: the row tiles are as fast
  simd_cap(SimdLevel::avx512);
  EXPECT_EQ(t.matmul_rows().packed, nullptr);  // below AVX-512 BF16 the activations are float32
  simd_cap(SimdLevel::avx512_bf16);
}

}  // namespace
}  // namespace sibyl::backend::cpu
