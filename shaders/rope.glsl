// RoPE cos/sin, accurate for large angles. The CPU takes cos/sin of the float32 angle in
// double precision; GPU built-ins are only required to be accurate on [-π, π] (2^-11), so the
// angle is reduced here by π/2 split into six 6-bit parts (j·part is exact for |j| < 2^18,
// i.e. angles up to ~4e5 rad), then Cephes' float polynomials on [-π/4, π/4].

void rope_sincos(float a, out float s, out float c) {
  precise float j = round(a * 0.63661977236758134);
  precise float r = a - j * 1.5625;
  r = r - j * 0.00830078125;
  r = r - j * -4.410743713378906e-06;
  r = r - j * -4.377216100692749e-08;
  r = r - j * 6.002665031701326e-11;
  r = r - j * 7.389644451905042e-13;
  precise float z = r * r;
  precise float sr = ((-1.9515295891e-4 * z + 8.3321608736e-3) * z - 1.6666654611e-1) * z * r + r;
  precise float cr = ((2.443315711809948e-5 * z - 1.388731625493765e-3) * z + 4.166664568298827e-2) * z * z -
                     0.5 * z + 1.0;
  const int q = int(j) & 3;
  s = q == 0 ? sr : q == 1 ? cr : q == 2 ? -sr : -cr;
  c = q == 0 ? cr : q == 1 ? -sr : q == 2 ? -cr : sr;
}

// Element e of a rope vector of `dim` values after rotation for position `pos`; x(k) reads
// element k of the unrotated vector. `inv_freq` is the per-pair frequency of element e's pair.
// Pairs are (2i, 2i+1) when interleaved, else (i, i + dim/2) — as cpu rope_rotate.
uint rope_pair(uint e, uint dim, bool interleaved) { return interleaved ? e >> 1 : (e < dim / 2u ? e : e - dim / 2u); }

float rope_value(float x0, float x1, bool first, float inv_freq, int pos, float factor) {
  precise float angle = inv_freq * float(pos);  // float32, as the reference
  float s, c;
  rope_sincos(angle, s, c);
  precise float cc = c * factor;
  precise float ss = s * factor;
  precise float v = first ? x0 * cc - x1 * ss : x1 * cc + x0 * ss;
  return v;
}
