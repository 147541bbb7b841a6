// ggml's block formats (engine/core/quant.h): the GGUF fixtures' Q8_0, Q5_0, Q4_K and Q6_K tensors
// decode to the bf16 checkpoint they were made from; our quantizers reproduce llama.cpp's bytes
// (Q8_0, Q5_0) or beat its error (Q4_K, Q6_K) on the same weights; the f16/bf16 encoders round
// to nearest even; edge blocks stay finite; and the CPU matmul reads quantized rows in place.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "backends/cpu/cpu_backend.h"
#include "backends/cpu/kernels.h"
#include "engine/core/failure.h"
#include "fixture_util.h"
#include "engine/formats/gguf.h"
#include "engine/core/quant.h"
#include "engine/formats/safetensors.h"

namespace sibyl::engine::test {
namespace {

const DType kBlockTypes[] = {DType::q8_0, DType::q5_0, DType::q4_k, DType::q6_k};

DType dtype_of(GgufType t) {
  switch (t) {
    case GgufType::Q8_0: return DType::q8_0;
    case GgufType::Q5_0: return DType::q5_0;
    case GgufType::Q4_K: return DType::q4_k;
    case GgufType::Q6_K: return DType::q6_k;
    default: return DType::f32;
  }
}

// Relative RMS error bounds of a fixture tensor decoded against its bf16 original (measured:
// Q8_0 0.0054, Q5_0 0.043, Q4_K 0.072, Q6_K 0.0179; a layout mistake gives ~1).
double dequant_bound(DType t) {
  switch (t) {
    case DType::q8_0: return 0.0058;
    case DType::q5_0: return 0.046;
    case DType::q4_k: return 0.075;
    case DType::q6_k: return 0.019;
    default: return 0.0;
  }
}

// Bounds on Gaussian data for our own quantizers (measured: 0.0054, 0.0421, 0.0700, 0.0168).
double gaussian_bound(DType t) {
  switch (t) {
    case DType::q8_0: return 0.0056;
    case DType::q5_0: return 0.045;
    case DType::q4_k: return 0.073;
    case DType::q6_k: return 0.0176;
    default: return 0.0;
  }
}

std::vector<float> decode(DType type, const void* data, int64_t n) {
  std::vector<float> out(static_cast<size_t>(n));
  dequantize_row(type, data, out.data(), n);
  return out;
}

std::vector<uint8_t> encode_rows(DType type, const std::vector<float>& x, int64_t row) {
  std::vector<uint8_t> out(row_bytes(type, static_cast<int64_t>(x.size())));
  const int64_t rows = static_cast<int64_t>(x.size()) / row;
  for (int64_t r = 0; r < rows; ++r) quantize_row(type, x.data() + r * row, out.data() + r * row_bytes(type, row), row);
  return out;
}

std::vector<float> gaussian(size_t n, float sigma, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, sigma);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

bool all_finite(const std::vector<float>& v) {
  for (float x : v)
    if (!std::isfinite(x)) return false;
  return true;
}

uint32_t bits_of(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}
float float_of(uint32_t b) {
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}

// ---- the GGUF fixtures against their source checkpoint ----

// A quantized fixture tensor and the original weights it was made from (float32, GGUF row order).
struct FixtureTensor {
  std::string file, name;
  DType type;
  int64_t row;  // elements per row (GGUF dims[0])
  const GgufTensorInfo* info;
  std::vector<float> original;
};

struct Fixtures {
  SafetensorsFile checkpoint{data_dir() + "/tiny-v3/model.safetensors"};
  std::map<std::string, std::unique_ptr<GgufFile>> files;
  std::vector<FixtureTensor> tensors;

  std::vector<float> hf(const std::string& name) const {
    const TensorView& v = checkpoint.at(name);
    return decode(v.dtype, v.data, v.numel());
  }

