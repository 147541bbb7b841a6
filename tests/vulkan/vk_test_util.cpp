#include "vk_test_util.h"

#include <cstdlib>

#include "backends/vulkan/vk_device.h"

#if defined(__SANITIZE_ADDRESS__)
#include <dlfcn.h>

// lavapipe (Mesa 22.3) leaks 128 bytes per device it creates. Keep it loaded to the end so
// LeakSanitizer can name it, and suppress only its leaks.
extern "C" const char* __lsan_default_suppressions() { return "leak:libvulkan_lvp.so\n"; }
[[maybe_unused]] static void* const g_keep_lavapipe = dlopen("libvulkan_lvp.so", RTLD_LAZY | RTLD_NODELETE);
#endif

namespace sibyl::vktest {

namespace {

std::vector<std::function<void()>>& teardowns() {
  static std::vector<std::function<void()>> v;
  return v;
}

// Tests may run on a CPU implementation (lavapipe), which `auto` never picks; and every test
// binary fails when the validation layers reported an error (SIBYL_VULKAN_VALIDATION=1).
class VulkanEnvironment : public ::testing::Environment {
 public:
  void SetUp() override { setenv("SIBYL_VULKAN_ALLOW_CPU", "1", 0); }
  void TearDown() override {
    for (auto& f : teardowns()) f();
    teardowns().clear();
    EXPECT_EQ(backend::vulkan::validation_error_count(), 0u)
        << "the Vulkan validation layers reported errors (see the log above)";
  }
};

[[maybe_unused]] ::testing::Environment* const g_env = ::testing::AddGlobalTestEnvironment(new VulkanEnvironment);

}  // namespace

void at_teardown(std::function<void()> f) { teardowns().push_back(std::move(f)); }

std::unique_ptr<Backend> make_vulkan(std::string& why, const backend::BackendOptions& options) {
  try {
    return backend::create_backend(backend::BackendKind::vulkan, options);
  } catch (const engine::Failure& e) {
    if (e.code() != engine::Errc::backend) throw;
    why = e.what();
    return nullptr;
  }
}

bool vulkan_available(std::string& why) {
  static std::string reason;
  static const bool ok = [] { return make_vulkan(reason) != nullptr; }();
  why = reason;
  return ok;
}

double rel_error(const std::vector<float>& got, const std::vector<float>& ref) {
  if (got.size() != ref.size()) return INFINITY;
  double num = 0, den = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    const double d = static_cast<double>(got[i]) - ref[i];
    num += d * d;
    den += static_cast<double>(ref[i]) * ref[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

std::vector<float> random_floats(size_t n, std::mt19937& rng, float scale) {
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

backend::HostWeight HostTensor::weight(const char* name) const {
  backend::HostWeight w{name, dtype, rows, cols, bytes.data()};
  if (dtype == DType::f8_e4m3) {
    w.block_scale = scales.data();
    w.block_rows = block_rows;
    w.block_cols = block_cols;
  }
  return w;
}

namespace {

// Nearest e4m3fn byte to v (|v| ≤ 448), by search: tests need exactness, not speed.
uint8_t to_f8(float v) {
  uint8_t best = 0;
  float err = INFINITY;
  for (int b = 0; b < 256; ++b) {
    const float f = engine::f8_e4m3_to_f32(static_cast<uint8_t>(b));
    if (std::isnan(f)) continue;
    if (std::fabs(f - v) < err) {
      err = std::fabs(f - v);
      best = static_cast<uint8_t>(b);
    }
  }
  return best;
}

}  // namespace

HostTensor encode(DType dtype, int64_t rows, int64_t cols, std::vector<float>& f, int64_t block) {
  HostTensor h{dtype, rows, cols, {}, {}, 0, 0};
  const size_t rb = engine::row_bytes(dtype, cols);
  h.bytes.resize(rb * static_cast<size_t>(rows));
  if (dtype == DType::f8_e4m3) {
    h.block_rows = block;
    h.block_cols = block;
    const int64_t br = (rows + block - 1) / block, bc = (cols + block - 1) / block;
    h.scales.assign(static_cast<size_t>(br * bc), 0.0f);
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < cols; ++j) {
        float& s = h.scales[static_cast<size_t>((i / block) * bc + j / block)];
        s = std::max(s, std::fabs(f[static_cast<size_t>(i * cols + j)]) / 448.0f);
      }
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < cols; ++j) {
        const float s = h.scales[static_cast<size_t>((i / block) * bc + j / block)];
        float& x = f[static_cast<size_t>(i * cols + j)];
        const uint8_t b = to_f8(s > 0 ? x / s : 0.0f);
        h.bytes[static_cast<size_t>(i * cols + j)] = b;
        x = engine::f8_e4m3_to_f32(b) * s;
      }
    return h;
  }
  for (int64_t i = 0; i < rows; ++i) {
    float* row = f.data() + i * cols;
    uint8_t* dst = h.bytes.data() + static_cast<size_t>(i) * rb;
    engine::quantize_row(dtype, row, dst, cols);
    engine::dequantize_row(dtype, dst, row, cols);
  }
  return h;
}

Pair upload_both(Backend& cpu, Backend& vk, const HostTensor& h) {
  return {cpu.upload(h.weight()), vk.upload(h.weight())};
}

Pair f32_both(Backend& cpu, Backend& vk, int64_t rows, int64_t cols, const std::vector<float>& v) {
  Pair p{cpu.alloc(DType::f32, rows, cols), vk.alloc(DType::f32, rows, cols)};
  cpu.write(*p.cpu, v.data(), v.size() * 4);
  vk.write(*p.vk, v.data(), v.size() * 4);
  return p;
}

Pair i32_both(Backend& cpu, Backend& vk, int64_t rows, int64_t cols, const std::vector<int32_t>& v) {
  Pair p{cpu.alloc(DType::i32, rows, cols), vk.alloc(DType::i32, rows, cols)};
  cpu.write(*p.cpu, v.data(), v.size() * 4);
  vk.write(*p.vk, v.data(), v.size() * 4);
  return p;
}

Pair alloc_both(Backend& cpu, Backend& vk, DType dtype, int64_t rows, int64_t cols) {
  return {cpu.alloc(dtype, rows, cols), vk.alloc(dtype, rows, cols)};
}

std::vector<float> read_f32(Backend& b, const Tensor& t) {
  std::vector<float> v(static_cast<size_t>(t.rows() * t.cols()));
  b.read(t, v.data(), v.size() * 4);
  return v;
}

std::vector<int32_t> read_i32(Backend& b, const Tensor& t) {
  std::vector<int32_t> v(static_cast<size_t>(t.rows() * t.cols()));
  b.read(t, v.data(), v.size() * 4);
  return v;
}

std::string data_dir() {
  const char* d = std::getenv("SIBYL_TEST_DATA");
  return d && *d ? d : SIBYL_TEST_DATA_DEFAULT;
}

}  // namespace sibyl::vktest
