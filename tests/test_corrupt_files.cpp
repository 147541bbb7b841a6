// Corrupt inputs never crash the parsers: every truncation and thousands of seeded byte
// mutations of a safetensors file and of config.json end in success or a Failure — run
// under ASan/UBSan in CI, this is a small deterministic fuzzer.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "engine/model/config.h"
#include "engine/core/failure.h"
#include "engine/formats/file_util.h"
#include "fixture_util.h"
#include "engine/formats/safetensors.h"

namespace sibyl::engine::test {
namespace {

namespace fs = std::filesystem;

std::string small_safetensors() {
  std::string header =
      R"({"a":{"dtype":"BF16","shape":[2,3],"data_offsets":[0,12]},)"
      R"("b":{"dtype":"F32","shape":[4],"data_offsets":[12,28]},"__metadata__":{"format":"pt"}})";
  while ((8 + header.size()) % 8) header += ' ';
  std::string file(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) file[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  file += header;
  for (int i = 0; i < 28; ++i) file += static_cast<char>(i * 7);
  return file;
}

class TempFile {
 public:
  TempFile() : path_(fs::temp_directory_path() / ("sibyl_corrupt_" + std::to_string(::getpid()) + ".bin")) {}
  ~TempFile() { fs::remove(path_); }
  const std::string path() const { return path_.string(); }
  void write(const std::string& bytes) const {
    std::ofstream(path_, std::ios::binary | std::ios::trunc).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }

 private:
  fs::path path_;
};

// Loads and, on success, touches every byte the views claim (ASan catches overreads).
bool try_load(const std::string& path) {
  try {
    SafetensorsFile f(path);
    uint64_t sum = 0;
    for (const auto& [name, t] : f.tensors())
      for (size_t i = 0; i < t.nbytes; ++i) sum += t.data[i];
    return sum != ~0ull;
  } catch (const Failure&) {
    return false;
  }
}

TEST(CorruptFiles, ValidSmallFileLoads) {
  TempFile tmp;
  tmp.write(small_safetensors());
  SafetensorsFile f(tmp.path());
  ASSERT_EQ(f.tensors().size(), 2u);
  EXPECT_EQ(f.at("a").shape_string(), "[2, 3]");
  EXPECT_EQ(f.at("b").nbytes, 16u);
}

TEST(CorruptFiles, ShapesWhoseByteSizeOverflowAreRejected) {
  // 2^40 × 2^22 F32 elements need 2^64 bytes: that must not wrap around to a 0-byte tensor.
  std::string header = R"({"e":{"dtype":"F32","shape":[1099511627776,4194304],"data_offsets":[0,0]}})";
  while ((8 + header.size()) % 8) header += ' ';
  std::string file(8, '\0');
  for (int i = 0; i < 8; ++i) file[i] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
  TempFile tmp;
  tmp.write(file + header);
  try {
    SafetensorsFile f(tmp.path());
    ADD_FAILURE() << "an impossible shape loaded";
  } catch (const Failure& e) {
    EXPECT_EQ(e.code(), Errc::format) << e.what();
  }
}

TEST(CorruptFiles, EveryTruncationIsAFormatOrIoError) {
  const std::string good = small_safetensors();
  TempFile tmp;
  for (size_t len = 0; len < good.size(); ++len) {
    tmp.write(good.substr(0, len));
    try {
      SafetensorsFile f(tmp.path());
      ADD_FAILURE() << "a file truncated to " << len << " bytes loaded";
    } catch (const Failure& e) {
      EXPECT_TRUE(e.code() == Errc::format || e.code() == Errc::io) << e.what();
      EXPECT_NE(std::string(e.what()), "");
    }
  }
}

TEST(CorruptFiles, SeededByteMutationsNeverCrash) {
  const std::string good = small_safetensors();
  TempFile tmp;
  std::mt19937 rng(1234);
  int loaded = 0;
  for (int round = 0; round < 3000; ++round) {
    std::string bad = good;
    int flips = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < flips; ++k) {
      size_t at = rng() % bad.size();
      bad[at] = static_cast<char>(rng() % 3 == 0 ? "0123456789[]{}\",:-e"[rng() % 19] : static_cast<char>(rng()));
    }
    tmp.write(bad);
    loaded += try_load(tmp.path());
  }
  EXPECT_LT(loaded, 3000);  // most mutations must be caught, none may crash
}

TEST(CorruptFiles, ConfigMutationsNeverCrash) {
  const std::string good = read_text_file(data_dir() + "/tiny-v3/config.json");
  std::mt19937 rng(99);
  int parsed = 0;
  for (int round = 0; round < 3000; ++round) {
    std::string bad = good;
    for (int k = 0; k < 3; ++k) bad[rng() % bad.size()] = "0123456789-.e\"{}[],:n "[rng() % 22];
    try {
      parse_model_config(bad, "config.json");
      ++parsed;
    } catch (const Failure& e) {
      EXPECT_TRUE(e.code() == Errc::format || e.code() == Errc::unsupported) << e.what();
    }
  }
  EXPECT_LT(parsed, 3000);
}

}  // namespace
}  // namespace sibyl::engine::test
