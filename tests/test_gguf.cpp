// The GGUF reader: llama.cpp's DeepSeek fixtures parse with the metadata, tensor names, types
// and dims their source configs imply (the bf16 file byte-for-byte against its checkpoint),
// and malformed bytes — truncations, bad counts, lengths, offsets, names — are Errc::format.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cctype>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include "engine/core/failure.h"
#include "fixture_util.h"
#include "engine/formats/gguf.h"
#include "engine/formats/safetensors.h"

namespace sibyl::engine::test {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string gguf_dir() { return data_dir() + "/gguf"; }
std::string reasoner_dir() { return data_dir() + "/../../models/tiny-reasoner"; }

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// ---- an in-memory GGUF writer for the corruption cases ----

template <class T>
std::string le(T v) {
  std::string s(sizeof(T), '\0');
  std::memcpy(s.data(), &v, sizeof(T));  // x86: little-endian already
  return s;
}
std::string gstr(std::string_view s) { return le<uint64_t>(s.size()) + std::string(s); }

// GGUF value type ids.
enum : uint32_t { kU8 = 0, kI8 = 1, kU32 = 4, kI32 = 5, kF32 = 6, kBool = 7, kString = 8, kArray = 9 };
enum : uint32_t { kU64 = 10, kI64 = 11, kF64 = 12 };

struct Builder {
  uint32_t version = 3;
  std::vector<std::string> kvs;
  std::vector<std::string> infos;
  std::string data;
  size_t alignment = 32;
  std::optional<uint64_t> kv_count, tensor_count;  // overrides

