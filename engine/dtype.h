// Element types of stored tensors, shared by the engine and the backends.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace sibyl::engine {

enum class DType : uint8_t { f32, f16, bf16, i32, i64 };

constexpr size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32: return 4;
    case DType::f16: return 2;
    case DType::bf16: return 2;
    case DType::i32: return 4;
    case DType::i64: return 8;
  }
  return 0;
}

const char* dtype_name(DType t);

inline float bf16_to_f32(uint16_t h) {
  uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

float f16_to_f32(uint16_t h);

}  // namespace sibyl::engine
