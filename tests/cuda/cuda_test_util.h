// Helpers of the CUDA backend tests: the visible skip without a device, and a CPU + CUDA backend
// pair that runs one op on both from the same random inputs.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <deque>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "engine/core/failure.h"
#include "engine/core/quant.h"

namespace sibyl::cuda_test {

using backend::Backend;
using backend::Tensor;
using engine::DType;

// Why no CUDA backend can be created here ("" when one can), found once per process.
inline const std::string& cuda_unavailable() {
  static const std::string why = [] {
    try {
      backend::create_backend(backend::BackendKind::cuda, {});
      return std::string();
    } catch (const engine::Failure& e) {
      return std::string(e.what());
    }
  }();
  return why;
}

#define SKIP_WITHOUT_CUDA()                                                            \
  do {                                                                                 \
    if (!::sibyl::cuda_test::cuda_unavailable().empty())                               \
      GTEST_SKIP() << "no CUDA device: " << ::sibyl::cuda_test::cuda_unavailable();  \
  } while (0)

// A fresh seed per check (printed with every failure through SCOPED_TRACE in the tests).
inline uint32_t fresh_seed() {
  static std::random_device rd;
  return rd();
}

inline std::vector<float> random_floats(std::mt19937& rng, size_t n, float scale = 1.0f) {
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

// ‖got − ref‖ / ‖ref‖, infinite when sizes differ or anything is not finite.
inline double rel_error(const std::vector<float>& got, const std::vector<float>& ref) {
  if (got.size() != ref.size()) return INFINITY;
  double num = 0, den = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i]) || !std::isfinite(ref[i])) return INFINITY;
    num += (double(got[i]) - ref[i]) * (double(got[i]) - ref[i]);
    den += double(ref[i]) * ref[i];
  }
  return den == 0 ? std::sqrt(num) : std::sqrt(num / den);
}

// Host bytes of a random weight [rows, cols] in `dtype` (FP8: random codes, never NaN, plus
// block scales in `scale`).
inline std::vector<uint8_t> random_weight(std::mt19937& rng, DType dtype, int64_t rows, int64_t cols,
                                          std::vector<float>* scale = nullptr, int64_t br = 0, int64_t bc = 0) {
  std::vector<uint8_t> out(static_cast<size_t>(rows) * engine::row_bytes(dtype, cols));
  if (dtype == DType::f8_e4m3) {
    std::uniform_int_distribution<int> b(0, 255);
    for (uint8_t& x : out) {
      do x = uint8_t(b(rng));
      while ((x & 0x7f) == 0x7f);
    }
    const int64_t n = ((rows + br - 1) / br) * ((cols + bc - 1) / bc);
    std::uniform_real_distribution<float> s(0.001f, 0.02f);
    scale->resize(static_cast<size_t>(n));
    for (float& x : *scale) x = s(rng);
    return out;
  }
  const std::vector<float> v = random_floats(rng, static_cast<size_t>(rows * cols), 0.1f);
  for (int64_t r = 0; r < rows; ++r)
    engine::quantize_row(dtype, v.data() + r * cols, out.data() + r * engine::row_bytes(dtype, cols), cols);
  return out;
}

// The same tensors on the CPU backend (the oracle) and on the CUDA backend.
struct Pair {
  std::unique_ptr<Backend> cpu = backend::create_cpu_backend({});
  std::unique_ptr<Backend> gpu = backend::create_backend(backend::BackendKind::cuda, {});
  std::deque<std::vector<uint8_t>> host;  // weights' bytes: the CPU backend uses them in place
  std::deque<std::vector<float>> scales;
  std::vector<std::unique_ptr<Tensor>> owned;

  struct Two {
    Tensor* cpu;
    Tensor* gpu;
  };

  Two weight(std::mt19937& rng, DType dtype, int64_t rows, int64_t cols, int64_t br = 128, int64_t bc = 128) {
    scales.emplace_back();
    host.push_back(random_weight(rng, dtype, rows, cols, &scales.back(), br, bc));
    backend::HostWeight w{"w", dtype, rows, cols, host.back().data()};
    if (dtype == DType::f8_e4m3) {
      w.block_scale = scales.back().data();
      w.block_rows = br;
      w.block_cols = bc;
    }
    return keep(cpu->upload(w), gpu->upload(w));
  }
  // A float32 (or i32) activation with the given contents on both backends.
  Two input(DType dtype, int64_t rows, int64_t cols, const void* data) {
    auto a = cpu->alloc(dtype, rows, cols), b = gpu->alloc(dtype, rows, cols);
    const size_t bytes = static_cast<size_t>(rows * cols) * 4;
    if (data) {
      cpu->write(*a, data, bytes);
      gpu->write(*b, data, bytes);
    }
    return keep(std::move(a), std::move(b));
  }
  Two floats(std::mt19937& rng, int64_t rows, int64_t cols, float scale = 1.0f) {
    const auto v = random_floats(rng, static_cast<size_t>(rows * cols), scale);
    return input(DType::f32, rows, cols, v.data());
  }
  Two output(DType dtype, int64_t rows, int64_t cols) { return input(dtype, rows, cols, nullptr); }

  // Runs op(backend, is_gpu) inside a step on each backend.
  void run(const std::function<void(Backend&, bool)>& op) {
    for (bool g : {false, true}) {
      Backend& b = g ? *gpu : *cpu;
      b.begin_step();
      op(b, g);
      b.end_step();
    }
  }
  template <class T = float>
  std::pair<std::vector<T>, std::vector<T>> read(const Two& t) {
    std::vector<T> a(static_cast<size_t>(t.cpu->rows() * t.cpu->cols())), b(a.size());
    cpu->read(*t.cpu, a.data(), a.size() * sizeof(T));
    gpu->read(*t.gpu, b.data(), b.size() * sizeof(T));
    return {a, b};
  }

 private:
  Two keep(std::unique_ptr<Tensor> a, std::unique_ptr<Tensor> b) {
    Two t{a.get(), b.get()};
    owned.push_back(std::move(a));
    owned.push_back(std::move(b));
    return t;
  }
};

inline Tensor& pick(const Pair::Two& t, bool gpu) { return gpu ? *t.gpu : *t.cpu; }

}  // namespace sibyl::cuda_test