  Builder& kv(std::string_view key, uint32_t type, const std::string& payload) {
    kvs.push_back(gstr(key) + le(type) + payload);
    return *this;
  }
  Builder& tensor(std::string_view name, std::vector<int64_t> dims, uint32_t type, uint64_t offset) {
    std::string s = gstr(name) + le<uint32_t>(static_cast<uint32_t>(dims.size()));
    for (int64_t d : dims) s += le(d);
    infos.push_back(s + le(type) + le(offset));
    return *this;
  }
  std::string header() const {
    std::string s = "GGUF" + le(version) + le<uint64_t>(tensor_count.value_or(infos.size())) +
                    le<uint64_t>(kv_count.value_or(kvs.size()));
    for (const auto& k : kvs) s += k;
    for (const auto& t : infos) s += t;
    return s;
  }
  std::string build() const {
    std::string s = header();
    s.resize((s.size() + alignment - 1) / alignment * alignment, '\0');
    return s + data;
  }
};

// Two tensors (F32 [4, 2] and Q8_0 [32, 1]) and one value of most kinds.
Builder small_builder() {
  Builder b;
  b.kv("general.architecture", kString, gstr("deepseek2"))
      .kv("deepseek2.block_count", kU32, le<uint32_t>(3))
      .kv("neg", kI8, le<int8_t>(-5))
      .kv("big", kU64, le<uint64_t>(~0ull))
      .kv("scale", kF32, le(2.5f))
      .kv("theta", kF64, le(10000.0))
      .kv("flag", kBool, le<uint8_t>(1))
      .kv("tokens", kArray, le<uint32_t>(kString) + le<uint64_t>(3) + gstr("a") + gstr("") + gstr("ab"))
      .kv("types", kArray, le<uint32_t>(kI32) + le<uint64_t>(3) + le<int32_t>(1) + le<int32_t>(-2) + le<int32_t>(3))
      .kv("nested", kArray,
          le<uint32_t>(kArray) + le<uint64_t>(2) + le<uint32_t>(kU8) + le<uint64_t>(2) + "\x07\x09" +
              le<uint32_t>(kString) + le<uint64_t>(1) + gstr("x"));
  b.tensor("a.weight", {4, 2}, 0, 0).tensor("b.weight", {32, 1}, 8, 32);
  b.data = std::string(32, '\x11') + std::string(34, '\x22');
  return b;
}

// A parse of a heap copy of exactly `n` bytes (so that ASan sees any overread), kept
// together with the copy its views point into.
struct Parsed {
  std::vector<uint8_t> bytes;
  GgufContents c;
};

Parsed parse_bytes(const std::string& bytes, size_t n = std::string::npos) {
  n = std::min(n, bytes.size());
  Parsed p;
  p.bytes.assign(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(n));
  p.c = parse_gguf(p.bytes.data(), p.bytes.size(), "mem.gguf");
  return p;
}

// The code and message of parsing `bytes`; the message must name the source.
Errc parse_error(const std::string& bytes, std::string* message = nullptr) {
  std::string m;
  Errc e = error_of([&] { parse_bytes(bytes); }, &m);
  if (e != Errc::internal) {
    EXPECT_NE(m.find("mem.gguf"), std::string::npos) << m;
  }
  if (message) *message = m;
  return e;
}

#define EXPECT_FORMAT(bytes, fragment)                                       \
  do {                                                                       \
    std::string msg_;                                                        \
    EXPECT_EQ(parse_error(bytes, &msg_), Errc::format) << msg_;              \
    EXPECT_NE(msg_.find(fragment), std::string::npos) << msg_;               \
  } while (0)

// ---- types ----

TEST(GgufTypes, IdsAndBlockSizes) {
  struct Case {
    GgufType type;
    uint32_t id, elems, bytes;
  } cases[] = {{GgufType::F32, 0, 1, 4},      {GgufType::F16, 1, 1, 2},       {GgufType::Q4_0, 2, 32, 18},
               {GgufType::Q4_1, 3, 32, 20},   {GgufType::Q5_0, 6, 32, 22},    {GgufType::Q5_1, 7, 32, 24},
               {GgufType::Q8_0, 8, 32, 34},   {GgufType::Q8_1, 9, 32, 36},    {GgufType::Q2_K, 10, 256, 84},
               {GgufType::Q3_K, 11, 256, 110}, {GgufType::Q4_K, 12, 256, 144}, {GgufType::Q5_K, 13, 256, 176},
               {GgufType::Q6_K, 14, 256, 210}, {GgufType::Q8_K, 15, 256, 292}, {GgufType::BF16, 30, 1, 2}};
  for (const auto& c : cases) {
    EXPECT_EQ(static_cast<uint32_t>(c.type), c.id);
    EXPECT_EQ(traits(c.type).block_elems, c.elems) << traits(c.type).name;
    EXPECT_EQ(traits(c.type).block_bytes, c.bytes) << traits(c.type).name;
  }
  EXPECT_STREQ(traits(GgufType::Q6_K).name, "Q6_K");
  for (uint32_t retired : {4u, 5u, 31u, 36u, 40u, 1000u}) {
    std::string m;
    EXPECT_EQ(error_of([&] { traits(static_cast<GgufType>(retired)); }, &m), Errc::unsupported);
    EXPECT_NE(m.find(std::to_string(retired)), std::string::npos) << m;
    EXPECT_EQ(find_traits(static_cast<GgufType>(retired)), nullptr);
  }
}

// ---- a small file built here ----

TEST(GgufParse, SmallBufferValues) {
  std::string bytes = small_builder().build();
  Parsed p = parse_bytes(bytes);
  const GgufContents& c = p.c;
  EXPECT_EQ(c.version, 3u);
  EXPECT_EQ(c.alignment, 32u);
  EXPECT_EQ(c.data_offset % 32, 0u);
  EXPECT_EQ(c.find("general.architecture")->as_string(), "deepseek2");
  EXPECT_EQ(c.find("deepseek2.block_count")->as_int(), 3);
  EXPECT_EQ(c.find("neg")->as_int(), -5);
  EXPECT_EQ(c.find("big")->as_int(), std::nullopt);  // above INT64_MAX
  EXPECT_EQ(c.find("big")->as_float(), 18446744073709551615.0);
  EXPECT_EQ(c.find("scale")->as_float(), 2.5);
  EXPECT_EQ(c.find("scale")->as_int(), std::nullopt);
  EXPECT_EQ(c.find("theta")->as_float(), 10000.0);
  EXPECT_EQ(c.find("flag")->as_bool(), true);
  EXPECT_EQ(c.find("flag")->as_int(), std::nullopt);
  EXPECT_EQ(c.find("deepseek2.block_count")->as_string(), std::nullopt);
  EXPECT_EQ(c.find("missing"), nullptr);

  const GgufValue& tokens = *c.find("tokens");
  ASSERT_TRUE(tokens.is_array());
  EXPECT_EQ(tokens.element_type(), GgufValueType::string);
  EXPECT_EQ(tokens.strings(), (std::vector<std::string_view>{"a", "", "ab"}));
  EXPECT_EQ(tokens.ints(), std::nullopt);

  const GgufValue& types = *c.find("types");
  EXPECT_EQ(types.size(), 3u);
  EXPECT_EQ(types.int_at(1), -2);
  EXPECT_EQ(types.int_at(3), std::nullopt);
  EXPECT_EQ(types.ints(), (std::vector<int64_t>{1, -2, 3}));
  EXPECT_EQ(types.floats(), (std::vector<double>{1, -2, 3}));

  const GgufValue& nested = *c.find("nested");
  ASSERT_EQ(nested.arrays().size(), 2u);
  EXPECT_EQ(nested.arrays()[0].ints(), (std::vector<int64_t>{7, 9}));
  EXPECT_EQ(nested.arrays()[1].strings(), (std::vector<std::string_view>{"x"}));

  ASSERT_EQ(c.tensors.size(), 2u);
  const GgufTensorInfo* a = c.tensor("a.weight");
  const GgufTensorInfo* b = c.tensor("b.weight");
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->dims_string(), "[4, 2]");
  EXPECT_EQ(a->nbytes, 32u);
  EXPECT_EQ(b->type, GgufType::Q8_0);
  EXPECT_EQ(b->nbytes, 34u);
  EXPECT_EQ(b->offset, 32u);
  EXPECT_EQ(c.tensor("c.weight"), nullptr);
}

TEST(GgufParse, AlignmentKeyAndVersion2) {
  Builder b = small_builder();
  b.version = 2;
  b.kv("general.alignment", kU32, le<uint32_t>(64));
  b.alignment = 64;
  b.infos.clear();
  b.tensor("a.weight", {4, 2}, 0, 0).tensor("b.weight", {32, 1}, 8, 64);
  b.data = std::string(64, '\0') + std::string(34, '\0');
  Parsed p = parse_bytes(b.build());
  const GgufContents& c = p.c;
  EXPECT_EQ(c.version, 2u);
  EXPECT_EQ(c.alignment, 64u);
  EXPECT_EQ(c.data_offset % 64, 0u);
  EXPECT_EQ(c.tensor("b.weight")->offset, 64u);
}

TEST(GgufParse, MetadataOnlyFile) {
  Builder b;
  b.kv("general.architecture", kString, gstr("deepseek2"));
  Parsed p = parse_bytes(b.header());  // no padding, no data section
  const GgufContents& c = p.c;
  EXPECT_TRUE(c.tensors.empty());
  EXPECT_EQ(c.metadata.size(), 1u);
}

// The fuzzer's seed (tests/fuzz/seeds) must stay a valid file.
TEST(GgufParse, FuzzSeedIsValid) {
  Parsed p = parse_bytes(slurp(data_dir() + "/../fuzz/seeds/small.gguf"));
  const GgufContents& c = p.c;
  EXPECT_EQ(c.tensors.size(), 2u);
  EXPECT_EQ(c.find("tokenizer.ggml.tokens")->strings().size(), 3u);
}

