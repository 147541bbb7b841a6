// Helpers for comparing the engine with the reference fixtures in tests/data.
#pragma once
#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "engine/core/failure.h"
#include "engine/formats/safetensors.h"

namespace sibyl::engine::test {

inline std::string data_dir() {
  const char* d = std::getenv("SIBYL_TEST_DATA");
  return d ? d : SIBYL_TEST_DATA_DEFAULT;
}

inline std::vector<float> f32_of(const TensorView& t) {
  std::vector<float> v(static_cast<size_t>(t.numel()));
  std::memcpy(v.data(), t.data, v.size() * 4);
  return v;
}

inline std::vector<int32_t> i32_of(const TensorView& t) {
  std::vector<int32_t> v(static_cast<size_t>(t.numel()));
  std::memcpy(v.data(), t.data, v.size() * 4);
  return v;
}

// ‖got − ref‖ / ‖ref‖; infinite when sizes differ or any value is not finite.
inline double relative_error(const std::vector<float>& got, const std::vector<float>& ref) {
  if (got.size() != ref.size()) return INFINITY;
  double num = 0, den = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    num += (static_cast<double>(got[i]) - ref[i]) * (static_cast<double>(got[i]) - ref[i]);
    den += static_cast<double>(ref[i]) * ref[i];
  }
  return std::sqrt(num / den);
}

// Runs f, expecting a Failure; returns its code (Errc::internal when nothing was thrown,
// which no test expects).
template <class F>
Errc error_of(F&& f, std::string* message = nullptr) {
  try {
    f();
  } catch (const Failure& e) {
    if (message) *message = e.what();
    return e.code();
  }
  return Errc::internal;
}

}  // namespace sibyl::engine::test

#include <map>
#include <memory>

#include "engine/formats/convert.h"
#include "test_files.h"

namespace sibyl::engine::test {

// `input` converted to a .sibyl pack with `preset`, once per process, in a temp dir that lives
// until exit.
inline std::string converted_pack(const std::string& input, const std::string& preset) {
  static sibyl_test::TempDir dir;
  static std::map<std::string, std::string> done;
  const std::string key = preset + "|" + input;
  auto it = done.find(key);
  if (it != done.end()) return it->second;
  const std::string out = (dir.path() / (std::to_string(done.size()) + "-" + preset + ".sibyl")).string();
  ConvertOptions o;
  o.preset = preset;
  o.n_threads = 1;
  convert_model(input, out, o);
  return done.emplace(key, out).first->second;
}

}  // namespace sibyl::engine::test
