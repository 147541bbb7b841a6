// Test helpers for building model directories on disk: temp dirs, whole-file IO,
// and a safetensors reader/writer (nlohmann-json for the header).
#pragma once
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace sibyl_test {

namespace fs = std::filesystem;

// tests/data (or $SIBYL_TEST_DATA): the fixture models the tests run.
inline fs::path test_data_dir() {
  const char* root = std::getenv("SIBYL_TEST_DATA");
  return root && *root ? fs::path(root) : fs::path(SIBYL_TEST_DATA_DEFAULT);
}

inline std::string tiny_v3_dir() { return (test_data_dir() / "tiny-v3").string(); }

// The embedded demo model (models/tiny-reasoner), which has a tokenizer and a chat template.
inline std::string reasoner_dir() { return (test_data_dir() / ".." / ".." / "models" / "tiny-reasoner").string(); }

inline std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void write_file(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

// A uniquely named directory under the system temp dir, removed with its contents.
class TempDir {
 public:
  TempDir() {
    static std::atomic<unsigned> counter{0};
    const auto stamp = std::chrono::steady_clock::now().time_since_epoch().count();
    path_ = fs::temp_directory_path() /
            ("sibyl-test-" + std::to_string(stamp) + "-" + std::to_string(std::random_device{}()) + "-" +
             std::to_string(counter++));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// Copies the model files of `from` (not the reference outputs) into `to`, writable.
inline void copy_model(const fs::path& from, const fs::path& to) {
  for (const fs::directory_entry& e : fs::directory_iterator(from)) {
    if (!e.is_regular_file() || e.path().filename().string().rfind("reference", 0) == 0) continue;
    const fs::path target = to / e.path().filename();
    fs::copy_file(e.path(), target, fs::copy_options::overwrite_existing);
    fs::permissions(target, fs::perms::owner_read | fs::perms::owner_write, fs::perm_options::add);
  }
}

// One tensor of a safetensors file: its header entry and its bytes.
struct StTensor {
  std::string name;
  std::string dtype;
  std::vector<uint64_t> shape;
  std::string bytes;
};

// The 8-byte little-endian header length that starts a safetensors file.
inline uint64_t header_length(const std::string& file) {
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(file.at(static_cast<size_t>(i)));
  return n;
}

inline std::string length_prefix(uint64_t n) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[static_cast<size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out;
}

// The tensors of a safetensors file, in offset order.
inline std::vector<StTensor> parse_safetensors(const std::string& file) {
  const uint64_t n = header_length(file);
  nlohmann::json header = nlohmann::json::parse(file.substr(8, n));
  std::vector<std::pair<uint64_t, StTensor>> found;
  for (auto& [name, e] : header.items()) {
    if (name == "__metadata__") continue;
    uint64_t begin = e["data_offsets"][0], end = e["data_offsets"][1];
    found.push_back({begin, {name, e["dtype"], e["shape"].get<std::vector<uint64_t>>(),
                             file.substr(8 + n + begin, end - begin)}});
  }
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<StTensor> out;
  for (auto& f : found) out.push_back(std::move(f.second));
  return out;
}

// A safetensors file: 8-byte little-endian header length, JSON header padded with spaces
// to 8 bytes, data packed in order. `override_name`'s data_offsets become `override_offsets`.
inline std::string encode_safetensors(const std::vector<StTensor>& tensors, const std::string& override_name = "",
                                      std::pair<uint64_t, uint64_t> override_offsets = {}) {
  nlohmann::ordered_json header;
  header["__metadata__"] = {{"format", "pt"}};
  std::string data;
  for (const StTensor& t : tensors) {
    uint64_t begin = data.size(), end = data.size() + t.bytes.size();
    if (t.name == override_name) std::tie(begin, end) = override_offsets;
    header[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {begin, end}}};
    data += t.bytes;
  }
  std::string text = header.dump();
  while ((8 + text.size()) % 8 != 0) text += ' ';
  return length_prefix(text.size()) + text + data;
}

inline uint32_t f32_bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

// float → bf16 / f16 with round-to-nearest-even (normal range; tests keep values small).
inline uint16_t to_bf16(float f) {
  uint32_t b = f32_bits(f);
  return static_cast<uint16_t>((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);
}

inline uint16_t to_f16(float f) {
  uint32_t b = f32_bits(f);
  uint32_t sign = (b >> 16) & 0x8000u;
  int32_t exp = static_cast<int32_t>((b >> 23) & 0xffu) - 127 + 15;
  uint32_t mant = b & 0x7fffffu;
  if (exp >= 31) return static_cast<uint16_t>(sign | 0x7c00u);  // overflow → inf
  if (exp <= 0) {                                                 // subnormal or zero
    if (exp < -10) return static_cast<uint16_t>(sign);
    mant |= 0x800000u;
    uint32_t shift = static_cast<uint32_t>(14 - exp);
    uint32_t half = mant >> shift, rest = mant & ((1u << shift) - 1), mid = 1u << (shift - 1);
    if (rest > mid || (rest == mid && (half & 1u))) ++half;
    return static_cast<uint16_t>(sign | half);
  }
  uint32_t half = (static_cast<uint32_t>(exp) << 10) | (mant >> 13), rest = mant & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) ++half;
  return static_cast<uint16_t>(sign | half);
}

// Encodes floats as a safetensors dtype: "F32", "F16" or "BF16".
inline std::string encode_floats(const std::vector<float>& v, const std::string& dtype) {
  std::string out;
  for (float f : v) {
    if (dtype == "F32") {
      uint32_t b = f32_bits(f);
      out.append(reinterpret_cast<const char*>(&b), 4);
    } else {
      uint16_t h = dtype == "F16" ? to_f16(f) : to_bf16(f);
      out.append(reinterpret_cast<const char*>(&h), 2);
    }
  }
  return out;
}

// Decodes a BF16/F16/F32 tensor to floats (F16 via the widening in the engine's tests only).
inline std::vector<float> bf16_floats(const StTensor& t) {
  std::vector<float> v(t.bytes.size() / 2);
  for (size_t i = 0; i < v.size(); ++i) {
    uint16_t h;
    std::memcpy(&h, t.bytes.data() + 2 * i, 2);
    uint32_t b = static_cast<uint32_t>(h) << 16;
    std::memcpy(&v[i], &b, 4);
  }
  return v;
}

}  // namespace sibyl_test