// ---- corruption ----

TEST(GgufCorrupt, HeaderErrors) {
  std::string good = small_builder().build();
  EXPECT_FORMAT(std::string("GGU"), "magic");
  EXPECT_FORMAT("GGUX" + good.substr(4), "magic");
  for (uint32_t v : {0u, 1u, 4u, 0xffffffffu}) {
    std::string bad = good;
    std::memcpy(bad.data() + 4, &v, 4);
    EXPECT_FORMAT(bad, "version " + std::to_string(v));
  }
  std::string big_endian = good;
  std::memcpy(big_endian.data() + 4, "\0\0\0\3", 4);
  EXPECT_EQ(parse_error(big_endian), Errc::unsupported);

  Builder b = small_builder();
  b.kv_count = 1ull << 60;
  EXPECT_FORMAT(b.build(), "metadata entries");
  b.kv_count = ~0ull;
  EXPECT_FORMAT(b.build(), "metadata entries");
  b = small_builder();
  b.tensor_count = 1ull << 40;
  EXPECT_FORMAT(b.build(), "tensors");
  b.tensor_count = 3;  // one more than the infos: the data section is read as a tensor info
  EXPECT_EQ(parse_error(b.build()), Errc::format);
}

TEST(GgufCorrupt, MetadataErrors) {
  auto with = [](std::string_view key, uint32_t type, const std::string& payload) {
    Builder b = small_builder();
    b.kv(key, type, payload);
    return b.build();
  };
  // A key whose length runs past the end.
  {
    Builder b = small_builder();
    b.kvs.push_back(le<uint64_t>(1ull << 40) + "k");
    EXPECT_FORMAT(b.build(), "metadata key");
  }
  EXPECT_FORMAT(with("s", kString, le<uint64_t>(1ull << 62) + "abc"), "\"s\"");
  EXPECT_FORMAT(with("s", kString, le<uint64_t>(~0ull)), "\"s\"");
  EXPECT_FORMAT(with("t", 13, ""), "not a GGUF value type");
  EXPECT_FORMAT(with("b", kBool, "\x02"), "bool");
  EXPECT_FORMAT(with("general.architecture", kString, gstr("x")), "duplicate metadata key");
  // Arrays: counts past the end, count × size overflowing, bad element types, strings past the end.
  EXPECT_FORMAT(with("a", kArray, le<uint32_t>(kU8) + le<uint64_t>(1ull << 50)), "cannot fit");
  EXPECT_FORMAT(with("a", kArray, le<uint32_t>(kU64) + le<uint64_t>(1ull << 61) + std::string(64, '\0')), "cannot fit");
  EXPECT_FORMAT(with("a", kArray, le<uint32_t>(kU64) + le<uint64_t>(~0ull / 4)), "cannot fit");
  EXPECT_FORMAT(with("a", kArray, le<uint32_t>(kString) + le<uint64_t>(1ull << 40)), "cannot fit");
  EXPECT_FORMAT(with("a", kArray, le<uint32_t>(kString) + le<uint64_t>(2) + gstr("x") + le<uint64_t>(1ull << 40)),
                "\"a\"[1]");
  EXPECT_FORMAT(with("a", kArray, le<uint32_t>(kArray) + le<uint64_t>(1ull << 40)), "cannot fit");
  EXPECT_FORMAT(with("a", kArray, le<uint32_t>(77) + le<uint64_t>(0)), "not a GGUF value type");
  EXPECT_FORMAT(with("a", kArray, le<uint32_t>(kBool) + le<uint64_t>(2) + "\x01\x05"), "bool");
  // Nesting: 8 levels load, 9 do not.
  auto nested = [](int depth) {
    std::string s;
    for (int i = 0; i < depth; ++i) s += le<uint32_t>(kArray) + le<uint64_t>(1);
    return s + le<uint32_t>(kU8) + le<uint64_t>(1) + "\x2a";
  };
  EXPECT_NO_THROW(parse_bytes(with("n", kArray, nested(7))));
  EXPECT_FORMAT(with("n", kArray, nested(8)), "nested");
  EXPECT_FORMAT(with("n", kArray, nested(100000)), "nested");
  // Alignment.
  for (uint32_t a : {0u, 3u, 48u}) EXPECT_FORMAT(with("general.alignment", kU32, le(a)), "general.alignment");
  EXPECT_FORMAT(with("general.alignment", kI32, le<int32_t>(-32)), "general.alignment");
  EXPECT_FORMAT(with("general.alignment", kString, gstr("32")), "general.alignment");
}

