// Element types of stored tensors, shared by the engine and the backends.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace sibyl::engine {

// f8_e4m3: DeepSeek's FP8 weights (e4m3fn, no infinities), scaled per block by a separate tensor.
// q8_0, q5_0, q4_k, q6_k: ggml's block-quantized formats, byte for byte as GGUF stores them;
// a row is a whole number of blocks (32 or 256 elements) and carries its own scales.
enum class DType : uint8_t { f32, f16, bf16, i32, i64, f8_e4m3, q8_0, q5_0, q4_k, q6_k };

constexpr bool is_quantized(DType t) {
  return t == DType::q8_0 || t == DType::q5_0 || t == DType::q4_k || t == DType::q6_k;
}

// Elements per block: 1 for plain types.
constexpr int64_t block_elems(DType t) {
  switch (t) {
    case DType::q8_0:
    case DType::q5_0: return 32;
    case DType::q4_k:
    case DType::q6_k: return 256;
    default: return 1;
  }
}

// Bytes per block (per element for plain types).
constexpr size_t block_bytes(DType t) {
  switch (t) {
    case DType::f32: return 4;
    case DType::f16: return 2;
    case DType::bf16: return 2;
    case DType::i32: return 4;
    case DType::i64: return 8;
    case DType::f8_e4m3: return 1;
    case DType::q8_0: return 34;   // f16 scale + 32 × int8
    case DType::q5_0: return 22;   // f16 scale + 32 high bits + 32 × 4 low bits
    case DType::q4_k: return 144;  // f16 d, dmin + 12 bytes of 6-bit scales/mins + 256 × 4 bits
    case DType::q6_k: return 210;  // 256 × 4 low bits + 256 × 2 high bits + 16 int8 scales + f16 d
  }
  return 0;
}

// Size of one element of a plain type; 0 for block-quantized types (use row_bytes).
constexpr size_t dtype_size(DType t) { return is_quantized(t) ? 0 : block_bytes(t); }

// Bytes of a row of `cols` elements; cols must be a multiple of block_elems(t).
constexpr size_t row_bytes(DType t, int64_t cols) {
  return static_cast<size_t>(cols / block_elems(t)) * block_bytes(t);
}

const char* dtype_name(DType t);  // "F32", "BF16", "Q4_K", …
// Inverse of dtype_name, case-insensitive; false when unknown.
bool dtype_from_name(const char* name, DType& out);

inline float bf16_to_f32(uint16_t h) {
  uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

float f16_to_f32(uint16_t h);
float f8_e4m3_to_f32(uint8_t b);

}  // namespace sibyl::engine
