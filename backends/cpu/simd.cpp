#include "backends/cpu/simd.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#endif

#include <array>
#include <atomic>
#include <cstdlib>
#include <cstring>

namespace sibyl::backend::cpu {
namespace {

constexpr std::array<const char*, 5> kNames = {"portable", "avx2", "avx512", "avx512_vnni", "avx512_bf16"};

std::array<bool, 5> detect() {
  std::array<bool, 5> has{true, false, false, false, false};
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  // F16C from CPUID leaf 1 (ECX bit 29): clang 14's __builtin_cpu_supports does not know "f16c".
  unsigned a = 0, b = 0, c = 0, d = 0;
  const bool f16c = __get_cpuid(1, &a, &b, &c, &d) && (c >> 29 & 1u);
  has[1] = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
  has[2] = has[1] && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  has[3] = has[2] && __builtin_cpu_supports("avx512vnni");
  has[4] = has[3] && __builtin_cpu_supports("avx512bf16");
#endif
  return has;
}

// The cap from SIBYL_CPU_SIMD, or no cap.
int initial_cap() {
  if (const char* env = std::getenv("SIBYL_CPU_SIMD"))
    for (size_t i = 0; i < kNames.size(); ++i)
      if (std::strcmp(env, kNames[i]) == 0) return static_cast<int>(i);
  return static_cast<int>(kNames.size()) - 1;
}

std::atomic<int>& cap() {
  static std::atomic<int> c{initial_cap()};
  return c;
}

}  // namespace

namespace detail {
std::atomic<int> simd_allowed{-1};

int simd_allowed_slow() {
  static const std::array<bool, 5> has = detect();
  int m = 0;
  for (int l = 0; l <= cap().load(std::memory_order_relaxed); ++l)
    if (has[static_cast<size_t>(l)]) m |= 1 << l;
  simd_allowed.store(m, std::memory_order_relaxed);
  return m;
}
}  // namespace detail

SimdLevel simd_best() {
  for (int l = static_cast<int>(kNames.size()) - 1; l > 0; --l)
    if (simd_has(static_cast<SimdLevel>(l))) return static_cast<SimdLevel>(l);
  return SimdLevel::portable;
}

void simd_cap(SimdLevel level) {
  cap().store(static_cast<int>(level), std::memory_order_relaxed);
  detail::simd_allowed_slow();
}

const char* simd_name(SimdLevel level) { return kNames[static_cast<size_t>(level)]; }

}  // namespace sibyl::backend::cpu