  // `hf_name` may hold "{e}": the stacked experts (GGUF dims [k, n, n_exp]), one slab each.
  void add(const std::string& file, const std::string& gguf_name, const std::string& hf_name, DType expected) {
    if (!files.count(file)) files[file] = std::make_unique<GgufFile>(data_dir() + "/gguf/" + file);
    const GgufTensorInfo* t = files[file]->tensor(gguf_name);
    ASSERT_NE(t, nullptr) << file << ": " << gguf_name;
    ASSERT_EQ(dtype_of(t->type), expected) << file << ": " << gguf_name << " is " << traits(t->type).name;
    FixtureTensor f{file, gguf_name, expected, t->dims[0], t, {}};
    const size_t brace = hf_name.find("{e}");
    if (brace == std::string::npos) {
      f.original = hf(hf_name);
    } else {
      ASSERT_EQ(t->dims.size(), 3u);
      for (int64_t e = 0; e < t->dims[2]; ++e) {
        std::string n = hf_name;
        n.replace(brace, 3, std::to_string(e));
        const std::vector<float> slab = hf(n);
        f.original.insert(f.original.end(), slab.begin(), slab.end());
      }
    }
    ASSERT_EQ(static_cast<int64_t>(f.original.size()), t->numel()) << gguf_name;
    ASSERT_EQ(t->nbytes, row_bytes(expected, t->numel())) << gguf_name;
    tensors.push_back(std::move(f));
  }

