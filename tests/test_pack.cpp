// The .sibyl pack: metadata and tensors survive write → read exactly (every config field, the
// real tokenizers, all dtypes, the alignment rules); opening reads no tensor byte; the content
// checksum is checked on request; and truncated, bit-flipped or hand-patched packs are
// Errc::format (a newer version Errc::unsupported) — never a crash. Writer misuse is reported.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cmath>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <random>
#include <set>

#include "engine/model/config.h"
#include "engine/core/failure.h"
#include "engine/formats/file_util.h"
#include "fixture_util.h"
#include "engine/formats/pack.h"
#include "test_files.h"

namespace sibyl::engine::test {
namespace {

namespace fs = std::filesystem;
using sibyl_test::TempDir;

// ---- building packs ----

struct Tensor {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  std::string bytes;
};

size_t bytes_for(DType dtype, const std::vector<int64_t>& shape) {
  int64_t rows = 1;
  for (size_t i = 0; i + 1 < shape.size(); ++i) rows *= shape[i];
  return static_cast<size_t>(rows) * row_bytes(dtype, shape.back());
}

Tensor random_tensor(const std::string& name, DType dtype, std::vector<int64_t> shape, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string bytes(bytes_for(dtype, shape), '\0');
  for (char& c : bytes) c = static_cast<char>(rng() & 0xff);
  return {name, dtype, std::move(shape), std::move(bytes)};
}

// One tensor of every dtype, ranks 1 to 3, quantized rows of whole blocks.
std::vector<Tensor> every_dtype() {
  return {
      random_tensor("a.f32", DType::f32, {3}, 1),         random_tensor("b.f16", DType::f16, {2, 5}, 2),
      random_tensor("c.bf16", DType::bf16, {4, 3, 8}, 3), random_tensor("d.i32", DType::i32, {7}, 4),
      random_tensor("e.i64", DType::i64, {2, 2}, 5),      random_tensor("f.f8", DType::f8_e4m3, {16, 16}, 6),
      random_tensor("g.q8_0", DType::q8_0, {2, 64}, 7),   random_tensor("h.q5_0", DType::q5_0, {3, 32}, 8),
      random_tensor("i.q4_k", DType::q4_k, {2, 256}, 9),  random_tensor("j.q6_k", DType::q6_k, {1, 2, 512}, 10),
  };
}

PackMetadata metadata_of(const std::string& fixture) {
  PackMetadata m;
  m.config = load_model_config(data_dir() + "/" + fixture + "/config.json");
  m.tokenizer_json = "{\"model\": {\"type\": \"BPE\"}, \"fixture\": \"" + fixture + "\"}";
  m.tokenizer_config_json = "{\"chat_template\": \"{% for m in messages %}{{ m['content'] }}{% endfor %}\"}";
  m.generation.temperature = 0.6f;
  m.generation.top_p = 0.95f;
  m.generation.max_new_tokens = 256;
  m.source = "converted from tests/data/" + fixture + " (safetensors) by test_pack";
  return m;
}

void write_pack(const std::string& path, const PackMetadata& meta, const std::vector<Tensor>& tensors) {
  PackWriter w(path, meta);
  for (const Tensor& t : tensors) w.add_tensor(t.name, t.dtype, t.shape, t.bytes.data(), t.bytes.size());
  w.finish();
  EXPECT_EQ(w.bytes_written(), fs::file_size(path));
}

std::string small_pack_bytes(const TempDir& dir, const std::vector<Tensor>& tensors = every_dtype()) {
  PackMetadata m = metadata_of("tiny-v3");
  const std::string path = (dir.path() / "small.sibyl").string();
  write_pack(path, m, tensors);
  return sibyl_test::read_file(path);
}

// Parses a copy of exactly these bytes (so that ASan sees any overread).
PackContents parse(const std::string& bytes) {
  std::vector<uint8_t> copy(bytes.begin(), bytes.end());
  PackContents c = parse_pack(copy.data(), copy.size(), "test.sibyl");
  for (auto& [name, t] : c.tensors) t.data = nullptr;  // the copy dies here
  return c;
}

Errc parse_error(const std::string& bytes, std::string* message = nullptr) {
  return error_of([&] { parse(bytes); }, message);
}

uint64_t u64_at(const std::string& b, size_t at) {
  uint64_t v;
  std::memcpy(&v, b.data() + at, 8);
  return v;
}
void set_u64(std::string& b, size_t at, uint64_t v) { std::memcpy(b.data() + at, &v, 8); }
void set_u32(std::string& b, size_t at, uint32_t v) { std::memcpy(b.data() + at, &v, 4); }

size_t manifest_offset(const std::string& b) { return static_cast<size_t>(u64_at(b, 16)); }
size_t manifest_size(const std::string& b) { return static_cast<size_t>(u64_at(b, 24)); }

// Recomputes the header's manifest checksum after a manifest byte was patched.
void fix_manifest_checksum(std::string& b) {
  set_u64(b, 56, pack_checksum(b.data() + manifest_offset(b), manifest_size(b)));
}

// The file position of the one sizeof(T)-aligned occurrence of `v`'s bytes in the manifest
// (FlatBuffers aligns scalars to their size); -1 unless exactly one.
template <class T>
ptrdiff_t find_unique(const std::string& b, T v) {
  ptrdiff_t found = -1;
  for (size_t at = manifest_offset(b); at + sizeof v <= manifest_offset(b) + manifest_size(b); at += sizeof v) {
    if (std::memcmp(b.data() + at, &v, sizeof v) != 0) continue;
    if (found >= 0) return -1;
    found = static_cast<ptrdiff_t>(at);
  }
  return found;
}

void expect_same_config(const ModelConfig& a, const ModelConfig& b) {
  EXPECT_EQ(a.model_type, b.model_type);
  EXPECT_EQ(a.family, b.family);
  EXPECT_EQ(a.vocab_size, b.vocab_size);
  EXPECT_EQ(a.hidden_size, b.hidden_size);
  EXPECT_EQ(a.intermediate_size, b.intermediate_size);
  EXPECT_EQ(a.n_layers, b.n_layers);
  EXPECT_EQ(a.n_heads, b.n_heads);
  EXPECT_EQ(a.q_lora_rank, b.q_lora_rank);
  EXPECT_EQ(a.kv_lora_rank, b.kv_lora_rank);
  EXPECT_EQ(a.qk_nope_head_dim, b.qk_nope_head_dim);
  EXPECT_EQ(a.qk_rope_head_dim, b.qk_rope_head_dim);
  EXPECT_EQ(a.v_head_dim, b.v_head_dim);
  EXPECT_EQ(a.max_position_embeddings, b.max_position_embeddings);
  EXPECT_EQ(a.rms_norm_eps, b.rms_norm_eps);
  EXPECT_EQ(a.tie_word_embeddings, b.tie_word_embeddings);
  EXPECT_EQ(a.n_routed_experts, b.n_routed_experts);
  EXPECT_EQ(a.n_shared_experts, b.n_shared_experts);
  EXPECT_EQ(a.moe_intermediate_size, b.moe_intermediate_size);
  EXPECT_EQ(a.n_experts_per_tok, b.n_experts_per_tok);
  EXPECT_EQ(a.first_k_dense_replace, b.first_k_dense_replace);
  EXPECT_EQ(a.moe_layer_freq, b.moe_layer_freq);
  EXPECT_EQ(a.n_group, b.n_group);
  EXPECT_EQ(a.topk_group, b.topk_group);
  EXPECT_EQ(a.norm_topk_prob, b.norm_topk_prob);
  EXPECT_EQ(a.routed_scaling_factor, b.routed_scaling_factor);
  EXPECT_EQ(a.scoring, b.scoring);
  EXPECT_EQ(a.topk_method, b.topk_method);
  EXPECT_EQ(a.num_nextn_predict_layers, b.num_nextn_predict_layers);
  EXPECT_EQ(a.fp8_block_rows, b.fp8_block_rows);
  EXPECT_EQ(a.fp8_block_cols, b.fp8_block_cols);
  EXPECT_EQ(a.bos_token_id, b.bos_token_id);
  EXPECT_EQ(a.eos_token_ids, b.eos_token_ids);
  EXPECT_EQ(a.rope.yarn, b.rope.yarn);
  EXPECT_EQ(a.rope.theta, b.rope.theta);
  EXPECT_EQ(a.rope.factor, b.rope.factor);
  EXPECT_EQ(a.rope.beta_fast, b.rope.beta_fast);
  EXPECT_EQ(a.rope.beta_slow, b.rope.beta_slow);
  EXPECT_EQ(a.rope.mscale, b.rope.mscale);
  EXPECT_EQ(a.rope.mscale_all_dim, b.rope.mscale_all_dim);
  EXPECT_EQ(a.rope.attention_factor, b.rope.attention_factor);
  EXPECT_EQ(a.rope.truncate, b.rope.truncate);
  EXPECT_EQ(a.rope.original_max_position_embeddings, b.rope.original_max_position_embeddings);
  EXPECT_EQ(a.rope.interleaved, b.rope.interleaved);
}

void expect_same_metadata(const PackMetadata& a, const PackMetadata& b) {
  expect_same_config(a.config, b.config);
  EXPECT_TRUE(a.tokenizer_json == b.tokenizer_json);  // not EXPECT_EQ: megabytes in a failure message
  EXPECT_TRUE(a.tokenizer_config_json == b.tokenizer_config_json);
  EXPECT_EQ(a.generation.temperature, b.generation.temperature);
  EXPECT_EQ(a.generation.top_p, b.generation.top_p);
  EXPECT_EQ(a.generation.top_k, b.generation.top_k);
  EXPECT_EQ(a.generation.max_new_tokens, b.generation.max_new_tokens);
  EXPECT_EQ(a.source, b.source);
}

// Every tensor present with its dtype, shape and bytes, inside the mapping's data section
// at an aligned offset.
void expect_tensors(const PackFile& pack, const std::vector<Tensor>& tensors) {
  const PackContents& c = pack.contents();
  ASSERT_EQ(c.tensors.size(), tensors.size());
  const uint8_t* base = pack.mapping().data();
  const uint8_t* data_begin = base + c.data_offset;
  const uint8_t* data_end = data_begin + c.data_size;
  EXPECT_EQ(c.data_offset % 4096, 0u);
  for (const Tensor& t : tensors) {
    const TensorView* v = pack.find(t.name);
    ASSERT_NE(v, nullptr) << t.name;
    EXPECT_EQ(v->name, t.name);
    EXPECT_EQ(v->dtype, t.dtype) << t.name;
    EXPECT_EQ(v->shape, t.shape) << t.name;
    EXPECT_EQ(v->file, pack.path());
    ASSERT_EQ(v->nbytes, t.bytes.size()) << t.name;
    ASSERT_GE(v->data, data_begin) << t.name;
    ASSERT_LE(v->data + v->nbytes, data_end) << t.name;
    const auto offset = static_cast<uint64_t>(v->data - base);
    EXPECT_EQ(offset % 64, 0u) << t.name;
    if (v->nbytes >= (1u << 20)) {
      EXPECT_EQ(offset % 4096, 0u) << t.name;
    }
    EXPECT_EQ(std::memcmp(v->data, t.bytes.data(), t.bytes.size()), 0) << t.name;
  }
}

// ---- round trips ----

TEST(PackRoundTrip, FixtureConfigsAndEveryDtype) {
  for (const char* fixture : {"tiny-v3", "tiny-v2", "tiny-v2-lite", "tiny-v3-fp8"}) {
    SCOPED_TRACE(fixture);
    TempDir dir;
    const std::string path = (dir.path() / "model.sibyl").string();
    const PackMetadata meta = metadata_of(fixture);
    std::vector<Tensor> tensors = every_dtype();
    tensors.push_back(random_tensor("z.large", DType::bf16, {520, 1024}, 11));  // ≥ 1 MiB: page-aligned
    tensors.push_back(random_tensor("y.after_large", DType::f32, {5}, 12));
    write_pack(path, meta, tensors);
    EXPECT_TRUE(is_pack_file(path));
    EXPECT_FALSE(fs::exists(path + ".partial"));

    PackFile pack(path);
    EXPECT_EQ(pack.contents().version, kPackFormatVersion);
    expect_same_metadata(pack.metadata(), meta);
    expect_tensors(pack, tensors);
    pack.verify_checksum();
  }
}

TEST(PackRoundTrip, FixtureConfigFieldsAreRead) {
  // The fixtures' distinguishing values, so that "equal" is not "equal and default".
  TempDir dir;
  const std::string path = (dir.path() / "v2.sibyl").string();
  write_pack(path, metadata_of("tiny-v2"), {});
  PackFile v2(path);
  const ModelConfig& c = v2.metadata().config;
  EXPECT_EQ(c.family, Family::deepseek_v2);
  EXPECT_TRUE(c.rope.yarn);
  EXPECT_EQ(c.rope.mscale, 0.707);
  EXPECT_EQ(c.rope.original_max_position_embeddings, 64);
  EXPECT_EQ(c.eos_token_ids, std::vector<int32_t>{1});
  EXPECT_TRUE(v2.tensors().empty());

  const std::string fp8_path = (dir.path() / "fp8.sibyl").string();
  write_pack(fp8_path, metadata_of("tiny-v3-fp8"), {});
  PackFile fp8(fp8_path);
  EXPECT_EQ(fp8.metadata().config.fp8_block_rows, 128);
  EXPECT_EQ(fp8.metadata().config.fp8_block_cols, 128);
  EXPECT_EQ(fp8.metadata().config.scoring, ScoringFunc::sigmoid);
  EXPECT_EQ(fp8.metadata().config.topk_method, TopkMethod::noaux_tc);
}

TEST(PackRoundTrip, EveryFieldAwayFromItsDefault) {
  PackMetadata m = metadata_of("tiny-v3");
  ModelConfig& c = m.config;
  c.model_type = "kimi_k2";
  c.q_lora_rank = 0;
  c.rms_norm_eps = 1.2345e-5;
  c.tie_word_embeddings = true;
  c.moe_layer_freq = 2;
  c.norm_topk_prob = false;
  c.routed_scaling_factor = 2.827;
  c.scoring = ScoringFunc::softmax;
  c.topk_method = TopkMethod::group_limited_greedy;
  c.num_nextn_predict_layers = 1;
  c.fp8_block_rows = 64;
  c.fp8_block_cols = 32;
  c.bos_token_id = -1;
  c.eos_token_ids = {1, 5, 1023};
  c.rope.yarn = true;
  c.rope.theta = 50000.5;
  c.rope.factor = 40;
  c.rope.beta_fast = 16.25;
  c.rope.beta_slow = 0.5;
  c.rope.mscale = 0.1;
  c.rope.mscale_all_dim = 0.2;
  c.rope.attention_factor = 1.375;
  c.rope.truncate = false;
  c.rope.original_max_position_embeddings = 4096;
  c.rope.interleaved = false;
  m.generation = {0.0f, 1.0f, 40, 1};
  m.tokenizer_json = std::string("embedded\0nul and \xff bytes", 25);
  m.tokenizer_config_json.clear();
  m.source.clear();

  TempDir dir;
  const std::string path = (dir.path() / "m.sibyl").string();
  write_pack(path, m, {});
  PackFile pack(path);
  expect_same_metadata(pack.metadata(), m);

  // And every generation default unset.
  m.generation = {};
  write_pack(path, m, {});
  PackFile unset(path);
  EXPECT_FALSE(unset.metadata().generation.temperature);
  EXPECT_FALSE(unset.metadata().generation.top_p);
  EXPECT_FALSE(unset.metadata().generation.top_k);
  EXPECT_FALSE(unset.metadata().generation.max_new_tokens);
}

TEST(PackRoundTrip, RealTokenizersByteIdentical) {
  const std::vector<std::pair<std::string, std::string>> dirs = {
      {data_dir() + "/tokenizers/deepseek-v3", "tiny-v3"},
      {data_dir() + "/../../models/tiny-reasoner", "tiny-v3"},
  };
  int found = 0;
  for (const auto& [tok_dir, fixture] : dirs) {
    if (!fs::exists(tok_dir + "/tokenizer.json")) continue;
    ++found;
    SCOPED_TRACE(tok_dir);
    PackMetadata m = metadata_of(fixture);
    m.tokenizer_json = read_text_file(tok_dir + "/tokenizer.json");
    m.tokenizer_config_json = read_text_file(tok_dir + "/tokenizer_config.json");
    TempDir dir;
    const std::string path = (dir.path() / "tok.sibyl").string();
    write_pack(path, m, {random_tensor("w", DType::bf16, {4, 4}, 1)});
    PackFile pack(path);
    EXPECT_EQ(pack.metadata().tokenizer_json.size(), m.tokenizer_json.size());
    EXPECT_TRUE(pack.metadata().tokenizer_json == m.tokenizer_json);
    EXPECT_TRUE(pack.metadata().tokenizer_config_json == m.tokenizer_config_json);
  }
  if (found == 0) GTEST_SKIP() << "no tokenizer files in the test data";
}

TEST(PackRoundTrip, UnalignedBufferParses) {
  TempDir dir;
  const std::string bytes = small_pack_bytes(dir);
  std::vector<uint8_t> shifted(bytes.size() + 1);
  std::memcpy(shifted.data() + 1, bytes.data(), bytes.size());
  PackContents c = parse_pack(shifted.data() + 1, bytes.size(), "shifted");
  ASSERT_EQ(c.tensors.size(), every_dtype().size());
  for (const Tensor& t : every_dtype()) {
    const TensorView* v = c.find(t.name);
    ASSERT_NE(v, nullptr);
    EXPECT_EQ(std::memcmp(v->data, t.bytes.data(), t.bytes.size()), 0);
  }
  verify_pack_checksum(shifted.data() + 1, bytes.size(), c, "shifted");
}

// Opening must not read the data section: parse a copy whose tensor pages are unreadable.
TEST(PackOpen, ReadsNoTensorByte) {
  TempDir dir;
  std::vector<Tensor> tensors = every_dtype();
  tensors.push_back(random_tensor("z.large", DType::f32, {3, 100000}, 3));
  const std::string bytes = small_pack_bytes(dir, tensors);
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  const size_t mapped = (bytes.size() + page - 1) / page * page;
  void* p = ::mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(p, MAP_FAILED);
  auto* base = static_cast<uint8_t*>(p);
  std::memcpy(base, bytes.data(), bytes.size());
  const size_t protect_begin = static_cast<size_t>(u64_at(bytes, 32));  // data_offset: page-aligned
  const size_t protect_end = manifest_offset(bytes) / page * page;
  ASSERT_GT(protect_end, protect_begin + 64 * page);
  ASSERT_EQ(::mprotect(base + protect_begin, protect_end - protect_begin, PROT_NONE), 0);
  PackContents c = parse_pack(base, bytes.size(), "protected");
  EXPECT_EQ(c.tensors.size(), tensors.size());
  ::munmap(p, mapped);
}

// ---- checksums ----

TEST(PackChecksum, VerifyPassesAndCatchesOneFlippedByte) {
  TempDir dir;
  const std::string path = (dir.path() / "model.sibyl").string();
  write_pack(path, metadata_of("tiny-v3"), every_dtype());
  PackFile(path).verify_checksum();

  std::string bytes = sibyl_test::read_file(path);
  const PackContents good = parse(bytes);
  // Flip a byte inside a tensor and one in the zero padding between tensors.
  for (size_t at : {static_cast<size_t>(good.data_offset + 70), static_cast<size_t>(good.data_offset + 20)}) {
    std::string bad = bytes;
    bad[at] = static_cast<char>(bad[at] ^ 0x10);
    sibyl_test::write_file(path, bad);
    PackFile pack(path);  // opening does not read the data
    std::string message;
    EXPECT_EQ(error_of([&] { pack.verify_checksum(); }, &message), Errc::format) << at;
    EXPECT_NE(message.find("checksum"), std::string::npos) << message;
    EXPECT_NE(message.find(path), std::string::npos) << message;
  }
}

TEST(PackChecksum, ManifestChecksumIsCheckedAtOpen) {
  TempDir dir;
  std::string bytes = small_pack_bytes(dir);
  bytes[manifest_offset(bytes) + manifest_size(bytes) / 2] ^= 0x01;
  std::string message;
  EXPECT_EQ(parse_error(bytes, &message), Errc::format);
  EXPECT_NE(message.find("manifest checksum"), std::string::npos) << message;
}

// ---- damaged files ----

TEST(PackCorrupt, TruncationAtEveryKibibyteAndOddSizes) {
  TempDir dir;
  const std::string bytes = small_pack_bytes(dir);
  ASSERT_GT(bytes.size(), 5000u);
  std::set<size_t> sizes = {0,
                            1,
                            7,
                            8,
                            9,
                            63,
                            64,
                            65,
                            100,
                            4095,
                            4096,
                            4097,
                            bytes.size() - 1,
                            bytes.size() - 7,
                            bytes.size() - 8,
                            manifest_offset(bytes),
                            manifest_offset(bytes) + 1,
                            manifest_offset(bytes) - 1};
  for (size_t n = 0; n < bytes.size(); n += 1024) sizes.insert(n);
  for (size_t n : sizes) {
    ASSERT_LT(n, bytes.size());
    std::string message;
    EXPECT_EQ(parse_error(bytes.substr(0, n), &message), Errc::format) << n;
    EXPECT_FALSE(message.empty());
  }
  std::string message;
  EXPECT_EQ(parse_error(bytes.substr(0, 4096), &message), Errc::format);
  EXPECT_NE(message.find("truncated"), std::string::npos) << message;
  EXPECT_EQ(parse_error(bytes + std::string(8, '\0'), &message), Errc::format);
  EXPECT_NE(message.find("after the manifest"), std::string::npos) << message;
}

TEST(PackCorrupt, TruncatedFileOnDisk) {
  TempDir dir;
  const std::string path = (dir.path() / "model.sibyl").string();
  write_pack(path, metadata_of("tiny-v3"), every_dtype());
  fs::resize_file(path, fs::file_size(path) - 100);
  std::string message;
  EXPECT_EQ(error_of([&] { PackFile p(path); }, &message), Errc::format);
  EXPECT_NE(message.find(path), std::string::npos) << message;
}

TEST(PackCorrupt, EveryHeaderByteFlipped) {
  TempDir dir;
  const std::string bytes = small_pack_bytes(dir);
  for (size_t i = 0; i < kPackHeaderSize; ++i) {
    for (unsigned mask : {0x01u, 0x80u, 0xffu}) {
      std::string bad = bytes;
      bad[i] = static_cast<char>(bad[i] ^ mask);
      if (i >= 48 && i < 56) {  // the content checksum: not checked at open
        PackContents c = parse(bad);
        std::vector<uint8_t> copy(bad.begin(), bad.end());
        EXPECT_EQ(error_of([&] { verify_pack_checksum(copy.data(), copy.size(), c, "x"); }), Errc::format) << i;
        continue;
      }
      const Errc e = parse_error(bad);
      if (i >= 8 && i < 12) {  // the format version
        EXPECT_TRUE(e == Errc::format || e == Errc::unsupported) << i;
      } else {
        EXPECT_EQ(e, Errc::format) << i << " " << mask;
      }
    }
  }
  // The padding between the header and the data is not checked.
  std::string padded = bytes;
  padded[100] = 'x';
  EXPECT_EQ(parse(padded).tensors.size(), every_dtype().size());
}

// Each manifest byte flipped and the checksum recomputed: the verifier and the checks after it
// see the damage. Any outcome but a crash is fine; what parses must still be in bounds.
TEST(PackCorrupt, EveryManifestByteFlippedBehindAValidChecksum) {
  TempDir dir;
  const std::string bytes = small_pack_bytes(dir);
  const size_t begin = manifest_offset(bytes), end = begin + manifest_size(bytes);
  ASSERT_LT(end - begin, 64u * 1024);
  size_t parsed = 0, failed = 0;
  for (size_t i = begin; i < end; ++i) {
    for (unsigned mask : {0x01u, 0x40u, 0xffu}) {
      std::string bad = bytes;
      bad[i] = static_cast<char>(bad[i] ^ mask);
      fix_manifest_checksum(bad);
      std::vector<uint8_t> copy(bad.begin(), bad.end());
      try {
        PackContents c = parse_pack(copy.data(), copy.size(), "x");
        for (const auto& [name, t] : c.tensors) {
          ASSERT_FALSE(name.empty());
          ASSERT_GE(t.data, copy.data() + c.data_offset);
          ASSERT_LE(t.data + t.nbytes, copy.data() + c.data_offset + c.data_size);
        }
        ++parsed;
      } catch (const Failure& e) {
        EXPECT_EQ(e.code(), Errc::format) << i << ": " << e.what();
        ++failed;
      }
    }
  }
  EXPECT_GT(failed, 0u);
  EXPECT_GT(parsed, 0u);  // e.g. tensor bytes in the random names, the source string
}

TEST(PackCorrupt, VersionsAndHeaderSize) {
  TempDir dir;
  const std::string bytes = small_pack_bytes(dir);
  std::string bad = bytes;
  set_u32(bad, 8, 2);
  std::string message;
  EXPECT_EQ(parse_error(bad, &message), Errc::unsupported);
  EXPECT_NE(message.find("version 2"), std::string::npos) << message;
  EXPECT_NE(message.find("version 1"), std::string::npos) << message;
  set_u32(bad, 8, 0);
  EXPECT_EQ(parse_error(bad), Errc::format);
  bad = bytes;
  set_u32(bad, 12, 128);
  EXPECT_EQ(parse_error(bad, &message), Errc::format);
  EXPECT_NE(message.find("header_size"), std::string::npos) << message;
  bad = bytes;
  bad[0] = 'X';
  EXPECT_EQ(parse_error(bad, &message), Errc::format);
  EXPECT_NE(message.find("not a .sibyl pack"), std::string::npos) << message;
}

TEST(PackCorrupt, HeaderRangesOverflowSafe) {
  TempDir dir;
  const std::string bytes = small_pack_bytes(dir);
  const uint64_t huge = ~uint64_t(0) - 4095;  // a multiple of 4096 near 2^64
  struct Case {
    size_t at;
    uint64_t value;
  };
  for (const Case& c : std::vector<Case>{{16, huge},
                                         {16, manifest_offset(bytes) + 8},
                                         {16, 4096},
                                         {16, manifest_offset(bytes) + 4},
                                         {24, huge},
                                         {24, 0},
                                         {24, manifest_size(bytes) + 8},
                                         {32, huge},
                                         {32, 0},
                                         {32, 4097},
                                         {32, 8192},
                                         {40, huge},
                                         {40, ~uint64_t(0)},
                                         {40, manifest_offset(bytes)}}) {
    std::string bad = bytes;
    set_u64(bad, c.at, c.value);
    std::string message;
    EXPECT_EQ(parse_error(bad, &message), Errc::format) << c.at << " = " << c.value;
    EXPECT_NE(message.find("test.sibyl: "), std::string::npos) << message;
  }
}

// Hand-patched manifest fields (checksum recomputed) give messages naming the tensor.
TEST(PackCorrupt, TensorEntryChecks) {
  TempDir dir;
  // Distinctive numbers, so that each field's bytes occur once in the manifest.
  std::vector<Tensor> tensors = {
      random_tensor("first.weight", DType::i32, {1, 4951}, 1), random_tensor("dup.aa", DType::f32, {3}, 2),
      random_tensor("dup.bb", DType::f32, {3}, 3), random_tensor("quant", DType::q4_k, {3, 768}, 4)};
  const std::string bytes = small_pack_bytes(dir, tensors);
  const PackContents good = parse(bytes);
  const ptrdiff_t dim = find_unique<int64_t>(bytes, 4951);
  const ptrdiff_t size = find_unique<uint64_t>(bytes, 4 * 4951);
  const uint64_t second_offset = (4 * 4951 + 63) / 64 * 64;  // dup.aa follows first.weight
  const ptrdiff_t offset = find_unique<uint64_t>(bytes, second_offset);
  ASSERT_GE(dim, 0);
  ASSERT_GE(size, 0);
  ASSERT_GE(offset, 0);

  auto expect = [&](std::string bad, const std::string& needle1, const std::string& needle2) {
    fix_manifest_checksum(bad);
    std::string message;
    EXPECT_EQ(parse_error(bad, &message), Errc::format) << needle1;
    EXPECT_NE(message.find(needle1), std::string::npos) << message;
    EXPECT_NE(message.find(needle2), std::string::npos) << message;
  };
  auto patched = [&](ptrdiff_t at, uint64_t v) {
    std::string b = bytes;
    set_u64(b, static_cast<size_t>(at), v);
    return b;
  };
  expect(patched(dim, 0), "'first.weight'", "dimension of 0");
  expect(patched(dim, static_cast<uint64_t>(-1)), "'first.weight'", "dimension of -1");
  expect(patched(dim, (uint64_t(1) << 40) + 1), "'first.weight'", "[1, 2^40]");
  expect(patched(dim - 8, uint64_t(1) << 40), "'first.weight'", "bytes");  // [2^40, 4951]: size mismatch
  expect(patched(size, 4 * 4951 + 4), "'first.weight'", "its shape needs 19804");
  expect(patched(size, ~uint64_t(0)), "'first.weight'", "its shape needs");
  expect(patched(offset, second_offset + 4), "'dup.aa'", "not a multiple of 64");
  expect(patched(offset, (good.data_size + 63) / 64 * 64), "'dup.aa'", "extends past the data section");
  expect(patched(offset, ~uint64_t(0) - 63), "'dup.aa'", "extends past the data section");
  {  // rank 5: the shape vector's length, 4 bytes before its first element
    std::string b = bytes;
    set_u32(b, static_cast<size_t>(dim - 12), 5);
    expect(b, "'first.weight'", "rank 5");
    set_u32(b, static_cast<size_t>(dim - 12), 0);
    expect(b, "'first.weight'", "rank 0");
  }
  {  // the shape vector moved by 4 bytes: its 8-byte elements misaligned (FlatBuffers 2.0's
     // verifier lets that pass; UBSan would catch an aligned-only read)
    const size_t length_at = static_cast<size_t>(dim - 12);
    ptrdiff_t ref = -1;
    for (size_t q = manifest_offset(bytes); q < length_at; q += 4) {
      uint32_t rel;
      std::memcpy(&rel, bytes.data() + q, 4);
      if (q + rel == length_at) ref = static_cast<ptrdiff_t>(q);
    }
    ASSERT_GE(ref, 0);
    std::string b = bytes;
    set_u32(b, static_cast<size_t>(ref), static_cast<uint32_t>(length_at - static_cast<size_t>(ref) + 4));
    expect(b, "'first.weight'", "dimension of");  // reads [4951 << 32]
  }
  {  // a duplicate name
    std::string b = bytes;
    const size_t at = b.find("dup.bb", manifest_offset(b));
    ASSERT_NE(at, std::string::npos);
    b[at + 4] = 'a';
    b[at + 5] = 'a';
    expect(b, "'dup.aa'", "more than once");
  }
  {  // a q4_k row that is not whole blocks: 768 → 700 columns
    const ptrdiff_t cols = find_unique<int64_t>(bytes, 768);
    ASSERT_GE(cols, 0);
    expect(patched(cols, 700), "'quant'", "256-element blocks of Q4_K");
  }
}

TEST(PackCorrupt, ConfigAndGenerationChecks) {
  TempDir dir;
  PackMetadata m = metadata_of("tiny-v3");
  m.config.vocab_size = 1031;  // distinctive
  m.generation.top_p = 0.8125f;
  const std::string path = (dir.path() / "m.sibyl").string();
  PackWriter w(path, m);
  w.finish();
  const std::string bytes = sibyl_test::read_file(path);

  const ptrdiff_t vocab = find_unique<int64_t>(bytes, 1031);
  ASSERT_GE(vocab, 0);
  std::string bad = bytes;
  set_u64(bad, static_cast<size_t>(vocab), 0);
  fix_manifest_checksum(bad);
  std::string message;
  EXPECT_EQ(parse_error(bad, &message), Errc::format);
  EXPECT_NE(message.find("vocab_size"), std::string::npos) << message;

  const ptrdiff_t top_p = find_unique<float>(bytes, 0.8125f);
  ASSERT_GE(top_p, 0);
  bad = bytes;
  const float two = 2.0f;
  std::memcpy(bad.data() + top_p, &two, 4);
  fix_manifest_checksum(bad);
  EXPECT_EQ(parse_error(bad, &message), Errc::format);
  EXPECT_NE(message.find("top_p"), std::string::npos) << message;
  const float nan = std::nanf("");
  std::memcpy(bad.data() + top_p, &nan, 4);
  fix_manifest_checksum(bad);
  EXPECT_EQ(parse_error(bad), Errc::format);
}

TEST(PackCorrupt, NotAPackAndEmptyFiles) {
  TempDir dir;
  const fs::path empty = dir.path() / "empty.sibyl", other = dir.path() / "model.safetensors";
  sibyl_test::write_file(empty, "");
  sibyl_test::write_file(other, sibyl_test::read_file(data_dir() + "/tiny-v3/model.safetensors"));
  EXPECT_FALSE(is_pack_file(empty.string()));
  EXPECT_FALSE(is_pack_file(other.string()));
  EXPECT_FALSE(is_pack_file((dir.path() / "missing").string()));
  EXPECT_FALSE(is_pack_file(dir.path().string()));
  EXPECT_EQ(error_of([&] { PackFile p(empty.string()); }), Errc::format);
  std::string message;
  EXPECT_EQ(error_of([&] { PackFile p(other.string()); }, &message), Errc::format);
  EXPECT_NE(message.find("not a .sibyl pack"), std::string::npos) << message;
  EXPECT_EQ(error_of([&] { PackFile p((dir.path() / "missing").string()); }), Errc::io);
}

// ---- the writer ----

TEST(PackWriter, RejectsBadTensors) {
  TempDir dir;
  const std::string path = (dir.path() / "w.sibyl").string();
  PackWriter w(path, metadata_of("tiny-v3"));
  const std::vector<uint8_t> buf(4096);
  auto error = [&](const std::string& name, DType dtype, std::vector<int64_t> shape, size_t n, const void* data,
                   const std::string& needle) {
    std::string message;
    EXPECT_EQ(error_of([&] { w.add_tensor(name, dtype, shape, data, n); }, &message), Errc::invalid_argument) << needle;
    EXPECT_NE(message.find(needle), std::string::npos) << message;
  };
  w.add_tensor("ok", DType::f32, {2, 3}, buf.data(), 24);
  error("ok", DType::f32, {2, 3}, 24, buf.data(), "already added");
  error("", DType::f32, {2, 3}, 24, buf.data(), "needs a name");
  error("size", DType::f32, {2, 3}, 20, buf.data(), "its shape needs 24");
  error("size", DType::q8_0, {2, 64}, 128, buf.data(), "its shape needs 136");
  error("rank0", DType::f32, {}, 0, buf.data(), "rank 0");
  error("rank5", DType::f32, {1, 1, 1, 1, 1}, 4, buf.data(), "rank 5");
  error("dim0", DType::f32, {0, 3}, 0, buf.data(), "dimension of 0");
  error("neg", DType::f32, {-1, 3}, 12, buf.data(), "dimension of -1");
  error("huge", DType::f32, {int64_t(1) << 41}, 4, buf.data(), "[1, 2^40]");
  error("overflow", DType::f32, {int64_t(1) << 40, int64_t(1) << 40}, 4, buf.data(), "2^64");
  error("blocks", DType::q4_k, {2, 100}, 0, buf.data(), "256-element blocks of Q4_K");
  error("null", DType::f32, {2}, 8, nullptr, "null");
  error("bad_dtype", static_cast<DType>(99), {2}, 8, buf.data(), "unknown dtype");
  // The writer is still usable after rejected calls.
  w.add_tensor("ok2", DType::q5_0, {1, 32}, buf.data(), 22);
  w.finish();
  PackFile pack(path);
  EXPECT_EQ(pack.tensors().size(), 2u);
  std::string message;
  EXPECT_EQ(error_of([&] { w.add_tensor("late", DType::f32, {1}, buf.data(), 4); }, &message), Errc::invalid_argument);
  EXPECT_NE(message.find("finished"), std::string::npos) << message;
  EXPECT_EQ(error_of([&] { w.finish(); }), Errc::invalid_argument);
}

TEST(PackWriter, RejectsBadMetadata) {
  TempDir dir;
  const std::string path = (dir.path() / "w.sibyl").string();
  PackMetadata m = metadata_of("tiny-v3");
  m.config.vocab_size = 0;
  std::string message;
  EXPECT_EQ(error_of([&] { PackWriter w(path, m); }, &message), Errc::invalid_argument);
  EXPECT_NE(message.find("vocab_size"), std::string::npos) << message;
  m = metadata_of("tiny-v3");
  m.generation.top_p = 1.5f;
  EXPECT_EQ(error_of([&] { PackWriter w(path, m); }, &message), Errc::invalid_argument);
  EXPECT_NE(message.find("top_p"), std::string::npos) << message;
  m = metadata_of("tiny-v3");
  m.generation.max_new_tokens = 0;
  EXPECT_EQ(error_of([&] { PackWriter w(path, m); }), Errc::invalid_argument);
  m = metadata_of("tiny-v3");
  m.generation.temperature = -1.0f;
  EXPECT_EQ(error_of([&] { PackWriter w(path, m); }), Errc::invalid_argument);
  EXPECT_FALSE(fs::exists(path));
  EXPECT_FALSE(fs::exists(path + ".partial"));
}

TEST(PackWriter, UnwritablePathNamesIt) {
  TempDir dir;
  const std::string path = (dir.path() / "no-such-dir" / "w.sibyl").string();
  std::string message;
  EXPECT_EQ(error_of([&] { PackWriter w(path, metadata_of("tiny-v3")); }, &message), Errc::io);
  EXPECT_NE(message.find(path + ".partial"), std::string::npos) << message;
  EXPECT_NE(message.find("No such file"), std::string::npos) << message;
}

// A full disk, simulated with a file size limit (EFBIG instead of ENOSPC).
TEST(PackWriter, WriteErrorIsIoAndLeavesNoFile) {
  TempDir dir;
  const std::string path = (dir.path() / "w.sibyl").string();
  const Tensor big = random_tensor("big", DType::f32, {4, 1 << 18}, 1);  // 4 MiB
  struct rlimit old {};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old), 0);
  auto* old_handler = std::signal(SIGXFSZ, SIG_IGN);
  struct rlimit limited = old;
  limited.rlim_cur = 1 << 20;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &limited), 0);
  std::string message;
  const Errc e = error_of(
      [&] {
        PackWriter w(path, metadata_of("tiny-v3"));
        w.add_tensor(big.name, big.dtype, big.shape, big.bytes.data(), big.bytes.size());
        w.finish();
      },
      &message);
  ::setrlimit(RLIMIT_FSIZE, &old);
  std::signal(SIGXFSZ, old_handler);
  EXPECT_EQ(e, Errc::io);
  EXPECT_NE(message.find(path + ".partial"), std::string::npos) << message;
  EXPECT_FALSE(fs::exists(path + ".partial"));
  EXPECT_FALSE(fs::exists(path));
}

