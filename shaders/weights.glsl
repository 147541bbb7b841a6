// Reading weights of every stored dtype from a buffer of 32-bit words, dequantising in
// registers exactly as engine/core/quant.cpp does (the same float operations; `precise` keeps
// them unfused). No 16-bit storage needed. Before including, define
//   WORD(i)  the uint word i of the weight buffer.
// Buffers are bound with 16 spare bytes, so reading one word past a row's last byte is safe.

// engine::DType values
#define DT_F32 0u
#define DT_F16 1u
#define DT_BF16 2u
#define DT_F8 5u
#define DT_Q8_0 6u
#define DT_Q5_0 7u
#define DT_Q4_K 8u
#define DT_Q6_K 9u

struct WDesc {
  uint dtype, row_bytes;
  uint scale_word, block_rows, block_cols, col_blocks;  // f8_e4m3: float32 block scales after the data
};

uint w_byte(uint o) { return (WORD(o >> 2) >> ((o & 3u) * 8u)) & 0xffu; }
uint w_half(uint o) { return (WORD(o >> 2) >> ((o & 2u) * 8u)) & 0xffffu; }  // o even
int w_i8(uint o) { return bitfieldExtract(int(w_byte(o)), 0, 8); }
// Four bytes from byte o (any alignment), little-endian.
uint w_bytes4(uint o) {
  const uint s = (o & 3u) * 8u;
  const uint lo = WORD(o >> 2);
  if (s == 0u) return lo;
  return (lo >> s) | (WORD((o >> 2) + 1u) << (32u - s));
}
int sbyte(uint v, uint k) { return bitfieldExtract(int(v), int(k * 8u), 8); }

// IEEE half → float, subnormals included (not unpackHalf2x16, whose denormal handling varies).
float f16f(uint h) {
  const uint sign = (h & 0x8000u) << 16;
  const uint e = (h >> 10) & 31u, m = h & 0x3ffu;
  if (e == 0u) return uintBitsToFloat(sign | floatBitsToUint(float(m) * 5.9604644775390625e-8));
  if (e == 31u) return uintBitsToFloat(sign | 0x7f800000u | (m << 13));
  return uintBitsToFloat(sign | (((h & 0x7fffu) << 13) + (112u << 23)));
}
float bf16f(uint h) { return uintBitsToFloat(h << 16); }
// float8 e4m3fn (no infinities; S.1111.111 is NaN).
float f8f(uint b) {
  const uint e = (b >> 3) & 15u, m = b & 7u;
  float v;
  if (e == 0u) v = float(m) * 0.001953125;
  else if (e == 15u && m == 7u) v = uintBitsToFloat(0x7fc00000u);
  else v = uintBitsToFloat(((e + 120u) << 23) | (m << 20));
  return (b & 0x80u) != 0u ? -v : v;
}

float w_scale(WDesc d, uint row, uint col) {
  return uintBitsToFloat(WORD(d.scale_word + (row / d.block_rows) * d.col_blocks + col / d.block_cols));
}

// Q4_K: 6-bit scale and min of sub-block j (0…7) from the 12 bytes at o.
void k4_scale_min(uint o, uint j, out uint sc, out uint mn) {
  if (j < 4u) {
    sc = w_byte(o + j) & 63u;
    mn = w_byte(o + j + 4u) & 63u;
  } else {
    sc = (w_byte(o + j + 4u) & 15u) | ((w_byte(o + j - 4u) >> 6) << 4);
    mn = (w_byte(o + j + 4u) >> 4) | ((w_byte(o + j) >> 6) << 4);
  }
}

// Element (row, col) of the weight.
float w_get(WDesc d, uint row, uint col) {
  const uint dt = d.dtype;
  const uint rb = row * d.row_bytes;
  if (dt == DT_F32) return uintBitsToFloat(WORD((rb >> 2) + col));
  if (dt == DT_F16) return f16f(w_half(rb + col * 2u));
  if (dt == DT_BF16) return bf16f(w_half(rb + col * 2u));
  if (dt == DT_F8) {
    precise float v = f8f(w_byte(rb + col)) * w_scale(d, row, col);
    return v;
  }
  if (dt == DT_Q8_0) {
    const uint b = rb + (col >> 5) * 34u;
    precise float v = float(w_i8(b + 2u + (col & 31u))) * f16f(w_half(b));
    return v;
  }
  if (dt == DT_Q5_0) {
    const uint b = rb + (col >> 5) * 22u, j = col & 31u;
    const uint qh = w_half(b + 2u) | (w_half(b + 4u) << 16);
    const uint q = ((w_byte(b + 6u + (j & 15u)) >> (j < 16u ? 0u : 4u)) & 15u) | (((qh >> j) & 1u) << 4);
    precise float v = float(int(q) - 16) * f16f(w_half(b));
    return v;
  }
  if (dt == DT_Q4_K) {
    const uint b = rb + (col >> 8) * 144u, w = col & 255u;
    const uint c = w >> 6, part = (w >> 5) & 1u, l = w & 31u;
    uint sc, mn;
    k4_scale_min(b + 4u, 2u * c + part, sc, mn);
    precise float d1 = f16f(w_half(b)) * float(sc);
    precise float o1 = f16f(w_half(b + 2u)) * float(mn);
    const uint q = (w_byte(b + 16u + 32u * c + l) >> (4u * part)) & 15u;
    precise float v = d1 * float(q) - o1;
    return v;
  }
  if (dt == DT_Q6_K) {
    const uint b = rb + (col >> 8) * 210u, w = col & 255u;
    const uint h = w >> 7, r = w & 127u, qd = r >> 5, l = r & 31u;
    precise float d0 = f16f(w_half(b + 208u)) * float(w_i8(b + 192u + 8u * h + (l >> 4) + 2u * qd));
    const uint lo = (w_byte(b + 64u * h + l + 32u * (qd & 1u)) >> (qd >= 2u ? 4u : 0u)) & 15u;
    const uint hi = (w_byte(b + 128u + 32u * h + l) >> (2u * qd)) & 3u;
    precise float v = d0 * float(int(lo | (hi << 4)) - 32);
    return v;
  }
  return 0.0;
}

