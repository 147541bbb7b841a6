// The activations of one step shape, allocated once and reused by every step of that
// shape (no allocation per op on the hot path, and the same tensors each time, so a
// device backend can replay a recorded decode step). Also the host staging of the
// step's inputs.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "backends/backend.h"
#include "engine/model/config.h"
#include "engine/model/weights.h"

namespace sibyl::engine {

struct StepInputs {
  std::vector<int32_t> tokens, positions, row_seq, page_table, logit_rows;
  std::vector<float> hidden;  // MTP steps: the main model's hidden rows
  void clear() {
    hidden.clear();
    tokens.clear();
    positions.clear();
    row_seq.clear();
    page_table.clear();
    logit_rows.clear();
  }
};

struct StepPlan {
  struct Key {
    int64_t rows, seqs, table_cols, logits_rows;
    bool observed;
    bool mtp;  // a multi-token-prediction step (has mtp_hidden)
    int lane;  // steps run side by side (Backend::run_lanes) each have their own plan
    bool operator==(const Key&) const = default;
  };
  using TensorPtr = std::unique_ptr<backend::Tensor>;

  StepPlan(backend::Backend& be, const ModelConfig& c, const ModelWeights& w, const Key& key, uint64_t id);

  // Page-table widths come in powers of two, so growing contexts rarely change the shape.
  static int64_t round_table_cols(int64_t pages);

  Key key;
  uint64_t replay_key;  // unique per plan: steps on this plan may be replayed
  // inputs
  TensorPtr tokens, positions, row_seq, page_table, logit_rows;  // logit_rows: null when every row is kept
  // activations
  TensorPtr x, h, c_q, q, kv_a, attn, out;
  TensorPtr mlp_gate, mlp_up;                     // dense layers
  TensorPtr moe_ids, moe_weights, router_logits;  // MoE layers (router_logits when observed)
  TensorPtr shared_gate, shared_up, shared_out;   // shared experts
  TensorPtr kept, logits;
  TensorPtr mtp_hidden;  // MTP steps: [n, hidden], the main model's final-normed rows
};

}  // namespace sibyl::engine
