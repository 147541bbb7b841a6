// Device-side helpers of the CUDA backend: element decoders for every stored dtype (ggml block
// layouts byte for byte, see engine/core/quant.h), warp reductions and RoPE. Decoding does the same
// float operations as engine::dequantize_row, unfused (__fmul_rn/__fsub_rn), so a weight decodes
// to the CPU backend's values bit for bit.
#pragma once
#include <cuda_fp16.h>

#include <cstdint>

#include "backends/cuda/kernels.h"

namespace sibyl::backend::cuda::dev {

constexpr unsigned kFull = 0xffffffffu;

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFull, v, o);
  return v;
}
__device__ __forceinline__ double warp_sum(double v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFull, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(kFull, v, o));
  return v;
}

// Sum over a whole block (blockDim.x a multiple of 32, at most 1024); every thread gets it.
__device__ __forceinline__ double block_sum(double v, double* red /* [32] shared */) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();  // red may still be read from a previous call
  if (lane == 0) red[warp] = v;
  __syncthreads();
  double s = 0.0;
  for (int w = 0; w < warps; ++w) s += red[w];
  return s;
}

// ---- raw loads (weights are read-only for the kernel's lifetime: the non-coherent path is fine)
__device__ __forceinline__ uint16_t ld_u16(const uint8_t* p) { return __ldg(reinterpret_cast<const unsigned short*>(p)); }
__device__ __forceinline__ uint32_t ld_u32_2(const uint8_t* p) {  // 4 bytes at a 2-byte boundary
  return uint32_t(ld_u16(p)) | (uint32_t(ld_u16(p + 2)) << 16);
}
// 8 bytes at a 2-byte boundary, as bytes.
__device__ __forceinline__ void ld_8x_u8(const uint8_t* p, uint8_t* b) {
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    const uint16_t v = ld_u16(p + 2 * k);
    b[2 * k] = uint8_t(v & 0xff);
    b[2 * k + 1] = uint8_t(v >> 8);
  }
}

__device__ __forceinline__ float f16_bits(uint16_t h) { return __half2float(__ushort_as_half(h)); }
__device__ __forceinline__ float bf16_bits(uint16_t h) { return __uint_as_float(uint32_t(h) << 16); }
// e4m3fn: no infinities; S.1111.111 is NaN (engine::f8_e4m3_to_f32).
__device__ __forceinline__ float f8_bits(uint8_t b) {
  const uint32_t e = (b >> 3) & 15u, m = b & 7u;
  const uint32_t sign = uint32_t(b & 0x80u) << 24;
  if (e == 15u && m == 7u) return __uint_as_float(0x7fc00000u);
  if (e == 0u) return __uint_as_float(sign | __float_as_uint(float(m) * 0.001953125f));  // m/8 · 2^-6
  return __uint_as_float(sign | ((e + 120u) << 23) | (m << 20));
}

// Q4_K: 6-bit scale and min of sub-block j (engine/core/quant.cpp k4_scale_min).
__device__ __forceinline__ void k4_scale_min(const uint8_t* s, int j, int& sc, int& mn) {
  if (j < 4) {
    sc = __ldg(s + j) & 63;
    mn = __ldg(s + j + 4) & 63;
  } else {
    sc = (__ldg(s + j + 4) & 15) | ((__ldg(s + j - 4) >> 6) << 4);
    mn = (__ldg(s + j + 4) >> 4) | ((__ldg(s + j) >> 6) << 4);
  }
}

// Decoders: load8 reads elements c … c+7 of a row (c a multiple of 8; plain types need the row and
// c 16-byte aligned: the host checks), load1 reads element c. FP8 block scales come on top (load8s).
template <int DT>
struct Dec;

template <>
struct Dec<kF32> {
  __device__ static void load8(const uint8_t* row, int64_t c, float* v) {
    const float4* p = reinterpret_cast<const float4*>(row) + c / 4;
    const float4 a = __ldg(p), b = __ldg(p + 1);
    v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
  }
  __device__ static float load1(const uint8_t* row, int64_t c) { return __ldg(reinterpret_cast<const float*>(row) + c); }
};

template <>
struct Dec<kF16> {
  __device__ static void load8(const uint8_t* row, int64_t c, float* v) {
    const uint4 q = __ldg(reinterpret_cast<const uint4*>(row + 2 * c));
    const uint32_t w[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      v[2 * k] = f16_bits(uint16_t(w[k] & 0xffffu));
      v[2 * k + 1] = f16_bits(uint16_t(w[k] >> 16));
    }
  }
  __device__ static float load1(const uint8_t* row, int64_t c) { return f16_bits(ld_u16(row + 2 * c)); }
};