TEST(PackWriter, UnfinishedWriterLeavesNoFile) {
  TempDir dir;
  const std::string path = (dir.path() / "w.sibyl").string();
  const std::vector<uint8_t> buf(64);
  {
    PackWriter w(path, metadata_of("tiny-v3"));
    w.add_tensor("t", DType::f32, {4}, buf.data(), 16);
    EXPECT_TRUE(fs::exists(path + ".partial"));
    EXPECT_FALSE(fs::exists(path));
    EXPECT_EQ(w.bytes_written(), 4096u + 16u);
  }
  EXPECT_FALSE(fs::exists(path + ".partial"));
  EXPECT_FALSE(fs::exists(path));
  {  // an exception in the middle of writing
    try {
      PackWriter w(path, metadata_of("tiny-v3"));
      w.add_tensor("t", DType::f32, {4}, buf.data(), 16);
      w.add_tensor("t", DType::f32, {4}, buf.data(), 16);
      w.finish();
    } catch (const Failure&) {
    }
  }
  EXPECT_FALSE(fs::exists(path + ".partial"));
  EXPECT_FALSE(fs::exists(path));
}

TEST(PackWriter, ReplacesAnExistingFileOnlyOnFinish) {
  TempDir dir;
  const std::string path = (dir.path() / "w.sibyl").string();
  sibyl_test::write_file(path, "old contents");
  {
    PackWriter w(path, metadata_of("tiny-v3"));
    EXPECT_EQ(sibyl_test::read_file(path), "old contents");
  }
  EXPECT_EQ(sibyl_test::read_file(path), "old contents");
  write_pack(path, metadata_of("tiny-v3"), every_dtype());
  EXPECT_TRUE(is_pack_file(path));
  PackFile(path).verify_checksum();
}

