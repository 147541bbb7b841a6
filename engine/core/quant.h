// Conversions between float32 and every stored element type, including ggml's
// block-quantized formats (Q8_0, Q5_0, Q4_K, Q6_K) byte for byte as GGUF stores them.
//
// Block layouts (all little-endian; a block may sit at any 2-byte boundary):
//   Q8_0  34 bytes / 32 values: f16 d, int8 q[32];                value = d·q
//   Q5_0  22 bytes / 32 values: f16 d, u32 qh, u8 qs[16];         value = d·(q − 16)
//         q of value j < 16 is the low nibble of qs[j] plus bit j of qh as bit 4;
//         value j + 16 takes the high nibble of qs[j] and bit j + 16 of qh.
//   Q4_K 144 bytes / 256 values: f16 d, f16 dmin, u8 scales[12], u8 qs[128];
//         8 sub-blocks of 32, each with a 6-bit scale sc and 6-bit min m:
//         value = (d·sc)·q − (dmin·m), q a 4-bit code. Chunk c (64 values) keeps
//         sub-block 2c in the low nibbles of qs[32c…32c+31], sub-block 2c+1 in the high ones.
//   Q6_K 210 bytes / 256 values: u8 ql[128], u8 qh[64], int8 scales[16], f16 d;
//         16 sub-blocks of 16 (scale index = value index / 16): value = (d·sc)·(q − 32),
//         q a 6-bit code split into 4 low bits (ql) and 2 high bits (qh).
#pragma once
#include <cstdint>

#include "engine/core/dtype.h"

namespace sibyl::engine {

// Decodes n elements of `type` into float32. Any DType except i32/i64 (Errc::unsupported);
// f8_e4m3 gives the unscaled values. n must be a multiple of block_elems(type)
// (Errc::invalid_argument otherwise). The quantized types decode exactly as ggml's
// reference dequantizers do (same float operations in the same order).
void dequantize_row(DType type, const void* src, float* dst, int64_t n);

// Encodes n floats as `type`: f32, f16 and bf16 (round to nearest even), q8_0, q5_0 (as
// ggml's reference quantizers, bit for bit), q4_k and q6_k (an error-minimising search:
// at least ggml's quality). Writes row_bytes(type, n) bytes. n must be a multiple of
// block_elems(type). Errc::unsupported for f8_e4m3, i32 and i64.
void quantize_row(DType type, const float* src, void* dst, int64_t n);

// IEEE half / bfloat16 encoders, round to nearest even. f32_to_f16 keeps subnormals and
// overflows to ±inf; both keep NaN a NaN.
uint16_t f32_to_f16(float f);
uint16_t f32_to_bf16(float f);

// Q4_K: the 6-bit scale and min of sub-block j (0…7) from the 12 packed bytes.
inline void k4_scale_min(const uint8_t* s, int j, int& sc, int& mn) {
  if (j < 4) {
    sc = s[j] & 63;
    mn = s[j + 4] & 63;
  } else {
    sc = (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
    mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

}  // namespace sibyl::engine