template <>
struct Dec<kBF16> {
  __device__ static void load8(const uint8_t* row, int64_t c, float* v) {
    const uint4 q = __ldg(reinterpret_cast<const uint4*>(row + 2 * c));
    const uint32_t w[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      v[2 * k] = __uint_as_float(w[k] << 16);
      v[2 * k + 1] = __uint_as_float(w[k] & 0xffff0000u);
    }
  }
  __device__ static float load1(const uint8_t* row, int64_t c) { return bf16_bits(ld_u16(row + 2 * c)); }
};

template <>
struct Dec<kF8> {  // unscaled
  __device__ static void load8(const uint8_t* row, int64_t c, float* v) {
    const uint2 q = __ldg(reinterpret_cast<const uint2*>(row + c));
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      v[k] = f8_bits(uint8_t(q.x >> (8 * k)));
      v[4 + k] = f8_bits(uint8_t(q.y >> (8 * k)));
    }
  }
  __device__ static float load1(const uint8_t* row, int64_t c) { return f8_bits(__ldg(row + c)); }
};

template <>
struct Dec<kQ8_0> {  // 34-byte blocks of 32: f16 d, int8 q[32]; value = q·d
  __device__ static void load8(const uint8_t* row, int64_t c, float* v) {
    const uint8_t* blk = row + (c >> 5) * 34;
    const float d = f16_bits(ld_u16(blk));
    uint8_t q[8];
    ld_8x_u8(blk + 2 + (c & 31), q);
#pragma unroll
    for (int k = 0; k < 8; ++k) v[k] = __fmul_rn(float(int8_t(q[k])), d);
  }
  __device__ static float load1(const uint8_t* row, int64_t c) {
    const uint8_t* blk = row + (c >> 5) * 34;
    return __fmul_rn(float(int8_t(__ldg(blk + 2 + (c & 31)))), f16_bits(ld_u16(blk)));
  }
};

template <>
struct Dec<kQ5_0> {  // 22-byte blocks of 32: f16 d, u32 qh, u8 qs[16]; value = (q − 16)·d
  __device__ static void load8(const uint8_t* row, int64_t c, float* v) {
    const uint8_t* blk = row + (c >> 5) * 22;
    const float d = f16_bits(ld_u16(blk));
    const uint32_t qh = ld_u32_2(blk + 2);
    const int j = int(c & 31), hi = j >> 4;
    uint8_t qs[8];
    ld_8x_u8(blk + 6 + (j & 15), qs);
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      const int nib = hi ? (qs[k] >> 4) : (qs[k] & 15);
      const int q = nib | int(((qh >> (j + k)) & 1u) << 4);
      v[k] = __fmul_rn(float(q - 16), d);
    }
  }
  __device__ static float load1(const uint8_t* row, int64_t c) {
    float v[8];
    load8(row, c & ~int64_t(7), v);
    return v[c & 7];
  }
};

template <>
struct Dec<kQ4_K> {  // 144-byte blocks of 256: f16 d, f16 dmin, 12 bytes of 6-bit scales/mins, 128 bytes of nibbles
  __device__ static void load8(const uint8_t* row, int64_t c, float* v) {
    const uint8_t* blk = row + (c >> 8) * 144;
    const int j = int(c & 255), chunk = j >> 6, hi = (j >> 5) & 1, l = j & 31;
    const float d = f16_bits(ld_u16(blk)), dmin = f16_bits(ld_u16(blk + 2));
    int sc, mn;
    k4_scale_min(blk + 4, 2 * chunk + hi, sc, mn);
    const float d1 = __fmul_rn(d, float(sc)), o1 = __fmul_rn(dmin, float(mn));
    const uint2 q = __ldg(reinterpret_cast<const uint2*>(blk + 16 + 32 * chunk + l));  // 8-byte aligned
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      const uint32_t byte = ((k < 4 ? q.x : q.y) >> (8 * (k & 3))) & 0xffu;
      const uint32_t nib = hi ? (byte >> 4) : (byte & 15u);
      v[k] = __fsub_rn(__fmul_rn(d1, float(nib)), o1);
    }
  }
  __device__ static float load1(const uint8_t* row, int64_t c) {
    float v[8];
    load8(row, c & ~int64_t(7), v);
    return v[c & 7];
  }
};

