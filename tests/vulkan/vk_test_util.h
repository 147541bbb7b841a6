// Shared by the Vulkan suites: the backend (or a visible SKIP when no device is usable),
// validation-error checking, and helpers to build the same tensors on the CPU oracle and on
// the Vulkan backend.
#pragma once
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "engine/core/failure.h"
#include "engine/core/quant.h"

namespace sibyl::vktest {

using backend::Backend;
using backend::Tensor;
using engine::DType;
using TensorPtr = std::unique_ptr<Tensor>;

// A fresh Vulkan backend, or nullptr with the reason in `why` (Errc::backend: no device).
std::unique_ptr<Backend> make_vulkan(std::string& why, const backend::BackendOptions& options = {});
// Whether a Vulkan device is usable (tried once per process).
bool vulkan_available(std::string& why);

#define SIBYL_REQUIRE_VULKAN()                                        \
  do {                                                                \
    std::string why_;                                                 \
    if (!::sibyl::vktest::vulkan_available(why_)) GTEST_SKIP() << "no Vulkan device: " << why_; \
  } while (0)

// Runs `f` in the global tear-down, before the process exits: models cached in statics must
// release their Vulkan objects while the driver is still loaded (static destructors run after
// the driver's own, e.g. LLVM's in lavapipe).
void at_teardown(std::function<void()> f);

// ‖got − ref‖ / ‖ref‖ (ref all zeros: ‖got‖); infinite for any non-finite value or size mismatch.
double rel_error(const std::vector<float>& got, const std::vector<float>& ref);

std::vector<float> random_floats(size_t n, std::mt19937& rng, float scale = 1.0f);

// A weight of `dtype` with the values of `f` (rows × cols, row-major) as closely as the dtype
// allows; f is replaced by exactly what the encoding holds (for reference computations).
// f8_e4m3 gets per-block scales of block_rows × block_cols.
struct HostTensor {
  DType dtype;
  int64_t rows, cols;
  std::vector<uint8_t> bytes;
  std::vector<float> scales;  // f8 only
  int64_t block_rows = 0, block_cols = 0;
  backend::HostWeight weight(const char* name = "test") const;
};
HostTensor encode(DType dtype, int64_t rows, int64_t cols, std::vector<float>& f, int64_t block = 16);

// The same tensor uploaded to two backends.
struct Pair {
  TensorPtr cpu, vk;
};
Pair upload_both(Backend& cpu, Backend& vk, const HostTensor& h);
Pair f32_both(Backend& cpu, Backend& vk, int64_t rows, int64_t cols, const std::vector<float>& v);
Pair i32_both(Backend& cpu, Backend& vk, int64_t rows, int64_t cols, const std::vector<int32_t>& v);
Pair alloc_both(Backend& cpu, Backend& vk, DType dtype, int64_t rows, int64_t cols);
std::vector<float> read_f32(Backend& b, const Tensor& t);
std::vector<int32_t> read_i32(Backend& b, const Tensor& t);

std::string data_dir();

inline Tensor& side(Pair& p, int s) { return s ? *p.vk : *p.cpu; }

// The Vulkan backend beside the CPU oracle (SKIP without a device), with a seeded generator.
class VkVsCpu : public ::testing::Test {
 protected:
  void SetUp() override {
    SIBYL_REQUIRE_VULKAN();
    std::string why;
    vk = make_vulkan(why);
    cpu = backend::create_cpu_backend({});
  }
  // Runs `f(backend, side)` inside one step of each backend (side 0: cpu, 1: vulkan).
  template <class F>
  void both(F&& f, uint64_t replay_key = 0) {
    cpu->begin_step(replay_key);
    f(*cpu, 0);
    cpu->end_step();
    vk->begin_step(replay_key);
    f(*vk, 1);
    vk->end_step();
  }
  std::unique_ptr<Backend> cpu, vk;
  std::mt19937 rng{1234};
};

}  // namespace sibyl::vktest
