// Element types of stored tensors, shared by the engine and the backends.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace sibyl::engine {

// f8_e4m3: DeepSeek's FP8 weights (e4m3fn, no infinities), scaled per block by a separate tensor.
enum class DType : uint8_t { f32, f16, bf16, i32, i64, f8_e4m3 };

constexpr size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32: return 4;
    case DType::f16: return 2;
    case DType::bf16: return 2;
    case DType::i32: return 4;
    case DType::i64: return 8;
    case DType::f8_e4m3: return 1;
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
float f8_e4m3_to_f32(uint8_t b);

}  // namespace sibyl::engine
