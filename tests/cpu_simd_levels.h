// The SIMD levels this machine has, each one the tests can force with simd_cap (lowest first);
// the cap is back at the top when this returns.
#pragma once
#include <vector>

#include "backends/cpu/simd.h"

namespace sibyl::backend::cpu {

inline std::vector<SimdLevel> levels() {
  std::vector<SimdLevel> out;
  for (int l = 0; l <= static_cast<int>(SimdLevel::avx512_bf16); ++l) {
    simd_cap(static_cast<SimdLevel>(l));
    if (simd_best() == static_cast<SimdLevel>(l)) out.push_back(static_cast<SimdLevel>(l));
  }
  simd_cap(SimdLevel::avx512_bf16);
  return out;
}

}  // namespace sibyl::backend::cpu