template <>
struct Dec<kQ6_K> {  // 210-byte blocks of 256: ql[128], qh[64], int8 scales[16], f16 d
  __device__ static void load8(const uint8_t* row, int64_t c, float* v) {
    const uint8_t* blk = row + (c >> 8) * 210;
    const int j = int(c & 255), h = j >> 7, quarter = (j >> 5) & 3, l = j & 31;
    const float d = f16_bits(ld_u16(blk + 208));
    const int sc = int8_t(__ldg(blk + 192 + 8 * h + (l >> 4) + 2 * quarter));
    const float ds = __fmul_rn(d, float(sc));
    uint8_t ql[8], qh[8];
    ld_8x_u8(blk + 64 * h + l + ((quarter & 1) ? 32 : 0), ql);
    ld_8x_u8(blk + 128 + 32 * h + l, qh);
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      const int lo = (quarter >= 2) ? (ql[k] >> 4) : (ql[k] & 15);
      const int q = lo | (((qh[k] >> (2 * quarter)) & 3) << 4);
      v[k] = __fmul_rn(ds, float(q - 32));
    }
  }
  __device__ static float load1(const uint8_t* row, int64_t c) {
    float v[8];
    load8(row, c & ~int64_t(7), v);
    return v[c & 7];
  }
};

__device__ __forceinline__ float fp8_scale(const WeightView& w, int64_t row, int64_t c) {
  return __ldg(w.scale + (row / w.block_rows) * w.scale_cols + c / w.block_cols);
}

// Elements c … c+7 of weight row `row` (pointer `rp`), block scales applied.
template <int DT>
__device__ __forceinline__ void load8s(const WeightView& w, const uint8_t* rp, int64_t row, int64_t c, float* v) {
  Dec<DT>::load8(rp, c, v);
  if constexpr (DT == kF8) {
    if (w.scale) {
      const float s0 = fp8_scale(w, row, c), s7 = fp8_scale(w, row, c + 7);
#pragma unroll
      for (int k = 0; k < 8; ++k) v[k] = __fmul_rn(v[k], s0 == s7 ? s0 : fp8_scale(w, row, c + k));
    }
  }
}
template <int DT>
__device__ __forceinline__ float load1s(const WeightView& w, const uint8_t* rp, int64_t row, int64_t c) {
  float v = Dec<DT>::load1(rp, c);
  if constexpr (DT == kF8) {
    if (w.scale) v = __fmul_rn(v, fp8_scale(w, row, c));
  }
  return v;
}

// Element (row, c) of a weight of any dtype, for the small vectors (norm weights, biases).
__device__ inline float load_any(const WeightView& w, int64_t row, int64_t c) {
  const uint8_t* rp = w.data + row * w.row_bytes;
  switch (w.dtype) {
    case kF32: return load1s<kF32>(w, rp, row, c);
    case kF16: return load1s<kF16>(w, rp, row, c);
    case kBF16: return load1s<kBF16>(w, rp, row, c);
    case kF8: return load1s<kF8>(w, rp, row, c);
    case kQ8_0: return load1s<kQ8_0>(w, rp, row, c);
    case kQ5_0: return load1s<kQ5_0>(w, rp, row, c);
    case kQ4_K: return load1s<kQ4_K>(w, rp, row, c);
    case kQ6_K: return load1s<kQ6_K>(w, rp, row, c);
    default: return 0.0f;
  }
}

// RoPE as the CPU backend does it: angle = inv_freq · pos in float32, cos/sin in double, × factor.
__device__ __forceinline__ void rope_cos_sin(const RopeArgs& r, int pair, int32_t pos, float& c, float& s) {
  const float angle = __fmul_rn(__ldg(r.inv_freq + pair), float(pos));
  double sd, cd;
  sincos(double(angle), &sd, &cd);
  c = __fmul_rn(float(cd), r.attention_factor);
  s = __fmul_rn(float(sd), r.attention_factor);
}

// Element e (< dim) of the rotated rope vector x[0, dim) at position pos.
__device__ __forceinline__ float rope_element(const RopeArgs& r, const float* x, int e, int dim, int32_t pos) {
  const int half = dim / 2;
  int pair, a, b;
  bool first;
  if (r.interleaved) {
    pair = e >> 1, a = 2 * pair, b = a + 1, first = (e & 1) == 0;
  } else {
    pair = e < half ? e : e - half, a = pair, b = pair + half, first = e < half;
  }
  float c, s;
  rope_cos_sin(r, pair, pos, c, s);
  const float x0 = x[a], x1 = x[b];
  return first ? __fsub_rn(__fmul_rn(x0, c), __fmul_rn(x1, s)) : __fadd_rn(__fmul_rn(x1, c), __fmul_rn(x0, s));
}

}  // namespace sibyl::backend::cuda::dev
