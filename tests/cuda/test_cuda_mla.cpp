// MLA on the CUDA backend against the CPU backend, over a paged pool: one sequence through every
// shape, layout and path (including sequence splits), then batches of several sequences of
// different lengths in one step, with shuffled non-contiguous pages, small pages (4, 16 tokens)
// and absorbed and expanded sequences mixed in one step. The pool contents are compared too.
#include "cuda_paged_util.h"

namespace sibyl::cuda_test {
namespace {

struct MlaShapeCase {
  const char* name;
  int64_t H, R, dn, dr, dv;
};

struct MlaCase {
  std::string name;
  MlaShapeCase shape;
  bool split;  // k_b/v_b instead of kv_b
  bool interleaved;
  DType wtype;
  std::vector<SeqSpec> seqs;
  int64_t page_tokens;
};

// Stores each sequence's cached rows, then runs one step (store + attention) on both backends;
// returns the attention outputs and layer 1 of both pools, after checking layer 0 stayed empty.
void run_case(const MlaCase& c) {
  const uint32_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  Pair p;
  const MlaShapeCase& s = c.shape;
  const int64_t W = s.R + s.dr, qk = s.dn + s.dr;
  std::vector<float> inv_freq(static_cast<size_t>(s.dr / 2));
  for (size_t k = 0; k < inv_freq.size(); ++k) inv_freq[k] = std::pow(10000.0f, -2.0f * float(k) / float(s.dr)) * 0.7f;
  auto freq = p.input(DType::f32, 1, s.dr / 2, inv_freq.data());
  backend::RopeParams rc{freq.cpu, 1.3f, c.interleaved}, rg{freq.gpu, 1.3f, c.interleaved};
  auto norm = p.weight(rng, DType::f32, 1, s.R);
  Pair::Two kv_b{}, k_b{}, v_b{};
  if (c.split) {
    k_b = p.weight(rng, c.wtype, s.H * s.R, s.dn);
    v_b = p.weight(rng, c.wtype, s.H * s.dv, s.R);
  } else {
    kv_b = p.weight(rng, c.wtype, s.H * (s.dn + s.dv), s.R);
  }

  const PagedLayout layout = make_layout(rng, c.seqs, c.page_tokens);
  const HostBatch fill = fill_rows(c.seqs), step = step_rows(c.seqs, layout, 3);
  auto pool_c = p.cpu->create_kv_pool(2, W, c.page_tokens), pool_g = p.gpu->create_kv_pool(2, W, c.page_tokens);
  pool_c->grow(layout.n_pages);
  pool_g->grow(layout.n_pages);
  BatchTensors fill_c(*p.cpu, fill, layout), fill_g(*p.gpu, fill, layout);
  BatchTensors step_c(*p.cpu, step, layout), step_g(*p.gpu, step, layout);
  auto fkv = p.floats(rng, std::max<int64_t>(fill.rows(), 1), W);
  auto skv = p.floats(rng, step.rows(), W);
  auto q = p.floats(rng, step.rows(), s.H * qk);
  auto out = p.output(DType::f32, step.rows(), s.H * s.dv);
  backend::MlaShape shape{s.H, s.R, s.dn, s.dr, s.dv, 1.0f / std::sqrt(float(qk))};

  p.run([&](Backend& b, bool g) {
    backend::KvPool& pool = g ? *pool_g : *pool_c;
    const backend::RopeParams& rope = g ? rg : rc;
    if (fill.rows()) b.mla_store(pool, 1, pick(fkv, g), pick(norm, g), 1e-6f, (g ? fill_g : fill_c).batch, rope);
    const StepBatch& batch = (g ? step_g : step_c).batch;
    b.mla_store(pool, 1, pick(skv, g), pick(norm, g), 1e-6f, batch, rope);
    backend::MlaWeights up;
    if (c.split) {
      up.k_b = &pick(k_b, g);
      up.v_b = &pick(v_b, g);
    } else {
      up.kv_b = &pick(kv_b, g);
    }
    b.mla_attention(pick(out, g), pick(q, g), pool, 1, batch, up, shape, rope);
  });
  auto [ref, got] = p.read(out);
  EXPECT_LT(rel_error(got, ref), 5e-5) << c.name;
  // Per sequence too, so a failure names the sequence that went wrong.
  for (const SeqRows& r : step.seqs) {
    const auto cols = size_t(s.H * s.dv), b0 = size_t(r.first_row) * cols, b1 = size_t(r.first_row + r.n_rows) * cols;
    EXPECT_LT(rel_error(std::vector<float>(got.begin() + b0, got.begin() + b1),
                        std::vector<float>(ref.begin() + b0, ref.begin() + b1)),
              5e-5)
        << c.name << ": sequence at row " << r.first_row << " ("
        << (r.path == MlaPath::absorbed ? "absorbed" : "expanded") << ")";
  }
  EXPECT_LT(rel_error(read_layer(*p.gpu, *pool_g, 1, W), read_layer(*p.cpu, *pool_c, 1, W)), 1e-5)
      << c.name << ": stored rows differ";
  const std::vector<float> layer0 = read_layer(*p.gpu, *pool_g, 0, W);
  EXPECT_TRUE(std::all_of(layer0.begin(), layer0.end(), [](float v) { return v == 0.0f; }))
      << c.name << ": a store reached another layer";
}

class CudaMla : public ::testing::TestWithParam<MlaCase> {};

TEST_P(CudaMla, StoreAndAttentionMatchCpu) {
  SKIP_WITHOUT_CUDA();
  run_case(GetParam());
}

const MlaShapeCase kTiny{"tiny", 4, 64, 32, 16, 32}, kV3{"v3", 8, 512, 128, 64, 128}, kOdd{"odd", 3, 40, 24, 8, 20};

// One sequence: every shape, both layouts and paths, prefill / decode / chunk / long (splits).
std::vector<MlaCase> single_sequence_cases() {
  std::vector<MlaCase> out;
  struct Steps {
    const char* name;
    int64_t cached, n;
  };
  const Steps steps[] = {{"prefill", 0, 21}, {"decode", 40, 1}, {"chunk", 12, 5}, {"long", 700, 2}};
  for (const MlaShapeCase& s : {kTiny, kV3, kOdd})
    for (const Steps& st : steps)
      for (bool split : {false, true})
        for (MlaPath path : {MlaPath::absorbed, MlaPath::expanded}) {
          const bool inter = std::string(s.name) != "odd";  // halves-rope on the odd shape
          out.push_back({std::string(s.name) + "_" + st.name + (split ? "_split" : "_kvb") +
                             (path == MlaPath::absorbed ? "_absorbed" : "_expanded"),
                         s, split, inter, DType::bf16, {{st.cached, st.n, path}}, 16});
        }
  // Quantized up-projections (GGUF files: k_b / v_b as Q8_0 or Q6_K).
  out.push_back({"q8_0_absorbed", kTiny, true, true, DType::q8_0, {{30, 1, MlaPath::absorbed}}, 16});
  out.push_back({"q8_0_expanded", kTiny, true, true, DType::q8_0, {{0, 40, MlaPath::expanded}}, 16});
  out.push_back({"q6_k_absorbed", {"wide", 2, 256, 256, 16, 32}, false, true, DType::q6_k, {{30, 3, MlaPath::absorbed}}, 16});
  return out;
}

// Several sequences in one step.
std::vector<MlaCase> batch_cases() {
  const MlaPath A = MlaPath::absorbed, E = MlaPath::expanded;
  struct Batch {
    const char* name;
    std::vector<SeqSpec> seqs;
  };
  const Batch batches[] = {
      // A decode step: one row per sequence, lengths from 1 to 701 (the longest splits).
      {"decode", {{0, 1, A}, {6, 1, A}, {32, 1, A}, {299, 1, A}, {700, 1, A}}},
      // Prefill chunks and decodes together, both paths interleaved.
      {"mixed", {{40, 1, A}, {12, 5, E}, {0, 21, E}, {3, 2, A}, {100, 1, A}, {63, 9, E}}},
      // Several prefills.
      {"prefill", {{0, 9, E}, {0, 33, E}, {17, 40, E}}},
      // Multi-row sequences on the absorbed path, one sequence without rows.
      {"absorbed_chunks", {{12, 5, A}, {0, 21, A}, {5, 0, A}, {64, 3, A}}},
  };
  std::vector<MlaCase> out;
  for (const Batch& b : batches)
    for (int64_t P : {4, 16, 64})
      for (const MlaShapeCase& s : {kTiny, kV3}) {
        const bool split = (P == 16) != (s.R == kV3.R);  // both layouts for each shape and page size
        out.push_back({std::string(b.name) + "_P" + std::to_string(P) + "_" + s.name + (split ? "_split" : "_kvb"), s,
                       split, true, DType::bf16, b.seqs, P});
      }
  return out;
}

std::string case_name(const ::testing::TestParamInfo<MlaCase>& info) {
  return std::to_string(info.index) + "_" + info.param.name;
}

INSTANTIATE_TEST_SUITE_P(OneSequence, CudaMla, ::testing::ValuesIn(single_sequence_cases()), case_name);
INSTANTIATE_TEST_SUITE_P(Batches, CudaMla, ::testing::ValuesIn(batch_cases()), case_name);

}  // namespace
}  // namespace sibyl::cuda_test
