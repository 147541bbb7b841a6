// An MLA layer's weights and a paged batch, built identically on the CPU oracle and the Vulkan
// backend (test_vk_mla.cpp, test_vk_pool.cpp).
#pragma once
#include <algorithm>
#include <numeric>

#include "vk_test_util.h"

namespace sibyl::vktest {

struct MlaDims {
  int64_t H, R, dn, dr, dv;
  bool split;   // k_b + v_b instead of kv_b
  DType wtype;  // of the up-projections
  bool interleaved;
};

struct MlaWeightsBoth {
  MlaWeightsBoth(Backend& cpu, Backend& vk, const MlaDims& d, std::mt19937& rng) : dims(d) {
    std::vector<float> inv(static_cast<size_t>(d.dr / 2));
    for (size_t i = 0; i < inv.size(); ++i)  // per-pair frequencies as YaRN would blend them
      inv[i] = std::pow(10000.0f, -2.0f * static_cast<float>(i) / static_cast<float>(d.dr)) * (i % 3 ? 1.0f : 0.25f);
    freq = f32_both(cpu, vk, 1, d.dr / 2, inv);
    std::vector<float> nw = random_floats(static_cast<size_t>(d.R), rng, 0.3f);
    for (float& v : nw) v += 1.0f;
    hn = encode(DType::bf16, 1, d.R, nw);
    norm = upload_both(cpu, vk, hn);
    std::vector<float> kvb = random_floats(static_cast<size_t>(d.H * (d.dn + d.dv) * d.R), rng, 0.15f);
    std::vector<float> kb = random_floats(static_cast<size_t>(d.H * d.R * d.dn), rng, 0.15f);
    std::vector<float> vb = random_floats(static_cast<size_t>(d.H * d.dv * d.R), rng, 0.15f);
    const DType kvb_t = d.split ? DType::f32 : d.wtype, split_t = d.split ? d.wtype : DType::f32;
    h_kvb = encode(kvb_t, d.H * (d.dn + d.dv), d.R, kvb);
    h_kb = encode(split_t, d.H * d.R, d.dn, kb);
    h_vb = encode(split_t, d.H * d.dv, d.R, vb);
    kv_b = upload_both(cpu, vk, h_kvb);
    k_b = upload_both(cpu, vk, h_kb);
    v_b = upload_both(cpu, vk, h_vb);
  }
  backend::MlaWeights up(int s) {
    return dims.split ? backend::MlaWeights{nullptr, &side(k_b, s), &side(v_b, s)}
                      : backend::MlaWeights{&side(kv_b, s), nullptr, nullptr};
  }
  backend::RopeParams rope(int s) { return backend::RopeParams{&side(freq, s), 1.25f, dims.interleaved}; }
  backend::MlaShape shape() const {
    const int64_t qk = dims.dn + dims.dr;
    return {dims.H, dims.R, dims.dn, dims.dr, dims.dv, 1.0f / std::sqrt(static_cast<float>(qk)) * 1.1f};
  }
  int64_t width() const { return dims.R + dims.dr; }

  MlaDims dims;
  HostTensor hn, h_kvb, h_kb, h_vb;  // the CPU backend uses host weights in place: kept
  Pair freq, norm, kv_b, k_b, v_b;
};

// One step's rows: for each listed sequence (an index into the page table) positions
// [from, to), sequences in the listed order.
struct BatchRows {
  struct Seq {
    int32_t table_row;
    int64_t from, to;
    backend::MlaPath path = backend::MlaPath::absorbed;
  };
  std::vector<Seq> seqs;
};

// StepBatch tensors on both backends.
struct BatchBoth {
  BatchBoth(Backend& cpu, Backend& vk, const BatchRows& b, const std::vector<int32_t>& table, int64_t max_pages) {
    std::vector<int32_t> pos, seq;
    for (const BatchRows::Seq& s : b.seqs) {
      backend::SeqRows r;
      r.first_row = static_cast<int64_t>(pos.size());
      r.n_rows = s.to - s.from;
      r.path = s.path;
      r.expanded_context = s.path == backend::MlaPath::expanded ? s.to : 0;
      shape.push_back(r);
      for (int64_t p = s.from; p < s.to; ++p) {
        pos.push_back(static_cast<int32_t>(p));
        seq.push_back(s.table_row);
      }
    }
    rows = static_cast<int64_t>(pos.size());
    positions = i32_both(cpu, vk, rows, 1, pos);
    row_seq = i32_both(cpu, vk, rows, 1, seq);
    page_table = i32_both(cpu, vk, static_cast<int64_t>(table.size()) / max_pages, max_pages, table);
  }
  backend::StepBatch batch(int s) {
    backend::StepBatch b;
    b.positions = &side(positions, s);
    b.row_seq = &side(row_seq, s);
    b.page_table = &side(page_table, s);
    b.seqs = shape;
    return b;
  }
  int64_t rows = 0;
  std::vector<backend::SeqRows> shape;
  Pair positions, row_seq, page_table;
};

// Page tables for sequences of the given lengths: every page id of [0, n_pages) shuffled, so
// a sequence's pages are neither contiguous nor in order. Unused entries are -1.
inline std::vector<int32_t> shuffled_page_table(const std::vector<int64_t>& lengths, int64_t P, int64_t max_pages,
                                                int64_t n_pages, std::mt19937& rng) {
  std::vector<int32_t> ids(static_cast<size_t>(n_pages));
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);
  std::vector<int32_t> table(lengths.size() * static_cast<size_t>(max_pages), -1);
  size_t next = 0;
  for (size_t s = 0; s < lengths.size(); ++s)
    for (int64_t p = 0; p < (lengths[s] + P - 1) / P; ++p) table[s * static_cast<size_t>(max_pages) + static_cast<size_t>(p)] = ids.at(next++);
  return table;
}

}  // namespace sibyl::vktest