TEST(PackWriter, LayoutFollowsTheSpec) {
  TempDir dir;
  std::vector<Tensor> tensors = {random_tensor("small", DType::f32, {3}, 1),
                                 random_tensor("large", DType::f16, {1, 1 << 19}, 2),  // exactly 1 MiB
                                 random_tensor("tail", DType::i64, {1}, 3)};
  const std::string bytes = small_pack_bytes(dir, tensors);
  EXPECT_EQ(bytes.substr(0, 8), "SIBYLPAK");
  EXPECT_EQ(u64_at(bytes, 8) & 0xffffffffu, 1u);
  EXPECT_EQ(u64_at(bytes, 8) >> 32, 64u);
  const uint64_t data_offset = u64_at(bytes, 32), data_size = u64_at(bytes, 40);
  EXPECT_EQ(data_offset, 4096u);
  EXPECT_EQ(manifest_offset(bytes) % 8, 0u);
  EXPECT_EQ(manifest_offset(bytes), data_offset + data_size);
  EXPECT_EQ(manifest_offset(bytes) + manifest_size(bytes), bytes.size());
  EXPECT_EQ(bytes.substr(manifest_offset(bytes) + 4, 4), "SBYM");  // the file identifier
  EXPECT_EQ(u64_at(bytes, 48), pack_checksum(bytes.data() + data_offset, data_size));
  EXPECT_EQ(u64_at(bytes, 56), pack_checksum(bytes.data() + manifest_offset(bytes), manifest_size(bytes)));
  const PackContents c = parse(bytes);
  EXPECT_EQ(c.data_offset, 4096u);
  // small at 0, large at the next page, tail 64 bytes after large
  std::vector<uint8_t> copy(bytes.begin(), bytes.end());
  const PackContents v = parse_pack(copy.data(), copy.size(), "x");
  auto offset_of = [&](const char* name) { return v.tensors.at(name).data - copy.data() - 4096; };
  EXPECT_EQ(offset_of("small"), 0);
  EXPECT_EQ(offset_of("large"), 4096);
  EXPECT_EQ(offset_of("tail"), 4096 + (1 << 20));
  // Padding is zeros.
  for (size_t i = 4096 + 12; i < 4096 + 4096; ++i) ASSERT_EQ(bytes[i], '\0') << i;
  for (size_t i = 64; i < 4096; ++i) ASSERT_EQ(bytes[i], '\0') << i;
}

}  // namespace
}  // namespace sibyl::engine::test
