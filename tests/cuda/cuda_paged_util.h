// Step batches over a paged pool for the CUDA tests: sequences of different lengths whose pages
// are drawn from a shuffled permutation of the pool's pages (never contiguous, never in order),
// with page-table rows padded by -1, and the same batch on the CPU and CUDA backends.
#pragma once
#include <algorithm>
#include <numeric>

#include "cuda_test_util.h"

namespace sibyl::cuda_test {

using backend::MlaPath;
using backend::SeqRows;
using backend::StepBatch;

// One sequence of a step: positions [0, cached) are already in the pool; the step adds n rows.
struct SeqSpec {
  int64_t cached, n;
  MlaPath path = MlaPath::absorbed;
};

// Where every sequence's positions live, and the host contents of a step's batch tensors.
struct PagedLayout {
  int64_t page_tokens = 0, max_pages = 0, n_pages = 0;
  std::vector<int32_t> table;  // [n_seqs, max_pages]
  std::vector<std::vector<int32_t>> pages;  // per sequence, in position order

  // The pool row index of (seq, pos), for checks from the host.
  int64_t row_of(int64_t seq, int64_t pos) const {
    return int64_t(pages[size_t(seq)][size_t(pos / page_tokens)]) * page_tokens + pos % page_tokens;
  }
};

// Pages for every sequence's cached + n positions, `spare` pages more in the pool (never used) and
// `slack` unused -1 slots at the end of each page table row.
inline PagedLayout make_layout(std::mt19937& rng, const std::vector<SeqSpec>& specs, int64_t page_tokens,
                               int64_t spare = 3, int64_t slack = 1) {
  PagedLayout l;
  l.page_tokens = page_tokens;
  int64_t total = 0;
  for (const SeqSpec& s : specs) {
    const int64_t need = (s.cached + s.n + page_tokens - 1) / page_tokens;
    l.max_pages = std::max(l.max_pages, need);
    total += need;
  }
  l.max_pages += slack;
  l.n_pages = total + spare;
  std::vector<int32_t> perm(static_cast<size_t>(l.n_pages));
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  l.table.assign(specs.size() * static_cast<size_t>(l.max_pages), -1);
  size_t next = 0;
  for (size_t k = 0; k < specs.size(); ++k) {
    const int64_t need = (specs[k].cached + specs[k].n + page_tokens - 1) / page_tokens;
    l.pages.emplace_back();
    for (int64_t j = 0; j < need; ++j) {
      l.pages.back().push_back(perm[next]);
      l.table[k * size_t(l.max_pages) + size_t(j)] = perm[next++];
    }
  }
  return l;
}

// The host side of a batch: per-row positions and sequences, and the SeqRows shape.
struct HostBatch {
  std::vector<int32_t> positions, row_seq;
  std::vector<SeqRows> seqs;
  int64_t rows() const { return int64_t(positions.size()); }
};

// The step rows of every sequence: positions [cached, cached + n). Expanded sequences get an
// expanded_context `extra` past their last position (an upper bound, as the engine may give),
// capped by the page table.
inline HostBatch step_rows(const std::vector<SeqSpec>& specs, const PagedLayout& l, int64_t extra = 0) {
  HostBatch b;
  for (size_t k = 0; k < specs.size(); ++k) {
    SeqRows r;
    r.first_row = b.rows();
    r.n_rows = specs[k].n;
    r.path = specs[k].path;
    if (r.path == MlaPath::expanded)
      r.expanded_context = std::min(specs[k].cached + specs[k].n + extra, l.max_pages * l.page_tokens);
    for (int64_t i = 0; i < specs[k].n; ++i) {
      b.positions.push_back(int32_t(specs[k].cached + i));
      b.row_seq.push_back(int32_t(k));
    }
    b.seqs.push_back(r);
  }
  return b;
}

// The rows that store every sequence's cached positions [0, cached).
inline HostBatch fill_rows(const std::vector<SeqSpec>& specs) {
  std::vector<SeqSpec> fill;
  for (const SeqSpec& s : specs) fill.push_back({0, s.cached, MlaPath::absorbed});
  HostBatch b;
  for (size_t k = 0; k < fill.size(); ++k) {
    b.seqs.push_back(SeqRows{b.rows(), fill[k].n, MlaPath::absorbed, 0});
    for (int64_t i = 0; i < fill[k].n; ++i) {
      b.positions.push_back(int32_t(i));
      b.row_seq.push_back(int32_t(k));
    }
  }
  return b;
}

// A batch's tensors on one backend (any backend: the CUDA-only tests use it too).
struct BatchTensors {
  std::unique_ptr<Tensor> positions, row_seq, page_table;
  StepBatch batch;

  BatchTensors(Backend& be, const HostBatch& hb, const PagedLayout& l) {
    const int64_t n = std::max<int64_t>(hb.rows(), 1), n_seqs = std::max<int64_t>(int64_t(hb.seqs.size()), 1);
    positions = be.alloc(DType::i32, n, 1);
    row_seq = be.alloc(DType::i32, n, 1);
    page_table = be.alloc(DType::i32, n_seqs, l.max_pages);
    write(be, hb, l);
    batch.positions = positions.get();
    batch.row_seq = row_seq.get();
    batch.page_table = page_table.get();
    batch.seqs = hb.seqs;
  }
  // New contents, same shape (what a replayed step gets).
  void write(Backend& be, const HostBatch& hb, const PagedLayout& l) {
    if (hb.rows()) {
      be.write(*positions, hb.positions.data(), hb.positions.size() * 4);
      be.write(*row_seq, hb.row_seq.data(), hb.row_seq.size() * 4);
    }
    if (!l.table.empty()) be.write(*page_table, l.table.data(), l.table.size() * 4);
  }
};

// Every page of `layer` read back ([n_pages · page_tokens, width]).
inline std::vector<float> read_layer(Backend& be, const backend::KvPool& pool, int64_t layer, int64_t width) {
  const int64_t P = pool.page_tokens();
  std::vector<float> out(static_cast<size_t>(pool.n_pages() * P * width));
  for (int64_t p = 0; p < pool.n_pages(); ++p) be.read_kv_rows(pool, layer, p, P, out.data() + p * P * width);
  return out;
}

// The error code and message of f(), or none.
template <class F>
engine::Errc failure_of(F&& f, std::string* message = nullptr) {
  try {
    f();
  } catch (const engine::Failure& e) {
    if (message) *message = e.what();
    return e.code();
  }
  return engine::Errc{};
}

}  // namespace sibyl::cuda_test