  Fixtures() {
    const std::string L0 = "model.layers.0.", L1 = "model.layers.1.", L2 = "model.layers.2.";
    const char* q8 = "tiny-v3-q8_0.gguf";
    add(q8, "blk.0.attn_q_a.weight", L0 + "self_attn.q_a_proj.weight", DType::q8_0);
    add(q8, "blk.0.attn_kv_a_mqa.weight", L0 + "self_attn.kv_a_proj_with_mqa.weight", DType::q8_0);
    add(q8, "blk.1.attn_output.weight", L1 + "self_attn.o_proj.weight", DType::q8_0);
    add(q8, "blk.1.ffn_gate_shexp.weight", L1 + "mlp.shared_experts.gate_proj.weight", DType::q8_0);
    add(q8, "blk.0.ffn_down.weight", L0 + "mlp.down_proj.weight", DType::q8_0);
    add(q8, "token_embd.weight", "model.embed_tokens.weight", DType::q8_0);
    add(q8, "blk.1.ffn_gate_exps.weight", L1 + "mlp.experts.{e}.gate_proj.weight", DType::q8_0);
    const char* q6 = "tiny-v3-q6_k.gguf";
    add(q6, "blk.0.attn_q_a.weight", L0 + "self_attn.q_a_proj.weight", DType::q6_k);
    add(q6, "blk.2.attn_kv_a_mqa.weight", L2 + "self_attn.kv_a_proj_with_mqa.weight", DType::q6_k);
    add(q6, "blk.0.attn_output.weight", L0 + "self_attn.o_proj.weight", DType::q8_0);
    add(q6, "blk.1.ffn_gate_shexp.weight", L1 + "mlp.shared_experts.gate_proj.weight", DType::q6_k);
    add(q6, "blk.0.ffn_down.weight", L0 + "mlp.down_proj.weight", DType::q6_k);
    add(q6, "token_embd.weight", "model.embed_tokens.weight", DType::q6_k);
    add(q6, "blk.2.ffn_up_exps.weight", L2 + "mlp.experts.{e}.up_proj.weight", DType::q6_k);
    add(q6, "blk.1.ffn_down_exps.weight", L1 + "mlp.experts.{e}.down_proj.weight", DType::q8_0);
    const char* q4 = "tiny-v3-q4_k_m.gguf";
    add(q4, "blk.0.attn_q_a.weight", L0 + "self_attn.q_a_proj.weight", DType::q4_k);
    add(q4, "blk.1.attn_kv_a_mqa.weight", L1 + "self_attn.kv_a_proj_with_mqa.weight", DType::q4_k);
    add(q4, "blk.0.attn_output.weight", L0 + "self_attn.o_proj.weight", DType::q5_0);
    add(q4, "blk.1.attn_q_b.weight", L1 + "self_attn.q_b_proj.weight", DType::q5_0);
    add(q4, "blk.1.ffn_gate_shexp.weight", L1 + "mlp.shared_experts.gate_proj.weight", DType::q4_k);
    add(q4, "blk.0.ffn_down.weight", L0 + "mlp.down_proj.weight", DType::q4_k);
    add(q4, "token_embd.weight", "model.embed_tokens.weight", DType::q4_k);
    add(q4, "output.weight", "lm_head.weight", DType::q6_k);
    add(q4, "blk.1.ffn_gate_exps.weight", L1 + "mlp.experts.{e}.gate_proj.weight", DType::q4_k);
    add(q4, "blk.1.ffn_down_exps.weight", L1 + "mlp.experts.{e}.down_proj.weight", DType::q5_0);
    add(q4, "blk.2.ffn_down_shexp.weight", L2 + "mlp.shared_experts.down_proj.weight", DType::q8_0);
  }
};

const Fixtures& fixtures() {
  static const Fixtures f;
  return f;
}

TEST(QuantGguf, FixturesCoverEveryBlockType) {
  std::map<DType, int> count;
  for (const auto& t : fixtures().tensors) ++count[t.type];
  EXPECT_EQ(fixtures().tensors.size(), 26u);
  for (DType t : kBlockTypes) EXPECT_GE(count[t], 3) << dtype_name(t);
}

TEST(QuantGguf, DequantizedTensorsMatchTheCheckpoint) {
  for (const auto& t : fixtures().tensors) {
    const std::vector<float> got = decode(t.type, t.info->data, t.info->numel());
    const double err = relative_error(got, t.original);
    EXPECT_LE(err, dequant_bound(t.type)) << t.file << ": " << t.name << " (" << dtype_name(t.type) << ")";
    EXPECT_GT(err, 0.0) << t.name;  // they are lossy: an exact match would mean the wrong data
  }
}

// The same weights through quantize_row: at least as good as llama.cpp (which made the files).
TEST(QuantGguf, OwnQuantizerAtLeastAsGoodAsLlamaCpp) {
  std::map<DType, std::tuple<double, double, int>> sums;  // Σ err² llama.cpp, ours; count
  std::printf("%-22s %-28s %-5s %10s %10s %7s\n", "file", "tensor", "type", "llama.cpp", "sibyl", "ratio");
  for (const auto& t : fixtures().tensors) {
    const std::vector<float> theirs = decode(t.type, t.info->data, t.info->numel());
    const std::vector<uint8_t> bytes = encode_rows(t.type, t.original, t.row);
    const std::vector<float> ours = decode(t.type, bytes.data(), t.info->numel());
    const double e_theirs = relative_error(theirs, t.original), e_ours = relative_error(ours, t.original);
    std::printf("%-22s %-28s %-5s %10.6f %10.6f %7.4f\n", t.file.c_str(), t.name.c_str(), dtype_name(t.type),
                e_theirs, e_ours, e_ours / e_theirs);
    EXPECT_LE(e_ours, 1.02 * e_theirs) << t.file << ": " << t.name << " (" << dtype_name(t.type) << ")";
    auto& [theirs2, ours2, count] = sums[t.type];
    theirs2 += e_theirs * e_theirs;
    ours2 += e_ours * e_ours;
    ++count;
  }
  for (const auto& [type, s] : sums) {
    const auto& [theirs2, ours2, count] = s;
    std::printf("%-5s relative RMS error, RMS over %d tensors: llama.cpp %.6f, sibyl %.6f\n", dtype_name(type), count,
                std::sqrt(theirs2 / count), std::sqrt(ours2 / count));
  }
}

// Q8_0 and Q5_0 follow ggml's reference quantizer operation for operation: the original
// weights give the file's bytes, and so do the decoded values (the block's extreme value
// decodes to exactly ±127·d or −16·d, which gives back the same d, and every other value
// sits on the grid, far from a rounding boundary).
TEST(QuantGguf, Q8AndQ5BytesReproduceLlamaCpp) {
  int checked = 0;
  for (const auto& t : fixtures().tensors) {
    if (t.type != DType::q8_0 && t.type != DType::q5_0) continue;
    const std::vector<uint8_t> from_original = encode_rows(t.type, t.original, t.row);
    EXPECT_EQ(std::memcmp(from_original.data(), t.info->data, t.info->nbytes), 0) << t.file << ": " << t.name;
    const std::vector<float> decoded = decode(t.type, t.info->data, t.info->numel());
    const std::vector<uint8_t> again = encode_rows(t.type, decoded, t.row);
    EXPECT_EQ(std::memcmp(again.data(), t.info->data, t.info->nbytes), 0) << t.file << ": " << t.name;
    ++checked;
  }
  EXPECT_GE(checked, 8);
}

// Re-encoding our own K-quant output loses little more: Q6_K finds its grid again (measured:
// no change at all), Q4_K nearly (its super-block scales can come out differently; measured:
// a further 0.043 of the first error).
TEST(QuantRoundTrip, KQuantsReencodeTheirOwnOutput) {
  for (DType type : {DType::q4_k, DType::q6_k}) {
    const std::vector<float> x = gaussian(4096, 0.05f, 11);
    const std::vector<uint8_t> once = encode_rows(type, x, 4096);
    const std::vector<float> y = decode(type, once.data(), 4096);
    const std::vector<uint8_t> twice = encode_rows(type, y, 4096);
    const std::vector<float> z = decode(type, twice.data(), 4096);
    EXPECT_LE(relative_error(z, y), (type == DType::q4_k ? 0.08 : 0.01) * relative_error(y, x)) << dtype_name(type);
  }
}

// ---- round trips ----

TEST(QuantRoundTrip, GaussianDataEveryBlockType) {
  for (float sigma : {1.0f, 0.02f}) {
    const std::vector<float> x = gaussian(8192, sigma, 7);
    for (DType type : kBlockTypes) {
      const std::vector<uint8_t> q = encode_rows(type, x, 8192);
      const std::vector<float> y = decode(type, q.data(), 8192);
      ASSERT_TRUE(all_finite(y)) << dtype_name(type);
      const double err = relative_error(y, x);
      EXPECT_LE(err, gaussian_bound(type)) << dtype_name(type) << " sigma " << sigma;
      EXPECT_GT(err, 0.0) << dtype_name(type);
    }
  }
}

TEST(QuantRoundTrip, Q8AndQ5AreIdempotent) {
  const std::vector<float> x = gaussian(4096, 0.3f, 3);
  for (DType type : {DType::q8_0, DType::q5_0}) {
    const std::vector<uint8_t> once = encode_rows(type, x, 4096);
    const std::vector<uint8_t> twice = encode_rows(type, decode(type, once.data(), 4096), 4096);
    EXPECT_EQ(once, twice) << dtype_name(type);
  }
}

TEST(QuantRoundTrip, PlainTypes) {
  const std::vector<float> x = gaussian(1024, 1.0f, 5);
  // f32: a copy.
  EXPECT_EQ(decode(DType::f32, encode_rows(DType::f32, x, 1024).data(), 1024), x);
  // f16 / bf16 of arbitrary values: within half an ulp.
  const std::vector<float> h = decode(DType::f16, encode_rows(DType::f16, x, 1024).data(), 1024);
  const std::vector<float> b = decode(DType::bf16, encode_rows(DType::bf16, x, 1024).data(), 1024);
  for (size_t i = 0; i < x.size(); ++i) {
    if (std::fabs(x[i]) >= 0x1p-14f) {
      EXPECT_LE(std::fabs(h[i] - x[i]), std::fabs(x[i]) * 0x1p-11f) << x[i];
    }
    EXPECT_LE(std::fabs(b[i] - x[i]), std::fabs(x[i]) * 0x1p-8f) << x[i];
  }
  // Representable values come back exactly, bytes included.
  std::mt19937 rng(9);
  std::vector<uint16_t> halves(4096), bfloats(4096);
  std::vector<float> hv(4096), bv(4096);
  for (size_t i = 0; i < halves.size(); ++i) {
    do halves[i] = static_cast<uint16_t>(rng());
    while ((halves[i] & 0x7c00u) == 0x7c00u);  // finite
    do bfloats[i] = static_cast<uint16_t>(rng());
    while ((bfloats[i] & 0x7f80u) == 0x7f80u);
    hv[i] = f16_to_f32(halves[i]);
    bv[i] = bf16_to_f32(bfloats[i]);
  }
  std::vector<uint16_t> out(4096);
  quantize_row(DType::f16, hv.data(), out.data(), 4096);
  EXPECT_EQ(out, halves);
  EXPECT_EQ(decode(DType::f16, out.data(), 4096), hv);
  quantize_row(DType::bf16, bv.data(), out.data(), 4096);
  EXPECT_EQ(out, bfloats);
  EXPECT_EQ(decode(DType::bf16, out.data(), 4096), bv);
}

TEST(QuantRoundTrip, ZeroBlocksDecodeToZero) {
  for (DType type : kBlockTypes) {
    const std::vector<float> zeros(512, 0.0f);
    const std::vector<uint8_t> q = encode_rows(type, zeros, 512);
    for (float v : decode(type, q.data(), 512)) ASSERT_EQ(v, 0.0f) << dtype_name(type);
    // A zero sub-block next to live ones stays zero (and nothing is NaN).
    std::vector<float> mixed = gaussian(512, 1.0f, 2);
    for (int i = 32; i < 64; ++i) mixed[i] = 0.0f;
    const std::vector<float> y = decode(type, encode_rows(type, mixed, 512).data(), 512);
    ASSERT_TRUE(all_finite(y)) << dtype_name(type);
    EXPECT_LE(relative_error(y, mixed), gaussian_bound(type) * 1.2) << dtype_name(type);
    if (type != DType::q4_k) {  // Q4_K's offset grid need not contain 0; it lands within a step
      for (int i = 32; i < 64; ++i) EXPECT_EQ(y[i], 0.0f) << dtype_name(type) << " " << i;
    } else {
      for (int i = 32; i < 64; ++i) EXPECT_LE(std::fabs(y[i]), 0.2f) << i;
    }
  }
}

// A constant block comes back within the f16 precision of its scales (coarser for a tiny
// constant, whose super-block scale is an f16 subnormal).
TEST(QuantRoundTrip, ConstantBlocks) {
  for (DType type : kBlockTypes) {
    for (float c : {0.5f, -0.5f, 3e-3f, -3e-3f}) {
      const std::vector<float> x(256, c);
      const std::vector<float> y = decode(type, encode_rows(type, x, 256).data(), 256);
      const double tol = std::fabs(c) > 0.1f ? 1e-3 : 4e-3;
      for (float v : y) ASSERT_NEAR(v, c, std::fabs(c) * tol) << dtype_name(type) << " " << c;
    }
  }
}

// One huge value: it survives (within its own block's precision), nothing turns NaN, and the
// blocks that do not hold it keep their usual accuracy.
TEST(QuantRoundTrip, OneHugeOutlier) {
  for (DType type : kBlockTypes) {
    for (float big : {1.0e4f, -3.0e4f}) {
      std::vector<float> x = gaussian(1024, 1.0f, 4);
      x[5] = big;  // in the first block of every format
      const std::vector<float> y = decode(type, encode_rows(type, x, 1024).data(), 1024);
      ASSERT_TRUE(all_finite(y)) << dtype_name(type);
      EXPECT_NEAR(y[5], big, std::fabs(big) * 1e-3) << dtype_name(type);
      const int64_t block = block_elems(type);
      const std::vector<float> rest_x(x.begin() + block, x.end()), rest_y(y.begin() + block, y.end());
      EXPECT_LE(relative_error(rest_y, rest_x), gaussian_bound(type) * 1.2) << dtype_name(type);
      for (int64_t i = 0; i < block; ++i)  // inside the outlier's block: within the coarse step
        EXPECT_LE(std::fabs(y[i] - x[i]), std::fabs(big) / 15.0f) << dtype_name(type) << " " << i;
    }
  }
}

// ---- f16 / bf16 encoders and decoders ----

TEST(QuantHalf, DecoderMatchesReferenceForAllHalves) {
  std::vector<uint16_t> all(65536);
  for (uint32_t h = 0; h < 65536; ++h) all[h] = static_cast<uint16_t>(h);
  const std::vector<float> got = decode(DType::f16, all.data(), 65536);
  for (uint32_t h = 0; h < 65536; ++h) {
    const float want = f16_to_f32(static_cast<uint16_t>(h));
    if (std::isnan(want))
      ASSERT_TRUE(std::isnan(got[h])) << h;
    else
      ASSERT_EQ(bits_of(got[h]), bits_of(want)) << h;
  }
}

TEST(QuantHalf, F16EncoderRoundsToNearestEven) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = f16_to_f32(static_cast<uint16_t>(h));
    if (std::isnan(f)) {
      ASSERT_TRUE(std::isnan(f16_to_f32(f32_to_f16(f)))) << h;
      continue;
    }
    ASSERT_EQ(f32_to_f16(f), h) << h;
  }
  // Every midpoint between finite neighbours (subnormals included) goes to the even one, and
  // a float ulp either side decides.
  for (uint32_t h = 0; h < 0x7bff; ++h) {
    const float lo = f16_to_f32(static_cast<uint16_t>(h)), hi = f16_to_f32(static_cast<uint16_t>(h + 1));
    const float mid = static_cast<float>((static_cast<double>(lo) + hi) / 2);  // exact in float
    for (float sign : {1.0f, -1.0f}) {
      const uint16_t s = sign < 0 ? 0x8000 : 0;
      ASSERT_EQ(f32_to_f16(sign * mid), s | ((h & 1) ? h + 1 : h)) << h;
      ASSERT_EQ(f32_to_f16(sign * std::nextafter(mid, 0.0f)), s | h) << h;
      ASSERT_EQ(f32_to_f16(sign * std::nextafter(mid, INFINITY)), s | (h + 1)) << h;
    }
  }
  // Above the largest half (65504) the midpoint to the next, 65520, rounds to inf.
  EXPECT_EQ(f32_to_f16(std::nextafter(65520.0f, 0.0f)), 0x7bffu);
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7c00u);
  EXPECT_EQ(f32_to_f16(-65520.0f), 0xfc00u);
  EXPECT_EQ(f32_to_f16(1e10f), 0x7c00u);
  EXPECT_EQ(f32_to_f16(-1e10f), 0xfc00u);
  EXPECT_EQ(f32_to_f16(INFINITY), 0x7c00u);
  EXPECT_EQ(f32_to_f16(-0.0f), 0x8000u);
  EXPECT_EQ(f32_to_f16(0x1p-25f), 0u);                 // a tie: to the even zero
  EXPECT_EQ(f32_to_f16(0x1.000002p-25f), 1u);          // just above: the smallest subnormal
  EXPECT_EQ(f32_to_f16(0x1.8p-24f), 2u);               // 1.5 ulp ties to 2
  EXPECT_EQ(f32_to_f16(1e-30f), 0u);
  EXPECT_EQ(f32_to_f16(0x1.ffcp-15f), 0x0400u);        // rounds up into the smallest normal
  EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(float_of(0x7f800001u)))));  // a low-payload NaN
}