TEST(GgufCorrupt, TensorInfoErrors) {
  auto with_tensor = [](std::string_view name, std::vector<int64_t> dims, uint32_t type, uint64_t offset) {
    Builder b = small_builder();
    b.tensor(name, std::move(dims), type, offset);
    b.data += std::string(64, '\0');
    return b.build();
  };
  EXPECT_NO_THROW(parse_bytes(with_tensor("c", {4}, 0, 96)));
  EXPECT_FORMAT(with_tensor("c", {}, 0, 96), "0 dimensions");
  EXPECT_FORMAT(with_tensor("c", {1, 1, 1, 1, 1}, 0, 96), "5 dimensions");
  EXPECT_FORMAT(with_tensor("c", {4, 0}, 0, 96), "not positive");
  EXPECT_FORMAT(with_tensor("c", {4, -3}, 0, 96), "not positive");
  EXPECT_FORMAT(with_tensor("c", {1ll << 40, 1ll << 40}, 0, 96), "overflow");
  EXPECT_FORMAT(with_tensor("c", {1ll << 31, 1ll << 31}, 0, 96), "impossibly large");  // 2^62 F32 = 2^64 bytes
  EXPECT_FORMAT(with_tensor("c", {1ll << 31, 1ll << 31}, 0, 0), "impossibly large");
  EXPECT_FORMAT(with_tensor("c", {33, 1}, 8, 96), "multiple of the block size 32");
  EXPECT_FORMAT(with_tensor("c", {128}, 12, 96), "multiple of the block size 256");
  EXPECT_FORMAT(with_tensor("a.weight", {4}, 0, 96), "duplicate tensor name");
  EXPECT_FORMAT(with_tensor("c", {4}, 0, 112), "not a multiple of the alignment");
  EXPECT_FORMAT(with_tensor("c", {4}, 0, 1ull << 40), "passes the end");
  EXPECT_FORMAT(with_tensor("c", {4}, 0, ~0ull - 31), "passes the end");
  EXPECT_FORMAT(with_tensor("c", {64}, 0, 96), "passes the end");  // 256 bytes from 96 of 130
  EXPECT_FORMAT(with_tensor("c", {4}, 0, 0), "overlap");
  EXPECT_FORMAT(with_tensor("c", {4}, 0, 64), "overlap");  // inside b.weight's 34 bytes at 32
  // Unknown types are unsupported, naming the id and the tensor.
  for (uint32_t id : {4u, 31u, 1000u}) {
    std::string m;
    EXPECT_EQ(parse_error(with_tensor("mystery.weight", {32}, id, 96), &m), Errc::unsupported);
    EXPECT_NE(m.find("type id " + std::to_string(id)), std::string::npos) << m;
    EXPECT_NE(m.find("mystery.weight"), std::string::npos) << m;
  }
  // A tensor name past the end; tensors whose data section is missing.
  Builder b = small_builder();
  b.infos.push_back(le<uint64_t>(1ull << 33) + "c");
  b.tensor_count = 3;
  EXPECT_FORMAT(b.build(), "tensor name");
  EXPECT_FORMAT(small_builder().header(), "the end");
}

// Every prefix of a valid file is an error, never a crash or an overread.
TEST(GgufCorrupt, EveryTruncation) {
  std::string small = small_builder().build();
  for (size_t n = 0; n < small.size(); ++n)
    EXPECT_EQ(error_of([&] { parse_bytes(small, n); }), Errc::format) << "small, " << n << " bytes";
  std::string fixture = slurp(gguf_dir() + "/tiny-v3-q8_0.gguf");
  ASSERT_GT(fixture.size(), 4096u);
  for (size_t n = 0; n <= 4096; ++n)
    EXPECT_EQ(error_of([&] { parse_bytes(fixture, n); }), Errc::format) << "fixture, " << n << " bytes";
  std::string m;
  EXPECT_EQ(error_of([&] { parse_bytes(fixture, fixture.size() - 1); }, &m), Errc::format);
  EXPECT_NE(m.find("passes the end"), std::string::npos) << m;
}

// Corruptions of a real fixture's header, found by walking it.
TEST(GgufCorrupt, FixtureEdits) {
  const std::string fixture = slurp(gguf_dir() + "/tiny-v3-q4_k_m.gguf");
  Parsed p = parse_bytes(fixture);
  const GgufContents& c = p.c;
  const size_t kv_count_at = 16;
  auto edited = [&](size_t at, const std::string& bytes) {
    std::string s = fixture;
    s.replace(at, bytes.size(), bytes);
    return s;
  };
  EXPECT_FORMAT(edited(0, "ggUF"), "magic");
  EXPECT_FORMAT(edited(4, le<uint32_t>(1)), "version 1");
  EXPECT_FORMAT(edited(kv_count_at, le<uint64_t>(1ull << 59)), "metadata entries");
  // The first key's length ("general.architecture" at byte 24).
  EXPECT_FORMAT(edited(24, le<uint64_t>(fixture.size())), "metadata key");
  // Tensor infos: find the first tensor's name in the header and edit its fields.
  const std::string first = c.tensors[0].name;  // output.weight, 2 dims, Q6_K, offset 0
  size_t name_at = fixture.find(gstr(first));
  ASSERT_NE(name_at, std::string::npos);
  size_t dims_at = name_at + 8 + first.size() + 4, type_at = dims_at + 16, offset_at = type_at + 4;
  EXPECT_EQ(fixture.substr(type_at, 4), le<uint32_t>(14));
  EXPECT_FORMAT(edited(offset_at, le<uint64_t>(fixture.size())), "passes the end");
  EXPECT_FORMAT(edited(offset_at, le<uint64_t>(8)), "not a multiple of the alignment");
  EXPECT_FORMAT(edited(dims_at, le<int64_t>(100)), "multiple of the block size");
  EXPECT_EQ(fixture.substr(dims_at - 4, 4), le<uint32_t>(2));
  EXPECT_EQ(parse_error(edited(type_at, le<uint32_t>(5))), Errc::unsupported);
  // A duplicated name: rename a tensor to an earlier one of the same length.
  bool renamed = false;
  for (size_t i = 0; i < c.tensors.size() && !renamed; ++i)
    for (size_t j = i + 1; j < c.tensors.size() && !renamed; ++j) {
      if (c.tensors[i].name.size() != c.tensors[j].name.size()) continue;
      EXPECT_FORMAT(edited(fixture.find(gstr(c.tensors[j].name)), gstr(c.tensors[i].name)), "duplicate tensor name");
      renamed = true;
    }
  EXPECT_TRUE(renamed);
}

