#include "engine/core/dtype.h"

#include <cmath>
#include <limits>
#include <strings.h>

namespace sibyl::engine {

const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "F32";
    case DType::f16: return "F16";
    case DType::bf16: return "BF16";
    case DType::i32: return "I32";
    case DType::i64: return "I64";
    case DType::f8_e4m3: return "F8_E4M3";
    case DType::q8_0: return "Q8_0";
    case DType::q5_0: return "Q5_0";
    case DType::q4_k: return "Q4_K";
    case DType::q6_k: return "Q6_K";
  }
  return "?";
}

bool dtype_from_name(const char* name, DType& out) {
  for (int i = 0; i <= static_cast<int>(DType::q6_k); ++i) {
    const char* known = dtype_name(static_cast<DType>(i));
    if (strcasecmp(known, name) == 0) {
      out = static_cast<DType>(i);
      return true;
    }
  }
  return false;
}

float f16_to_f32(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);  // inf / nan
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  } else if (mant == 0) {
    bits = sign;  // signed zero
  } else {         // subnormal: normalise
    int e = -1;
    do {
      ++e;
      mant <<= 1;
    } while ((mant & 0x400u) == 0);
    bits = sign | (static_cast<uint32_t>(112 - e) << 23) | ((mant & 0x3ffu) << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

float f8_e4m3_to_f32(uint8_t b) {
  const float sign = (b & 0x80) ? -1.0f : 1.0f;
  const int exp = (b >> 3) & 0xf, mant = b & 0x7;
  if (exp == 0xf && mant == 0x7) return std::numeric_limits<float>::quiet_NaN();  // e4m3fn has no infinity
  if (exp == 0) return sign * std::ldexp(static_cast<float>(mant) / 8.0f, -6);     // subnormal
  return sign * std::ldexp(1.0f + static_cast<float>(mant) / 8.0f, exp - 7);
}

}  // namespace sibyl::engine