TEST(QuantHalf, Bf16EncoderRoundsToNearestEven) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = bf16_to_f32(static_cast<uint16_t>(h));
    if (std::isnan(f)) {
      ASSERT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(f)))) << h;
      continue;
    }
    ASSERT_EQ(f32_to_bf16(f), h) << h;
    if ((h & 0x7fffu) >= 0x7f80u) continue;  // ±inf: no upper neighbour
    const uint32_t mid = (h << 16) | 0x8000u;
    const uint16_t even = static_cast<uint16_t>((h & 1) ? h + 1 : h);
    ASSERT_EQ(f32_to_bf16(float_of(mid)), even) << h;
    ASSERT_EQ(f32_to_bf16(float_of(mid - 1)), h) << h;
    ASSERT_EQ(f32_to_bf16(float_of(mid + 1)), h + 1) << h;
  }
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(float_of(0x7f800001u)))));  // not inf
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(float_of(0xffc00000u)))));
  EXPECT_EQ(f32_to_bf16(float_of(0x7f7fffffu)), 0x7f80u);  // float max rounds to inf
}

TEST(QuantHalf, F8DecodesThroughTheTable) {
  std::vector<uint8_t> all(256);
  for (int b = 0; b < 256; ++b) all[b] = static_cast<uint8_t>(b);
  const std::vector<float> got = decode(DType::f8_e4m3, all.data(), 256);
  for (int b = 0; b < 256; ++b) {
    const float want = f8_e4m3_to_f32(static_cast<uint8_t>(b));
    if (std::isnan(want))
      EXPECT_TRUE(std::isnan(got[b])) << b;
    else
      EXPECT_EQ(got[b], want) << b;
  }
}