TEST(GgufCorrupt, FileErrorsNameThePath) {
  fs::path dir = fs::temp_directory_path() / ("sibyl_gguf_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::string path = (dir / "bad.gguf").string();
  std::ofstream(path, std::ios::binary) << "GGUF\x01\0\0\0 and then some";
  std::string m;
  EXPECT_EQ(error_of([&] { GgufFile f(path); }, &m), Errc::format);
  EXPECT_NE(m.find(path), std::string::npos) << m;
  EXPECT_EQ(error_of([&] { GgufFile f((dir / "absent.gguf").string()); }), Errc::io);
  fs::remove_all(dir);
}

// ---- the llama.cpp fixtures ----

json read_json(const std::string& path) { return json::parse(slurp(path)); }

struct Fixture {
  const char* file;
  bool reasoner;  // else tiny-v3
};

void PrintTo(const Fixture& f, std::ostream* os) { *os << f.file; }

class GgufFixture : public ::testing::TestWithParam<Fixture> {
 protected:
  std::string path() const { return gguf_dir() + "/" + GetParam().file; }
  json config() const {
    return read_json(GetParam().reasoner ? reasoner_dir() + "/config.json" : data_dir() + "/tiny-v3/config.json");
  }
};

// The metadata agrees with the config.json the file was converted from.
TEST_P(GgufFixture, MetadataMatchesConfig) {
  GgufFile f(path());
  json cfg = config();
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.alignment(), 32u);
  EXPECT_EQ(f.get_string("general.architecture"), "deepseek2");
  auto i = [&](const std::string& key) {
    auto v = f.get_int("deepseek2." + key);
    EXPECT_TRUE(v) << key;
    return v.value_or(-1);
  };
  auto x = [&](const std::string& key) {
    auto v = f.get_float("deepseek2." + key);
    EXPECT_TRUE(v) << key;
    return v.value_or(-1);
  };
  auto f32 = [](const json& j) { return static_cast<double>(j.get<float>()); };  // GGUF stores f32
  const int64_t nope = cfg["qk_nope_head_dim"], rope = cfg["qk_rope_head_dim"], kv_lora = cfg["kv_lora_rank"];
  EXPECT_EQ(i("block_count"), cfg["num_hidden_layers"].get<int64_t>());  // MTP layers are not converted
  EXPECT_EQ(i("leading_dense_block_count"), cfg["first_k_dense_replace"].get<int64_t>());
  EXPECT_EQ(i("context_length"), cfg["max_position_embeddings"].get<int64_t>());
  EXPECT_EQ(i("embedding_length"), cfg["hidden_size"].get<int64_t>());
  EXPECT_EQ(i("feed_forward_length"), cfg["intermediate_size"].get<int64_t>());
  EXPECT_EQ(i("expert_feed_forward_length"), cfg["moe_intermediate_size"].get<int64_t>());
  EXPECT_EQ(i("vocab_size"), cfg["vocab_size"].get<int64_t>());
  EXPECT_EQ(i("expert_count"), cfg["n_routed_experts"].get<int64_t>());
  EXPECT_EQ(i("expert_used_count"), cfg["num_experts_per_tok"].get<int64_t>());
  EXPECT_EQ(i("expert_shared_count"), cfg["n_shared_experts"].get<int64_t>());
  EXPECT_EQ(i("expert_group_count"), cfg["n_group"].get<int64_t>());
  EXPECT_EQ(i("expert_group_used_count"), cfg["topk_group"].get<int64_t>());
  EXPECT_EQ(i("expert_gating_func"), 2);  // llama.cpp's id for sigmoid
  EXPECT_EQ(x("expert_weights_scale"), f32(cfg["routed_scaling_factor"]));
  EXPECT_EQ(f.get_bool("deepseek2.expert_weights_norm"), cfg["norm_topk_prob"].get<bool>());
  EXPECT_EQ(i("attention.head_count"), cfg["num_attention_heads"].get<int64_t>());
  // MLA is stored as MQA over the latent: one KV head of kv_lora + rope (key), kv_lora (value).
  EXPECT_EQ(i("attention.head_count_kv"), 1);
  EXPECT_EQ(i("attention.key_length"), kv_lora + rope);
  EXPECT_EQ(i("attention.value_length"), kv_lora);
  EXPECT_EQ(i("attention.key_length_mla"), nope + rope);
  EXPECT_EQ(i("attention.value_length_mla"), cfg["v_head_dim"].get<int64_t>());
  EXPECT_EQ(i("attention.kv_lora_rank"), kv_lora);
  EXPECT_EQ(i("attention.q_lora_rank"), cfg["q_lora_rank"].get<int64_t>());
  EXPECT_EQ(x("attention.layer_norm_rms_epsilon"), f32(cfg["rms_norm_eps"]));
  EXPECT_EQ(i("rope.dimension_count"), rope);
  const json& rs = cfg.contains("rope_scaling") ? cfg["rope_scaling"] : cfg["rope_parameters"];
  const json& theta = cfg.contains("rope_theta") ? cfg["rope_theta"] : rs["rope_theta"];
  EXPECT_EQ(x("rope.freq_base"), f32(theta));
  EXPECT_EQ(f.get_string("deepseek2.rope.scaling.type"), "yarn");
  EXPECT_EQ(x("rope.scaling.factor"), f32(rs["factor"]));
  EXPECT_EQ(i("rope.scaling.original_context_length"), rs["original_max_position_embeddings"].get<int64_t>());
  EXPECT_EQ(x("rope.scaling.yarn_beta_fast"), f32(rs["beta_fast"]));
  EXPECT_EQ(x("rope.scaling.yarn_beta_slow"), f32(rs["beta_slow"]));
  // llama.cpp folds mscale_all_dim into 0.1 · mscale_all_dim.
  EXPECT_FLOAT_EQ(static_cast<float>(x("rope.scaling.yarn_log_multiplier")), 0.1f * rs["mscale_all_dim"].get<float>());

  // Every fixture carries a GPT-2-style tokenizer padded to the embedding's rows.
  EXPECT_EQ(f.get_string("tokenizer.ggml.model"), "gpt2");
  EXPECT_EQ(f.get_string("tokenizer.ggml.pre"), "deepseek-v3");
  ASSERT_NE(f.get_strings("tokenizer.ggml.tokens"), nullptr);
  EXPECT_EQ(static_cast<int64_t>(f.get_strings("tokenizer.ggml.tokens")->size()), cfg["vocab_size"].get<int64_t>());
  EXPECT_EQ(f.get_ints("tokenizer.ggml.token_type")->size(), f.get_strings("tokenizer.ggml.tokens")->size());
  EXPECT_GT(f.get_strings("tokenizer.ggml.merges")->size(), 0u);
  EXPECT_EQ(f.get_int("tokenizer.ggml.bos_token_id"), cfg["bos_token_id"].get<int64_t>());
  EXPECT_EQ(f.get_int("tokenizer.ggml.eos_token_id"), cfg["eos_token_id"].get<int64_t>());
}

