// The multi-token-prediction layer: loading, and its logits against the reference
// (tests/data/tiny-reasoner-mtp: three sequences of shared/models/tiny-reasoner's
// mtp.reference.safetensors, row j = the MTP prediction of token j + 2).
#include <gtest/gtest.h>

#include "fixture_util.h"
#include "session.h"

namespace sibyl::engine::test {
namespace {

std::string reasoner_dir() { return data_dir() + "/../../models/tiny-reasoner"; }

std::shared_ptr<Model> load_reasoner(bool mtp, backend::Precision precision = backend::Precision::exact) {
  ModelLoadOptions o;
  o.backend = backend::BackendKind::cpu;
  o.backend_options.precision = precision;
  o.mtp = mtp;
  return Model::load(reasoner_dir(), o);
}

double max_abs_diff(const float* a, const float* b, size_t n) {
  double m = 0;
  for (size_t i = 0; i < n; ++i) m = std::max(m, std::abs(static_cast<double>(a[i]) - b[i]));
  return m;
}

// The MTP logits of every position of `tokens`: the main model over all of them, then the MTP
// layer over rows p = 1 … T-1 (t_p with h_{p-1}) in chunks of `chunk` rows.
std::vector<float> mtp_logits(const std::shared_ptr<Model>& m, const std::vector<int32_t>& tokens, int64_t chunk) {
  Session s(m, {});
  const auto T = static_cast<int64_t>(tokens.size());
  const int64_t H = m->config().hidden_size;
  std::lock_guard lock(m->step_mutex());
  std::vector<PageCopy> copies;
  EXPECT_TRUE(s.reserve(*m, T, copies));
  std::vector<float> logits, hidden, out;
  m->forward({s.step_for(tokens.data(), T, LogitsMode::none, AttentionPath::automatic)}, logits, nullptr, &hidden);
  s.commit(*m, tokens.data(), T, logits.data(), 0);
  for (int64_t p = 1; p < T; p += chunk) {
    SeqStep q = s.step_for(tokens.data() + p, std::min(chunk, T - p), LogitsMode::all, AttentionPath::automatic);
    q.pos0 = p;
    q.hidden = hidden.data() + (p - 1) * H;
    m->forward_mtp({q}, logits);
    out.insert(out.end(), logits.begin(), logits.end());
  }
  return out;
}

TEST(Mtp, LogitsMatchTheReference) {
  auto m = load_reasoner(true);
  SafetensorsFile ref(data_dir() + "/tiny-reasoner-mtp/mtp.reference.safetensors");
  int sequences = 0;
  for (int i = 0; i < 32; ++i) {
    const TensorView* tokens = ref.find("seq" + std::to_string(i) + ".tokens");
    if (!tokens) continue;
    ++sequences;
    const std::vector<float> want = f32_of(ref.at("seq" + std::to_string(i) + ".mtp_logits"));
    const std::vector<int32_t> t = i32_of(*tokens);
    for (int64_t chunk : {int64_t{1}, int64_t{7}, int64_t{1000}}) {  // decode rows, uneven chunks, one prefill
      const std::vector<float> got = mtp_logits(m, t, chunk);
      ASSERT_EQ(got.size(), want.size());
      EXPECT_LT(max_abs_diff(got.data(), want.data(), got.size()), 1e-4) << "seq" << i << " chunk " << chunk;
    }
  }
  EXPECT_EQ(sequences, 3);
}

TEST(Mtp, LoadsOnlyWhenAsked) {
  auto with = load_reasoner(true), without = load_reasoner(false);
  EXPECT_TRUE(with->has_mtp());
  EXPECT_FALSE(without->has_mtp());
  EXPECT_EQ(with->weights().n_parameters, without->weights().n_parameters);  // the main model's
  const MtpWeights& w = *with->weights().mtp;
  // The tiny-reasoner's MTP copies of the embedding and the head equal the main ones: shared.
  EXPECT_EQ(w.embed, with->weights().embed);
  EXPECT_EQ(w.head, with->weights().lm_head);
  EXPECT_EQ(w.eh_embed->cols(), with->config().hidden_size);
  EXPECT_EQ(w.eh_hidden->cols(), with->config().hidden_size);
  EXPECT_TRUE(w.block.moe);
}

}  // namespace
}  // namespace sibyl::engine::test
