#include "engine/runtime/step_plan.h"

namespace sibyl::engine {

int64_t StepPlan::round_table_cols(int64_t pages) {
  int64_t cols = 8;
  while (cols < pages) cols *= 2;
  return cols;
}

StepPlan::StepPlan(backend::Backend& be, const ModelConfig& c, const ModelWeights& w, const Key& k, uint64_t id)
    : key(k), replay_key(id) {
  using backend::DType;
  const int64_t n = k.rows;
  auto f32 = [&](int64_t rows, int64_t cols) { return be.alloc(DType::f32, rows, cols); };
  auto i32 = [&](int64_t rows, int64_t cols) { return be.alloc(DType::i32, rows, cols); };
  tokens = i32(n, 1);
  positions = i32(n, 1);
  row_seq = i32(n, 1);
  page_table = i32(k.seqs, k.table_cols);
  if (k.logits_rows > 0 && k.logits_rows < n) {
    logit_rows = i32(k.logits_rows, 1);
    kept = f32(k.logits_rows, c.hidden_size);
  }
  if (k.logits_rows > 0) logits = f32(k.logits_rows, c.vocab_size);

  x = f32(n, c.hidden_size);
  if (k.mtp) mtp_hidden = f32(n, c.hidden_size);
  h = f32(n, c.hidden_size);
  out = f32(n, c.hidden_size);
  if (c.q_lora_rank > 0) c_q = f32(n, c.q_lora_rank);
  q = f32(n, c.n_heads * (c.qk_nope_head_dim + c.qk_rope_head_dim));
  kv_a = f32(n, c.kv_width());
  attn = f32(n, c.n_heads * c.v_head_dim);
  std::vector<const LayerWeights*> layers;
  for (const LayerWeights& L : w.layers) layers.push_back(&L);
  if (k.mtp && w.mtp) layers.push_back(&w.mtp->block);
  for (const LayerWeights* layer : layers) {
    const LayerWeights& L = *layer;
    if (!L.moe && !mlp_gate) {
      mlp_gate = f32(n, L.gate->rows());
      mlp_up = f32(n, L.gate->rows());
    }
    if (L.moe && !moe_ids) {
      moe_ids = i32(n, c.n_experts_per_tok);
      moe_weights = f32(n, c.n_experts_per_tok);
      if (k.observed) router_logits = f32(n, c.n_routed_experts);
    }
    if (L.moe && L.gate && !shared_gate) {
      shared_gate = f32(n, L.gate->rows());
      shared_up = f32(n, L.gate->rows());
      shared_out = f32(n, c.hidden_size);
    }
  }
}

}  // namespace sibyl::engine