// ---- errors ----

TEST(QuantErrors, UnsupportedTypesAndLengths) {
  std::vector<float> x(256, 1.0f);
  std::vector<uint8_t> buf(4096);
  EXPECT_EQ(error_of([&] { quantize_row(DType::f8_e4m3, x.data(), buf.data(), 256); }), Errc::unsupported);
  EXPECT_EQ(error_of([&] { quantize_row(DType::i32, x.data(), buf.data(), 256); }), Errc::unsupported);
  EXPECT_EQ(error_of([&] { quantize_row(DType::i64, x.data(), buf.data(), 256); }), Errc::unsupported);
  EXPECT_EQ(error_of([&] { dequantize_row(DType::i32, buf.data(), x.data(), 256); }), Errc::unsupported);
  EXPECT_EQ(error_of([&] { quantize_row(DType::q4_k, x.data(), buf.data(), 128); }), Errc::invalid_argument);
  EXPECT_EQ(error_of([&] { dequantize_row(DType::q8_0, buf.data(), x.data(), 40); }), Errc::invalid_argument);
}

// ---- the CPU matmul reads quantized rows ----

// y = x·Wᵀ through WeightRows / gemm on the quantized bytes (placed at an address that is
// 2 mod 4, as blocks can sit in a GGUF mapping) equals the float32 matmul of the decoded weight.
void check_matmul(DType type, const std::vector<float>& w, int64_t rows, int64_t k) {
  using backend::cpu::WeightRows;
  const std::vector<uint8_t> q = encode_rows(type, w, k);
  std::vector<uint16_t> storage(q.size() / 2 + 2);
  uint8_t* p = reinterpret_cast<uint8_t*>(storage.data() + 1);
  ASSERT_EQ(reinterpret_cast<uintptr_t>(p) % 4, 2u);
  std::memcpy(p, q.data(), q.size());
  const std::vector<float> wd = decode(type, q.data(), rows * k);

  const int64_t n = 3;
  const std::vector<float> x = gaussian(static_cast<size_t>(n * k), 1.0f, 21);
  std::vector<float> got(static_cast<size_t>(n * rows)), want(got.size()), want_f32(got.size());
  backend::cpu::ThreadPool pool(2);
  backend::cpu::gemm_exact(pool, x.data(), n, k, WeightRows{p, type, rows, k}, got.data(), rows);
  backend::cpu::gemm_exact(pool, x.data(), n, k, WeightRows{reinterpret_cast<const uint8_t*>(wd.data()), DType::f32, rows, k},
                     want_f32.data(), rows);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < rows; ++j) {
      double s = 0;
      for (int64_t c = 0; c < k; ++c) s += static_cast<double>(x[i * k + c]) * wd[j * k + c];
      want[i * rows + j] = static_cast<float>(s);
    }
  EXPECT_LE(relative_error(got, want_f32), 1e-6) << dtype_name(type);
  EXPECT_LE(relative_error(got, want), 1e-5) << dtype_name(type);
  // And the row view itself is the decoded row.
  std::vector<float> scratch(static_cast<size_t>(k));
  for (int64_t j = 0; j < rows; ++j) {
    const float* r = WeightRows{p, type, rows, k}.row(j, scratch.data());
    ASSERT_EQ(std::memcmp(r, wd.data() + j * k, static_cast<size_t>(k) * 4), 0) << dtype_name(type) << " row " << j;
  }
  std::vector<float> conv(static_cast<size_t>(k));
  backend::cpu::to_f32(conv.data(), p, type, k);
  EXPECT_EQ(std::memcmp(conv.data(), wd.data(), static_cast<size_t>(k) * 4), 0) << dtype_name(type);
}

