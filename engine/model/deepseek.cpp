// The DeepSeek V2/V3 forward pass, built from backend ops. Per layer:
//   x += MLA(RMSNorm(x));  x += (MLP | MoE)(RMSNorm(x))
// One step carries the rows of several sequences (see backend::StepBatch).
// Shapes in comments: n = rows in this step, H = hidden, heads = attention heads.
#include <algorithm>
#include <memory>

#include "engine/core/failure.h"
#include "engine/model/model.h"
#include "engine/runtime/step_plan.h"

namespace sibyl::engine {
namespace {

using backend::Backend;

struct Step {
  Backend& be;
  const ModelConfig& c;
  backend::KvPool& pool;
  const backend::StepBatch& batch;
  StepPlan& a;  // the activations
  backend::RopeParams rope;
  backend::MlaShape mla;
  StepObserver* observer;

  std::vector<float> download(const Tensor& t) {
    std::vector<float> v(static_cast<size_t>(t.rows() * t.cols()));
    be.read(t, v.data(), v.size() * 4);
    return v;
  }
};

// Multi-head latent attention; stores this step's latent rows in the cache. Result in a.o.
void mla_attention(Step& s, const LayerWeights& L, int64_t layer, const Tensor& x) {
  Tensor& q = *s.a.q;  // [n, heads·(nope + rope)]
  if (L.q_a) {
    s.be.matmul_pair(*s.a.c_q, *L.q_a, *s.a.kv_a, *L.kv_a, x);  // [n, q_lora_rank], [n, kv_lora_rank + rope]
    s.be.rmsnorm(*s.a.c_q, *s.a.c_q, *L.q_a_norm, static_cast<float>(s.c.rms_norm_eps));
    s.be.matmul(q, *s.a.c_q, *L.q_b);
  } else {
    s.be.matmul_pair(q, *L.q, *s.a.kv_a, *L.kv_a, x);
  }
  s.be.mla_store(s.pool, layer, *s.a.kv_a, *L.kv_a_norm, static_cast<float>(s.c.rms_norm_eps), s.batch, s.rope);
  s.be.mla_attention(*s.a.attn, q, s.pool, layer, s.batch, backend::MlaWeights{L.kv_b, L.k_b, L.v_b}, s.mla,
                     s.rope);              // [n, heads·v]
  s.be.matmul(*s.a.out, *s.a.attn, *L.o);  // [n, H]
}

// SwiGLU MLP of `width` (the dense layers' MLP and the shared experts) into `out`.
void swiglu_mlp(Step& s, const LayerWeights& L, const Tensor& x, Tensor& gate, Tensor& up, Tensor& out) {
  s.be.matmul_pair(gate, *L.gate, up, *L.up, x);
  s.be.swiglu(gate, gate, up);
  s.be.matmul(out, gate, *L.down);  // [n, H]
}

backend::RouterParams router_params(const ModelConfig& c) {
  backend::RouterParams rp;
  rp.score = c.scoring == ScoringFunc::softmax ? backend::ScoreFunc::softmax : backend::ScoreFunc::sigmoid;
  rp.select = c.topk_method == TopkMethod::greedy                 ? backend::ExpertSelect::greedy
              : c.topk_method == TopkMethod::group_limited_greedy ? backend::ExpertSelect::group_limited
                                                                  : backend::ExpertSelect::noaux_tc;
  rp.n_experts = c.n_routed_experts;
  rp.top_k = c.n_experts_per_tok;
  rp.n_group = c.n_group;
  rp.topk_group = c.topk_group;
  // V3 (reference: transformers) normalises whenever asked; V2 only with top_k > 1.
  rp.normalize = c.norm_topk_prob && (c.family == Family::deepseek_v3 || c.n_experts_per_tok > 1);
  rp.scaling = static_cast<float>(c.routed_scaling_factor);
  return rp;
}

// Routed experts (+ shared experts) into a.out.
void moe_ffn(Step& s, const LayerWeights& L, int64_t layer, const Tensor& x) {
  const backend::RouterParams rp = router_params(s.c);
  StepPlan& a = s.a;
  s.be.moe_route(*a.moe_ids, *a.moe_weights, a.router_logits.get(), x, *L.router, L.router_bias, rp);
  if (s.observer) {
    std::vector<int32_t> id_host(static_cast<size_t>(a.moe_ids->rows() * rp.top_k));
    s.be.read(*a.moe_ids, id_host.data(), id_host.size() * 4);
    s.observer->route(layer, id_host, s.download(*a.moe_weights), s.download(*a.router_logits));
  }
  s.be.moe_experts(*a.out, x, *a.moe_ids, *a.moe_weights, L.experts);
  if (L.gate) {
    swiglu_mlp(s, L, x, *a.shared_gate, *a.shared_up, *a.shared_out);
    s.be.add(*a.out, *a.shared_out);
  }
}

Step step_of(Backend& be, const ModelConfig& c, backend::KvPool& pool, const backend::StepBatch& batch, StepPlan& a,
             const RopeSetup& rope, const Tensor& inv_freq, StepObserver* observer) {
  return Step{be,
              c,
              pool,
              batch,
              a,
              backend::RopeParams{&inv_freq, rope.attention_factor, c.rope.interleaved},
              backend::MlaShape{c.n_heads, c.kv_lora_rank, c.qk_nope_head_dim, c.qk_rope_head_dim, c.v_head_dim,
                                rope.softmax_scale},
              observer};
}

// One decoder layer over the residual stream a.x (h is scratch).
void decoder_layer(Step& s, const LayerWeights& L, int64_t layer) {
  StepPlan& a = s.a;
  const auto eps = static_cast<float>(s.c.rms_norm_eps);
  s.be.rmsnorm(*a.h, *a.x, *L.input_norm, eps);
  mla_attention(s, L, layer, *a.h);
  s.be.add(*a.x, *a.out);
  s.be.rmsnorm(*a.h, *a.x, *L.post_norm, eps);
  if (L.moe)
    moe_ffn(s, L, layer, *a.h);
  else
    swiglu_mlp(s, L, *a.h, *a.mlp_gate, *a.mlp_up, *a.out);
  s.be.add(*a.x, *a.out);
}

}  // namespace

// Expanded attention is cheaper for many queries, but materialises k_nope and v for every
// cached token; absorbed attention reads the latent cache directly. Short steps, and steps
// whose expansion would exceed 256 MiB (long contexts, many heads), go absorbed.
AttentionPath choose_attention_path(const ModelConfig& c, int64_t n_tokens, int64_t context) {
  const double expanded_bytes =
      static_cast<double>(context) * static_cast<double>(c.n_heads * (c.qk_nope_head_dim + c.v_head_dim)) * 4.0;
  return n_tokens < 16 || expanded_bytes > 256.0 * (1 << 20) ? AttentionPath::absorbed : AttentionPath::expanded;
}

// Host inputs of a step (tokens, positions, row → sequence, page tables, kept rows) and its
// batch shape; returns the plan its activations live in, with the inputs written.
StepPlan& Model::prepare_step(const std::vector<SeqStep>& seqs, bool observed, bool mtp, backend::StepBatch& batch,
                              int lane) {
  const ModelConfig& c = config();
  Backend& be = *backend_;
  if (seqs.empty()) fail(Errc::internal, "forward of an empty step");
  StepInputs& in = inputs_;
  in.clear();
  int64_t max_pages = 1;
  for (const SeqStep& q : seqs) max_pages = std::max<int64_t>(max_pages, static_cast<int64_t>(q.pages->size()));
  const int64_t table_cols = StepPlan::round_table_cols(max_pages);
  bool decode_only = true;
  for (size_t si = 0; si < seqs.size(); ++si) {
    const SeqStep& q = seqs[si];
    if (q.n <= 0) fail(Errc::internal, "forward: a sequence with no rows");
    if (static_cast<int64_t>(q.pages->size()) * kv_pages().page_tokens() < q.pos0 + q.n)
      fail(Errc::internal, "forward: a sequence's pages do not cover its positions");
    if (mtp && (q.pos0 < 1 || !q.hidden)) fail(Errc::internal, "forward_mtp: a row at position 0 or without hidden");
    const int64_t first = static_cast<int64_t>(in.tokens.size());
    AttentionPath path = q.path;
    if (path == AttentionPath::automatic)  // batch-invariant backends: rows must not depend on chunking
      path = be.batch_invariant() ? AttentionPath::absorbed : choose_attention_path(c, q.n, q.pos0 + q.n);
    batch.seqs.push_back({first, q.n,
                          path == AttentionPath::absorbed ? backend::MlaPath::absorbed : backend::MlaPath::expanded,
                          q.pos0 + q.n});
    for (int64_t i = 0; i < q.n; ++i) {
      in.tokens.push_back(q.tokens[i]);
      in.positions.push_back(static_cast<int32_t>(q.pos0 + i));
      in.row_seq.push_back(static_cast<int32_t>(si));
    }
    if (mtp) in.hidden.insert(in.hidden.end(), q.hidden, q.hidden + q.n * c.hidden_size);
    for (int64_t p = 0; p < table_cols; ++p)
      in.page_table.push_back(p < static_cast<int64_t>(q.pages->size()) ? (*q.pages)[p] : -1);
    if (q.logits == LogitsMode::all)
      for (int64_t i = 0; i < q.n; ++i) in.logit_rows.push_back(static_cast<int32_t>(first + i));
    else if (q.logits == LogitsMode::last)
      in.logit_rows.push_back(static_cast<int32_t>(first + q.n - 1));
    decode_only = decode_only && q.n == 1 && q.logits == LogitsMode::last && path == AttentionPath::absorbed;
  }
  const auto n = static_cast<int64_t>(in.tokens.size());
  const auto n_out = static_cast<int64_t>(in.logit_rows.size());
  StepPlan& a = plan({n, static_cast<int64_t>(seqs.size()), table_cols, n_out, observed, mtp, lane});
  batch.positions = a.positions.get();
  batch.row_seq = a.row_seq.get();
  batch.page_table = a.page_table.get();
  batch.first_position = mtp ? 1 : 0;

  // A decode step of the same shape enqueues the same ops on the same plan: replayable.
  be.begin_step(decode_only && !observed ? a.replay_key : 0);
  be.write(*a.tokens, in.tokens.data(), in.tokens.size() * 4);
  be.write(*a.positions, in.positions.data(), in.positions.size() * 4);
  be.write(*a.row_seq, in.row_seq.data(), in.row_seq.size() * 4);
  be.write(*a.page_table, in.page_table.data(), in.page_table.size() * 4);
  if (a.logit_rows) be.write(*a.logit_rows, in.logit_rows.data(), in.logit_rows.size() * 4);
  if (mtp) be.write(*a.mtp_hidden, in.hidden.data(), in.hidden.size() * 4);
  return a;
}

void Model::forward(const std::vector<SeqStep>& seqs, std::vector<float>& logits, StepObserver* observer,
                    std::vector<float>* hidden) {
  const ModelConfig& c = config();
  Backend& be = *backend_;
  auto body = [&](StepPlan& a, const backend::StepBatch& batch, float* out, float* h) {
    Step s = step_of(be, c, kv_pages().pool(), batch, a, rope_, *inv_freq_, observer);
    be.embed(*a.x, *weights_.embed, *a.tokens);  // the residual stream [n, H]
    if (observer) observer->hidden(0, s.download(*a.x));
    for (int64_t l = 0; l < c.n_layers; ++l) {
      decoder_layer(s, weights_.layers[l], l);
      if (observer && l + 1 < c.n_layers) observer->hidden(l + 1, s.download(*a.x));
    }
    be.rmsnorm(*a.h, *a.x, *weights_.norm, static_cast<float>(c.rms_norm_eps));  // [n, H]
    if (observer) observer->hidden(c.n_layers, s.download(*a.h));
    finish_step(a, *weights_.lm_head, out, h);
  };
  run_step(seqs, observer != nullptr, false, body, logits, hidden);
}

// The MTP layer over rows (t_p, h_{p-1}) at positions p >= 1; its cache is layer n_layers.
void Model::forward_mtp(const std::vector<SeqStep>& seqs, std::vector<float>& logits) {
  if (!weights_.mtp) fail(Errc::internal, "forward_mtp on a model without an MTP layer");
  const ModelConfig& c = config();
  const MtpWeights& m = *weights_.mtp;
  Backend& be = *backend_;
  auto body = [&](StepPlan& a, const backend::StepBatch& batch, float* out, float*) {
    Step s = step_of(be, c, kv_pages().pool(), batch, a, rope_, *inv_freq_, nullptr);
    const auto eps = static_cast<float>(c.rms_norm_eps);
    // x = eh_proj([enorm(embed(t)) ; hnorm(h)]) as the sum of its two column halves
    be.embed(*a.h, *m.embed, *a.tokens);
    be.rmsnorm(*a.h, *a.h, *m.enorm, eps);
    be.rmsnorm(*a.mtp_hidden, *a.mtp_hidden, *m.hnorm, eps);
    be.matmul(*a.x, *a.h, *m.eh_embed);
    be.matmul(*a.out, *a.mtp_hidden, *m.eh_hidden);
    be.add(*a.x, *a.out);
    decoder_layer(s, m.block, c.n_layers);
    be.rmsnorm(*a.h, *a.x, *m.head_norm, eps);
    finish_step(a, *m.head, out, nullptr);
  };
  run_step(seqs, false, true, body, logits, nullptr);
}

namespace {

// Rows per lane for a split: with one row per lane each thread would run a lone session's
// step (measured on 2 cores, tiny-reasoner: lanes win from 2 rows each, +20–30 % aggregate
// decode at 8–32 sessions, as each op's synchronisation and the caller's inline ops go).
constexpr int64_t kMinLaneRows = 2;

// Where to split seqs into contiguous lanes of about equal rows: {0, c1, …, seqs.size()};
// empty when the step should run as one (too few rows, or a sequence too long to balance).
std::vector<size_t> lane_cuts(const std::vector<SeqStep>& seqs, int lanes) {
  int64_t n = 0;
  for (const SeqStep& q : seqs) n += q.n;
  lanes = static_cast<int>(std::min<int64_t>({lanes, static_cast<int64_t>(seqs.size()), n / kMinLaneRows}));
  if (lanes < 2) return {};
  std::vector<size_t> cuts{0};
  int64_t done = 0, widest = 0, since = 0;
  for (size_t i = 0; i < seqs.size(); ++i) {
    done += seqs[i].n;
    since += seqs[i].n;
    const int64_t target = n * static_cast<int64_t>(cuts.size()) / lanes;
    const bool room = seqs.size() - i - 1 >= static_cast<size_t>(lanes) - cuts.size();  // a seq per lane left
    if (static_cast<int>(cuts.size()) < lanes && done >= target && room && i + 1 < seqs.size()) {
      cuts.push_back(i + 1);
      widest = std::max(widest, since);
      since = 0;
    }
  }
  cuts.push_back(seqs.size());
  widest = std::max(widest, since);
  if (static_cast<int>(cuts.size()) != lanes + 1 || widest * lanes > n + n / 4 + lanes) return {};
  return cuts;
}

}  // namespace

void Model::run_step(const std::vector<SeqStep>& seqs, bool observed, bool mtp, const StepBody& body,
                     std::vector<float>& logits, std::vector<float>* hidden) {
  const int64_t vocab = config().vocab_size, H = config().hidden_size;
  const std::vector<size_t> cuts =
      observed ? std::vector<size_t>{} : lane_cuts(seqs, std::min(backend_->step_lanes(), kMaxLanes));
  if (cuts.empty()) {
    backend::StepBatch batch;
    StepPlan& a = prepare_step(seqs, observed, mtp, batch, 0);
    logits.resize(static_cast<size_t>(a.key.logits_rows * vocab));
    if (hidden) hidden->resize(static_cast<size_t>(a.key.rows * H));
    body(a, batch, logits.data(), hidden ? hidden->data() : nullptr);
    return;
  }
  const int n = static_cast<int>(cuts.size()) - 1;
  lanes_.resize(static_cast<size_t>(n));
  int64_t kept = 0, rows = 0;    // lanes are contiguous runs of sequences: their rows in order
  for (int i = 0; i < n; ++i) {  // plans and inputs on this thread
    Lane& lane = lanes_[static_cast<size_t>(i)];
    lane.seqs.assign(seqs.begin() + static_cast<std::ptrdiff_t>(cuts[i]),
                     seqs.begin() + static_cast<std::ptrdiff_t>(cuts[i + 1]));
    lane.batch = backend::StepBatch{};
    lane.plan = &prepare_step(lane.seqs, false, mtp, lane.batch, i);
    lane.first_kept = kept;
    lane.first_row = rows;
    kept += lane.plan->key.logits_rows;
    rows += lane.plan->key.rows;
  }
  logits.resize(static_cast<size_t>(kept * vocab));
  if (hidden) hidden->resize(static_cast<size_t>(rows * H));
  ++lane_steps_;
  backend_->run_lanes(n, [&](int i) {
    const Lane& lane = lanes_[static_cast<size_t>(i)];
    body(*lane.plan, lane.batch, logits.data() + lane.first_kept * vocab,
         hidden ? hidden->data() + lane.first_row * H : nullptr);
  });
}

// The kept rows of a.h through `head`, the step submitted, logits (and all rows of a.h) read
// into the caller's [logits_rows, vocab] (and [rows, hidden]).
void Model::finish_step(StepPlan& a, const Tensor& head, float* logits, float* hidden) {
  Backend& be = *backend_;
  const int64_t n_out = a.key.logits_rows;
  if (n_out > 0) {
    if (a.logit_rows) be.gather_rows(*a.kept, *a.h, *a.logit_rows);  // [n_out, H]
    be.matmul(*a.logits, a.logit_rows ? *a.kept : *a.h, head);       // [n_out, vocab]
  }
  be.end_step();
  if (n_out > 0) be.read(*a.logits, logits, static_cast<size_t>(n_out * config().vocab_size) * 4);
  if (hidden) be.read(*a.h, hidden, static_cast<size_t>(a.h->rows() * a.h->cols()) * 4);
}

StepPlan& Model::plan(const StepPlan::Key& key) {
  for (auto it = plans_.begin(); it != plans_.end(); ++it)
    if ((*it)->key == key) {
      plans_.splice(plans_.begin(), plans_, it);  // most recent first
      return *plans_.front();
    }
  if (plans_.size() >= kMaxPlans) plans_.pop_back();
  plans_.push_front(std::make_unique<StepPlan>(*backend_, config(), weights_, key, ++plans_made_));
  return *plans_.front();
}

}  // namespace sibyl::engine