// What the loader should expect of a layer's tensor, in GGUF dims order (row length first).
struct Expected {
  std::vector<int64_t> dims;
  bool matrix;  // quantized in the quantized files (norms, biases and the router stay F32)
};

std::map<std::string, Expected> expected_tensors(const json& cfg) {
  const int64_t hidden = cfg["hidden_size"], vocab = cfg["vocab_size"], heads = cfg["num_attention_heads"];
  const int64_t nope = cfg["qk_nope_head_dim"], rope = cfg["qk_rope_head_dim"], v = cfg["v_head_dim"];
  const int64_t q_lora = cfg["q_lora_rank"], kv_lora = cfg["kv_lora_rank"], inter = cfg["intermediate_size"];
  const int64_t moe = cfg["moe_intermediate_size"], experts = cfg["n_routed_experts"];
  const int64_t shared = cfg["n_shared_experts"], dense = cfg["first_k_dense_replace"];
  std::map<std::string, Expected> e = {{"token_embd.weight", {{hidden, vocab}, true}},
                                       {"output.weight", {{hidden, vocab}, true}},
                                       {"output_norm.weight", {{hidden}, false}}};
  for (int64_t l = 0; l < cfg["num_hidden_layers"].get<int64_t>(); ++l) {
    auto add = [&](const std::string& n, std::vector<int64_t> dims, bool matrix) {
      e["blk." + std::to_string(l) + "." + n] = {std::move(dims), matrix};
    };
    add("attn_norm.weight", {hidden}, false);
    add("attn_q_a.weight", {hidden, q_lora}, true);
    add("attn_q_a_norm.weight", {q_lora}, false);
    add("attn_q_b.weight", {q_lora, heads * (nope + rope)}, true);
    add("attn_kv_a_mqa.weight", {hidden, kv_lora + rope}, true);
    add("attn_kv_a_norm.weight", {kv_lora}, false);
    add("attn_k_b.weight", {nope, kv_lora, heads}, true);  // kv_b_proj's key half, transposed per head
    add("attn_v_b.weight", {kv_lora, v, heads}, true);     // kv_b_proj's value half as is
    add("attn_output.weight", {heads * v, hidden}, true);
    add("ffn_norm.weight", {hidden}, false);
    if (l < dense) {
      add("ffn_gate.weight", {hidden, inter}, true);
      add("ffn_up.weight", {hidden, inter}, true);
      add("ffn_down.weight", {inter, hidden}, true);
    } else {
      add("ffn_gate_inp.weight", {hidden, experts}, false);
      add("exp_probs_b.bias", {experts}, false);
      add("ffn_gate_exps.weight", {hidden, moe, experts}, true);
      add("ffn_up_exps.weight", {hidden, moe, experts}, true);
      add("ffn_down_exps.weight", {moe, hidden, experts}, true);
      add("ffn_gate_shexp.weight", {hidden, moe * shared}, true);
      add("ffn_up_shexp.weight", {hidden, moe * shared}, true);
      add("ffn_down_shexp.weight", {moe * shared, hidden}, true);
    }
  }
  return e;
}

