// The grouped tile loop of tiles_kquant.cpp's Q4_K / Q6_K tiles, written once for every SIMD
// level. A function's target attribute cannot be a template argument, so tiles_kquant.cpp
// includes this file once per level, each time inside a namespace of its own and with
// SIBYL_KQ_TARGET defined as that level's target attribute: the loop and the level's block code
// (K::block, always_inline) then inline into one function compiled for that level.
// No include guard: it is meant to be included more than once.
//
// K (the level's block code for one format) provides kBytes (bytes per weight block), a
// constructor that sets up its constants, block<NX>(p, x, b, ai) — the integer sums of weight
// block p against the NX activation rows' block b into ai[r], returning the int16 weights of
// the rows' 16 sums — and step<NX, NW>(acc, blk, x, b, isum, msum), the float step of block b.
//
// The blocks go in groups. Within a group, one weight row at a time: its stretch of blocks is
// read front to back (the tile's rows are adjacent, so a 1×4 tile reads one sequential run of
// memory; interleaving the four rows block by block halves what the memory prefetchers
// deliver), each unpacked chunk meets all NX activation rows while in registers, and the pairs'
// integer vectors (isum: scaled dot products, msum: min / offset terms) wait in L1. Then, block
// by block in order, one reduction and one float step per activation row for its NW pairs
// together.

template <class K>
struct Grouped {
  template <int NX, int NW>
  SIBYL_KQ_TARGET static void run(const Tile& t) {
    const int64_t nb = t.k / kQK;
    constexpr int G = kGroup<NX>;
    const K k;
    Act x[NX];
    __m128 acc[NX];
    __m256i isum[G][NX][NW], msum[G][NX][NW];
    for (int r = 0; r < NX; ++r) {
      x[r] = act_row(t, r);
      acc[r] = _mm_setzero_ps();
    }
    for (int64_t b0 = 0; b0 < nb; b0 += G) {
      const int gn = static_cast<int>(std::min<int64_t>(G, nb - b0));
      for (int c = 0; c < NW; ++c)
        for (int g = 0; g < gn; ++g) {
          const int64_t b = b0 + g;
          __m256i ai[NX];
          const __m256i m16 = k.template block<NX>(t.w[c] + b * K::kBytes, x, b, ai);
          for (int r = 0; r < NX; ++r) {
            isum[g][r][c] = ai[r];
            msum[g][r][c] =
                _mm256_madd_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[r].s + b * 16)), m16);
          }
        }
      for (int g = 0; g < gn; ++g) {
        const int64_t b = b0 + g;
        const uint8_t* blk[NW];
        for (int c = 0; c < NW; ++c) blk[c] = t.w[c] + b * K::kBytes;
        K::template step<NX, NW>(acc, blk, x, b, isum[g], msum[g]);
      }
    }
    store<NX, NW>(t, acc);
  }
};