TEST(QuantMatmul, QuantizedWeightRowsEqualDecodedMatmul) {
  const int64_t rows = 40, k = 768;
  const std::vector<float> w = gaussian(static_cast<size_t>(rows * k), 0.05f, 17);
  for (DType type : kBlockTypes) check_matmul(type, w, rows, k);
  check_matmul(DType::f16, w, rows, k);
  check_matmul(DType::bf16, w, rows, k);
}

TEST(QuantMatmul, GgufTensorsThroughWeightRows) {
  using backend::cpu::WeightRows;
  backend::cpu::ThreadPool pool(2);
  for (const auto& t : fixtures().tensors) {
    const int64_t k = t.row, rows = t.info->numel() / k;
    const std::vector<float> wd = decode(t.type, t.info->data, t.info->numel());
    const std::vector<float> x = gaussian(static_cast<size_t>(2 * k), 1.0f, 5);
    std::vector<float> got(static_cast<size_t>(2 * rows)), want(got.size());
    backend::cpu::gemm_exact(pool, x.data(), 2, k, WeightRows{t.info->data, t.type, rows, k}, got.data(), rows);
    backend::cpu::gemm_exact(pool, x.data(), 2, k, WeightRows{reinterpret_cast<const uint8_t*>(wd.data()), DType::f32, rows, k},
                       want.data(), rows);
    EXPECT_LE(relative_error(got, want), 1e-6) << t.file << ": " << t.name;
  }
}

}  // namespace
}  // namespace sibyl::engine::test