TEST_P(GgufFixture, TensorsAreTheExpectedSet) {
  GgufFile f(path());
  const std::string file = GetParam().file;
  auto expected = expected_tensors(config());
  EXPECT_EQ(f.tensors().size(), expected.size());
  const uint8_t* begin = f.tensors().front().data - f.tensors().front().offset;
  for (const auto& t : f.tensors()) {
    auto it = expected.find(t.name);
    ASSERT_NE(it, expected.end()) << "unexpected tensor " << t.name;
    EXPECT_EQ(t.dims, it->second.dims) << t.name;
    EXPECT_EQ(f.tensor(t.name), &t);
    const GgufTypeTraits tr = traits(t.type);
    EXPECT_EQ(t.nbytes, static_cast<size_t>(t.numel()) / tr.block_elems * tr.block_bytes) << t.name;
    EXPECT_EQ(t.data, begin + t.offset);
    EXPECT_EQ(f.data_offset() % 32, 0u);
    EXPECT_EQ(t.offset % 32, 0u);
    const int64_t row = t.dims[0];
    if (!it->second.matrix) {
      EXPECT_EQ(t.type, GgufType::F32) << t.name;
    } else if (file == "tiny-reasoner-bf16.gguf") {
      EXPECT_EQ(t.type, GgufType::BF16) << t.name;
    } else if (file == "tiny-v3-q8_0.gguf") {
      EXPECT_EQ(t.type, GgufType::Q8_0) << t.name;
    } else if (file == "tiny-v3-q6_k.gguf") {  // Q8_0 where a row is not a multiple of 256
      EXPECT_EQ(t.type, row % 256 == 0 ? GgufType::Q6_K : GgufType::Q8_0) << t.name;
    } else {  // Q4_K_M: a Q4_K / Q6_K mix; Q5_0 (or Q8_0 for Q6_K's place) on short rows
      if (row % 256 == 0)
        EXPECT_TRUE(t.type == GgufType::Q4_K || t.type == GgufType::Q6_K) << t.name << " " << traits(t.type).name;
      else
        EXPECT_TRUE(t.type == GgufType::Q5_0 || t.type == GgufType::Q8_0) << t.name << " " << traits(t.type).name;
    }
  }
  if (file == "tiny-v3-q4_k_m.gguf") {
    EXPECT_EQ(f.tensor("token_embd.weight")->type, GgufType::Q4_K);
    EXPECT_EQ(f.tensor("output.weight")->type, GgufType::Q6_K);
    EXPECT_EQ(f.tensor("blk.1.ffn_gate_exps.weight")->type, GgufType::Q4_K);
    EXPECT_EQ(f.tensor("blk.1.ffn_down_exps.weight")->type, GgufType::Q5_0);
    EXPECT_EQ(f.tensor("blk.0.attn_k_b.weight")->type, GgufType::Q5_0);
  }
  // The last tensor ends inside the file, and the F32 tensors hold finite numbers.
  for (const auto& t : f.tensors()) {
    if (t.type != GgufType::F32) continue;
    std::vector<float> v(t.nbytes / 4);
    std::memcpy(v.data(), t.data, t.nbytes);
    for (float x : v) ASSERT_TRUE(std::isfinite(x)) << t.name;
  }
}

INSTANTIATE_TEST_SUITE_P(Gguf, GgufFixture,
                         ::testing::Values(Fixture{"tiny-v3-q8_0.gguf", false}, Fixture{"tiny-v3-q4_k_m.gguf", false},
                                           Fixture{"tiny-v3-q6_k.gguf", false},
                                           Fixture{"tiny-reasoner-bf16.gguf", true}),
                         [](const auto& info) {
                           std::string n = info.param.file;
                           n = n.substr(0, n.find('.'));
                           for (char& ch : n)
                             if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return n;
                         });

// The bf16 file is the tiny-reasoner checkpoint's own bytes rearranged: this pins down the
// layout a GGUF loader must undo (names, stacking, the split kv_b_proj, F32 upcasts).
TEST(GgufFixtureLayout, ReasonerBf16MatchesCheckpoint) {
  GgufFile g(gguf_dir() + "/tiny-reasoner-bf16.gguf");
  SafetensorsFile s(reasoner_dir() + "/model.safetensors");
  json cfg = read_json(reasoner_dir() + "/config.json");
  const size_t heads = cfg["num_attention_heads"], nope = cfg["qk_nope_head_dim"], v = cfg["v_head_dim"];
  const size_t kv_lora = cfg["kv_lora_rank"], experts = cfg["n_routed_experts"];
  auto bf16 = [](const uint8_t* p, size_t i) { return static_cast<uint16_t>(p[2 * i] | p[2 * i + 1] << 8); };
  auto same_bytes = [&](const std::string& gguf, const std::string& hf) {
    const GgufTensorInfo* t = g.tensor(gguf);
    const TensorView& h = s.at(hf);
    ASSERT_TRUE(t) << gguf;
    ASSERT_EQ(t->nbytes, h.nbytes) << gguf;
    EXPECT_EQ(std::memcmp(t->data, h.data, h.nbytes), 0) << gguf << " vs " << hf;
  };
  auto upcast = [&](const std::string& gguf, const std::string& hf) {  // bf16 → F32 exactly
    const GgufTensorInfo* t = g.tensor(gguf);
    const TensorView& h = s.at(hf);
    ASSERT_TRUE(t) << gguf;
    ASSERT_EQ(t->type, GgufType::F32);
    ASSERT_EQ(t->nbytes, 2 * h.nbytes) << gguf;
    for (size_t i = 0; i < h.nbytes / 2; ++i) {
      uint32_t bits = static_cast<uint32_t>(bf16(h.data, i)) << 16, got;
      std::memcpy(&got, t->data + 4 * i, 4);
      ASSERT_EQ(got, bits) << gguf << "[" << i << "]";
    }
  };
  same_bytes("token_embd.weight", "model.embed_tokens.weight");
  same_bytes("output.weight", "lm_head.weight");
  upcast("output_norm.weight", "model.norm.weight");
  for (int l : {0, 1}) {
    const std::string b = "blk." + std::to_string(l) + ".", m = "model.layers." + std::to_string(l) + ".";
    upcast(b + "attn_norm.weight", m + "input_layernorm.weight");
    upcast(b + "ffn_norm.weight", m + "post_attention_layernorm.weight");
    upcast(b + "attn_q_a_norm.weight", m + "self_attn.q_a_layernorm.weight");
    upcast(b + "attn_kv_a_norm.weight", m + "self_attn.kv_a_layernorm.weight");
    same_bytes(b + "attn_q_a.weight", m + "self_attn.q_a_proj.weight");
    same_bytes(b + "attn_q_b.weight", m + "self_attn.q_b_proj.weight");  // no rope permutation
    same_bytes(b + "attn_kv_a_mqa.weight", m + "self_attn.kv_a_proj_with_mqa.weight");
    same_bytes(b + "attn_output.weight", m + "self_attn.o_proj.weight");
    // kv_b_proj [heads · (nope + v), kv_lora] splits into attn_k_b[h][c][n] = kv_b[h(nope+v) + n][c]
    // (transposed) and attn_v_b[h][j][c] = kv_b[h(nope+v) + nope + j][c].
    const uint8_t* kvb = s.at(m + "self_attn.kv_b_proj.weight").data;
    const uint8_t* kb = g.tensor(b + "attn_k_b.weight")->data;
    const uint8_t* vb = g.tensor(b + "attn_v_b.weight")->data;
    for (size_t h = 0; h < heads; ++h)
      for (size_t c = 0; c < kv_lora; ++c) {
        for (size_t n = 0; n < nope; ++n)
          ASSERT_EQ(bf16(kb, (h * kv_lora + c) * nope + n), bf16(kvb, (h * (nope + v) + n) * kv_lora + c));
        for (size_t j = 0; j < v; ++j)
          ASSERT_EQ(bf16(vb, (h * v + j) * kv_lora + c), bf16(kvb, (h * (nope + v) + nope + j) * kv_lora + c));
      }
  }
  same_bytes("blk.0.ffn_gate.weight", "model.layers.0.mlp.gate_proj.weight");
  same_bytes("blk.0.ffn_down.weight", "model.layers.0.mlp.down_proj.weight");
  upcast("blk.1.ffn_gate_inp.weight", "model.layers.1.mlp.gate.weight");
  upcast("blk.1.exp_probs_b.bias", "model.layers.1.mlp.gate.e_score_correction_bias");
  same_bytes("blk.1.ffn_up_shexp.weight", "model.layers.1.mlp.shared_experts.up_proj.weight");
  // Experts are stacked: expert e's [rows, cols] matrix is slab e of the 3-D tensor.
  for (const char* proj : {"gate", "up", "down"}) {
    const GgufTensorInfo* t = g.tensor(std::string("blk.1.ffn_") + proj + "_exps.weight");
    ASSERT_TRUE(t);
    for (size_t e = 0; e < experts; ++e) {
      const TensorView& h = s.at("model.layers.1.mlp.experts." + std::to_string(e) + "." + proj + "_proj.weight");
      ASSERT_EQ(t->nbytes, experts * h.nbytes);
      EXPECT_EQ(std::memcmp(t->data + e * h.nbytes, h.data, h.nbytes), 0) << proj << " expert " << e;
    }
  }
  // The checkpoint's MTP layer (model.layers.4) is not in the GGUF.
  EXPECT_NE(s.find("model.layers.4.eh_proj.weight"), nullptr);
  EXPECT_EQ(g.tensor("blk.4.attn_norm.weight"), nullptr);
}