// Elements col … col+3 of a row (col a multiple of 4, col + 3 < cols): one block header each.
vec4 w_get4(WDesc d, uint row, uint col) {
  const uint dt = d.dtype;
  const uint rb = row * d.row_bytes;
  if (dt == DT_F32) {
    const uint i = (rb >> 2) + col;
    return vec4(uintBitsToFloat(WORD(i)), uintBitsToFloat(WORD(i + 1u)), uintBitsToFloat(WORD(i + 2u)),
                uintBitsToFloat(WORD(i + 3u)));
  }
  if (dt == DT_F16 || dt == DT_BF16) {
    const uint o = rb + col * 2u;
    const uint a = w_bytes4(o), b = w_bytes4(o + 4u);
    if (dt == DT_BF16)
      return vec4(uintBitsToFloat(a << 16), uintBitsToFloat(a & 0xffff0000u), uintBitsToFloat(b << 16),
                  uintBitsToFloat(b & 0xffff0000u));
    return vec4(f16f(a & 0xffffu), f16f(a >> 16), f16f(b & 0xffffu), f16f(b >> 16));
  }
  if (dt == DT_F8) {
    const uint q = w_bytes4(rb + col);
    precise vec4 v = vec4(f8f(q & 0xffu), f8f((q >> 8) & 0xffu), f8f((q >> 16) & 0xffu), f8f(q >> 24)) *
                     vec4(w_scale(d, row, col), w_scale(d, row, col + 1u), w_scale(d, row, col + 2u),
                          w_scale(d, row, col + 3u));
    return v;
  }
  if (dt == DT_Q8_0) {
    const uint b = rb + (col >> 5) * 34u;
    const uint q = w_bytes4(b + 2u + (col & 31u));
    precise vec4 v = vec4(sbyte(q, 0u), sbyte(q, 1u), sbyte(q, 2u), sbyte(q, 3u)) * f16f(w_half(b));
    return v;
  }
  if (dt == DT_Q5_0) {
    const uint b = rb + (col >> 5) * 22u, j = col & 31u;
    const uint qh = (w_half(b + 2u) | (w_half(b + 4u) << 16)) >> j;
    const uint qs = w_bytes4(b + 6u + (j & 15u)) >> (j < 16u ? 0u : 4u);
    const ivec4 q = ivec4((qs & 15u) | ((qh & 1u) << 4), ((qs >> 8) & 15u) | (((qh >> 1) & 1u) << 4),
                          ((qs >> 16) & 15u) | (((qh >> 2) & 1u) << 4), ((qs >> 24) & 15u) | (((qh >> 3) & 1u) << 4));
    precise vec4 v = vec4(q - 16) * f16f(w_half(b));
    return v;
  }
  if (dt == DT_Q4_K) {
    const uint b = rb + (col >> 8) * 144u, w = col & 255u;
    const uint c = w >> 6, part = (w >> 5) & 1u, l = w & 31u;
    uint sc, mn;
    k4_scale_min(b + 4u, 2u * c + part, sc, mn);
    precise float d1 = f16f(w_half(b)) * float(sc);
    precise float o1 = f16f(w_half(b + 2u)) * float(mn);
    const uint q = w_bytes4(b + 16u + 32u * c + l) >> (4u * part);
    precise vec4 v = d1 * vec4(q & 15u, (q >> 8) & 15u, (q >> 16) & 15u, (q >> 24) & 15u) - o1;
    return v;
  }
  if (dt == DT_Q6_K) {
    const uint b = rb + (col >> 8) * 210u, w = col & 255u;
    const uint h = w >> 7, r = w & 127u, qd = r >> 5, l = r & 31u;
    precise float d0 = f16f(w_half(b + 208u)) * float(w_i8(b + 192u + 8u * h + (l >> 4) + 2u * qd));
    const uint lo = w_bytes4(b + 64u * h + l + 32u * (qd & 1u)) >> (qd >= 2u ? 4u : 0u);
    const uint hi = w_bytes4(b + 128u + 32u * h + l) >> (2u * qd);
    const ivec4 q = ivec4((lo & 15u) | ((hi & 3u) << 4), ((lo >> 8) & 15u) | (((hi >> 8) & 3u) << 4),
                          ((lo >> 16) & 15u) | (((hi >> 16) & 3u) << 4), ((lo >> 24) & 15u) | (((hi >> 24) & 3u) << 4));
    precise vec4 v = d0 * vec4(q - 32);
    return v;
  }
  return vec4(0.0);
}
