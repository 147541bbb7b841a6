// MLA over the paged latent pool against the CPU oracle: several sequences of different
// lengths in one step, shuffled non-contiguous pages smaller than the sequences, both paths
// per sequence in one step, both weight layouts, long contexts (split + merge).
#include <cstdio>

#include "vk_mla_setup.h"

namespace sibyl::vktest {
namespace {

using backend::MlaPath;
constexpr MlaPath kAbs = MlaPath::absorbed, kExp = MlaPath::expanded;

struct SeqSpec {
  int64_t context, n;  // the step's n rows end at position context - 1
  MlaPath path;
};

struct PagedCase {
  const char* name;
  MlaDims dims;
  int64_t page_tokens;
  std::vector<SeqSpec> seqs;
};

void PrintTo(const PagedCase& c, std::ostream* os) { *os << c.name; }

class VkMla : public VkVsCpu, public ::testing::WithParamInterface<PagedCase> {};

TEST_P(VkMla, PagedStoreThenAttentionMatchesCpu) {
  const PagedCase c = GetParam();
  const int64_t P = c.page_tokens;
  MlaWeightsBoth w(*cpu, *vk, c.dims, rng);
  const int64_t width = w.width(), qk = c.dims.dn + c.dims.dr;
  std::vector<int64_t> lengths;
  int64_t max_pages = 0, used = 0;
  for (const SeqSpec& s : c.seqs) {
    lengths.push_back(s.context);
    max_pages = std::max(max_pages, (s.context + P - 1) / P + 2);  // and unused (-1) entries
    used += (s.context + P - 1) / P;
  }
  const int64_t n_pages = used + 3;  // some pages nobody uses
  const std::vector<int32_t> table = shuffled_page_table(lengths, P, max_pages, n_pages, rng);
  std::unique_ptr<backend::KvPool> pool[2] = {cpu->create_kv_pool(2, width, P), vk->create_kv_pool(2, width, P)};
  for (auto& p : pool) p->grow(n_pages);

  // The history, in multi-sequence store steps of uneven chunks; sequences listed in reverse
  // so that row_seq, not the order in the batch, picks the page-table row.
  for (int64_t at = 0, chunk = 7;; at += chunk, chunk = chunk * 3 + 1) {
    BatchRows rows;
    for (size_t s = c.seqs.size(); s-- > 0;) {
      const int64_t hist = c.seqs[s].context - c.seqs[s].n;
      if (at < hist) rows.seqs.push_back({static_cast<int32_t>(s), at, std::min(at + chunk, hist)});
    }
    if (rows.seqs.empty()) break;
    BatchBoth b(*cpu, *vk, rows, table, max_pages);
    Pair kv = f32_both(*cpu, *vk, b.rows, width, random_floats(static_cast<size_t>(b.rows * width), rng));
    both([&](Backend& be, int s) { be.mla_store(*pool[s], 1, side(kv, s), side(w.norm, s), 1e-6f, b.batch(s), w.rope(s)); });
  }

  // The step: each sequence's new rows stored, then attended by the sequence's path.
  BatchRows rows;
  for (size_t s = 0; s < c.seqs.size(); ++s)
    rows.seqs.push_back({static_cast<int32_t>(s), c.seqs[s].context - c.seqs[s].n, c.seqs[s].context, c.seqs[s].path});
  BatchBoth b(*cpu, *vk, rows, table, max_pages);
  Pair kv = f32_both(*cpu, *vk, b.rows, width, random_floats(static_cast<size_t>(b.rows * width), rng));
  Pair q = f32_both(*cpu, *vk, b.rows, c.dims.H * qk, random_floats(static_cast<size_t>(b.rows * c.dims.H * qk), rng));
  Pair out = alloc_both(*cpu, *vk, DType::f32, b.rows, c.dims.H * c.dims.dv);
  both([&](Backend& be, int s) {
    be.mla_store(*pool[s], 1, side(kv, s), side(w.norm, s), 1e-6f, b.batch(s), w.rope(s));
    be.mla_attention(side(out, s), side(q, s), *pool[s], 1, b.batch(s), w.up(s), w.shape(), w.rope(s));
  });
  const std::vector<float> got = read_f32(*vk, *out.vk), want = read_f32(*cpu, *out.cpu);
  const double err = rel_error(got, want);
  std::printf("mla %-30s max relative error %.3g\n", c.name, err);
  EXPECT_LT(err, 2e-5);
  const size_t cols = static_cast<size_t>(out.cpu->cols());
  for (const backend::SeqRows& s : b.shape) {  // each sequence on its own: one wrong row shows
    auto slice = [&](const std::vector<float>& v) {
      return std::vector<float>(v.begin() + static_cast<std::ptrdiff_t>(s.first_row * cols),
                                v.begin() + static_cast<std::ptrdiff_t>((s.first_row + s.n_rows) * cols));
    };
    EXPECT_LT(rel_error(slice(got), slice(want)), 2e-5)
        << "rows from " << s.first_row << (s.path == kAbs ? " absorbed" : " expanded");
  }

  // Every stored row landed at its page, through the shuffled table.
  for (size_t s = 0; s < c.seqs.size(); ++s)
    for (int64_t p = 0; p * P < c.seqs[s].context; ++p) {
      const int64_t page = table[s * static_cast<size_t>(max_pages) + static_cast<size_t>(p)];
      const int64_t n = std::min(P, c.seqs[s].context - p * P);
      std::vector<float> a(static_cast<size_t>(n * width)), e(a.size());
      vk->read_kv_rows(*pool[1], 1, page, n, a.data());
      cpu->read_kv_rows(*pool[0], 1, page, n, e.data());
      ASSERT_LT(rel_error(a, e), 1e-6) << "sequence " << s << " page " << p;
    }
}

std::vector<PagedCase> paged_cases() {
  const MlaDims small{4, 64, 32, 16, 32, false, DType::f32, true};
  MlaDims bf16 = small, split = small, split_f16 = small;
  bf16.wtype = DType::bf16;
  split.split = true;
  split.interleaved = false;
  split_f16.split = true;
  split_f16.wtype = DType::f16;
  split_f16.interleaved = false;
  return {
      {"decode_batch_p16", small, 16, {{40, 1, kAbs}, {3, 1, kAbs}, {17, 1, kAbs}, {1, 1, kAbs}, {16, 1, kAbs}}},
      {"mixed_paths_p4", bf16, 4, {{45, 20, kExp}, {30, 1, kAbs}, {9, 3, kAbs}, {22, 22, kExp}, {13, 2, kAbs}}},
      {"split_mixed_p16", split, 16, {{33, 5, kAbs}, {50, 8, kExp}, {16, 1, kAbs}}},
      {"split_q8_0_prefill_p4", {3, 64, 32, 16, 24, true, DType::q8_0, true}, 4, {{70, 70, kExp}, {5, 5, kAbs}}},
      {"kvb_q6k_p16", {2, 256, 32, 16, 32, false, DType::q6_k, true}, 16, {{90, 9, kExp}, {64, 1, kAbs}}},
      {"v3_shape_decode_p64", {2, 512, 128, 64, 128, true, DType::bf16, true}, 64, {{300, 1, kAbs}, {129, 1, kAbs}}},
      {"long_decode_split_merge_p16", bf16, 16, {{3000, 1, kAbs}, {700, 1, kAbs}, {65, 1, kAbs}}},
      {"long_prefill_on_cache_p64", split_f16, 64, {{2100, 24, kExp}, {1000, 1, kAbs}}},
  };
}

INSTANTIATE_TEST_SUITE_P(Cases, VkMla, ::testing::ValuesIn(paged_cases()),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace sibyl::vktest