// The tokenizer in GGUF is tokenizer.json's vocabulary by id, padded with [PAD…] entries.
TEST(GgufFixtureLayout, ReasonerTokenizer) {
  GgufFile g(gguf_dir() + "/tiny-reasoner-bf16.gguf");
  json tok = read_json(reasoner_dir() + "/tokenizer.json");
  json cfg = read_json(reasoner_dir() + "/config.json");
  const auto& tokens = *g.get_strings("tokenizer.ggml.tokens");
  const auto types = *g.get_ints("tokenizer.ggml.token_type");
  ASSERT_EQ(static_cast<int64_t>(tokens.size()), cfg["vocab_size"].get<int64_t>());
  std::set<size_t> added;
  size_t listed = 0;  // one past the highest id tokenizer.json names
  for (const auto& a : tok["added_tokens"]) {
    size_t id = a["id"];
    ASSERT_LT(id, tokens.size());
    EXPECT_EQ(tokens[id], a["content"].get<std::string>());
    added.insert(id);
    listed = std::max(listed, id + 1);
  }
  for (const auto& item : tok["model"]["vocab"].items()) {
    size_t id = item.value();
    ASSERT_LT(id, tokens.size());
    EXPECT_EQ(tokens[id], item.key());
    if (!added.count(id)) {
      EXPECT_EQ(types[id], 1) << item.key();  // normal
    }
    listed = std::max(listed, id + 1);
  }
  EXPECT_EQ(listed, 1284u);
  // llama.cpp marks the special tokens and <｜User｜>/<｜Assistant｜> control (3), <think> and
  // </think> user-defined (4), and the padding rows unused (5).
  EXPECT_EQ(types[0], 3);
  EXPECT_EQ(types[1280], 3);
  EXPECT_EQ(types[1282], 4);
  EXPECT_EQ(tokens[1282], "<think>");
  for (size_t id = listed; id < tokens.size(); ++id) {
    EXPECT_EQ(tokens[id], "[PAD" + std::to_string(id) + "]");
    EXPECT_EQ(types[id], 5);
  }
  const auto& merges = *g.get_strings("tokenizer.ggml.merges");
  ASSERT_EQ(merges.size(), tok["model"]["merges"].size());
  for (size_t i = 0; i < merges.size(); ++i) {
    const json& m = tok["model"]["merges"][i];
    std::string want = m.is_string() ? m.get<std::string>() : m[0].get<std::string>() + " " + m[1].get<std::string>();
    ASSERT_EQ(merges[i], want) << i;
  }
  EXPECT_EQ(g.get_int("tokenizer.ggml.padding_token_id"), cfg["pad_token_id"].get<int64_t>());
  EXPECT_EQ(g.get_bool("tokenizer.ggml.add_bos_token"), false);
  auto tmpl = g.get_string("tokenizer.chat_template");
  ASSERT_TRUE(tmpl);
  EXPECT_EQ(*tmpl, read_json(reasoner_dir() + "/tokenizer_config.json")["chat_template"].get<std::string>());
}

}  // namespace
}  // namespace sibyl::engine::test
