// The model's tensors on the backend, found by their Hugging Face names and checked
// against the config before anything is uploaded.
#pragma once
#include <memory>
#include <vector>

#include "backends/backend.h"
#include "engine/formats/model_source.h"

namespace sibyl::engine {

using backend::Tensor;

struct LayerWeights {
  const Tensor* input_norm = nullptr;  // [1, hidden]
  const Tensor* post_norm = nullptr;   // [1, hidden]
  // MLA
  const Tensor* q_a = nullptr;       // [q_lora_rank, hidden]      (q-LoRA)
  const Tensor* q_a_norm = nullptr;  // [1, q_lora_rank]
  const Tensor* q_b = nullptr;       // [heads·qk_head, q_lora_rank]
  const Tensor* q = nullptr;         // [heads·qk_head, hidden]     (full-rank q)
  const Tensor* kv_a = nullptr;      // [kv_lora_rank + rope, hidden]
  const Tensor* kv_a_norm = nullptr; // [1, kv_lora_rank]
  const Tensor* kv_b = nullptr;      // [heads·(nope + v), kv_lora_rank], or split per head:
  const Tensor* k_b = nullptr;       //   [heads·kv_lora_rank, nope] (W_UK transposed per head)
  const Tensor* v_b = nullptr;       //   [heads·v, kv_lora_rank]    (W_UV)
  const Tensor* o = nullptr;         // [hidden, heads·v]
  // dense MLP, or the shared experts of an MoE layer
  const Tensor* gate = nullptr;
  const Tensor* up = nullptr;
  const Tensor* down = nullptr;
  // MoE
  bool moe = false;
  const Tensor* router = nullptr;       // [n_experts, hidden]
  const Tensor* router_bias = nullptr;  // [1, n_experts] (noaux_tc)
  backend::ExpertWeights experts;
};

// A multi-token-prediction layer (DeepSeek-V3's MTP, stored as layer num_hidden_layers): for the
// main model's final-normed hidden state h_i and the next token t_{i+1},
//   x = eh_proj([enorm(embed(t_{i+1})) ; hnorm(h_i)]), the block at position i+1, then
//   logits = head(head_norm(x)), which predicts t_{i+2}.
struct MtpWeights {
  const Tensor* embed = nullptr;      // its embed_tokens, or the main embedding when absent or identical
  const Tensor* enorm = nullptr;      // [1, hidden]
  const Tensor* hnorm = nullptr;      // [1, hidden]
  const Tensor* eh_embed = nullptr;   // eh_proj's first `hidden` columns [hidden, hidden]
  const Tensor* eh_hidden = nullptr;  // its last `hidden` columns [hidden, hidden]
  const Tensor* head_norm = nullptr;  // shared_head.norm [1, hidden]
  const Tensor* head = nullptr;       // shared_head.head, or lm_head when absent or identical
  LayerWeights block;
};

struct ModelWeights {
  const Tensor* embed = nullptr;    // [vocab, hidden]
  const Tensor* norm = nullptr;     // [1, hidden]
  const Tensor* lm_head = nullptr;  // [vocab, hidden]
  std::vector<LayerWeights> layers;
  std::unique_ptr<MtpWeights> mtp;  // the first MTP layer, when loaded
  uint64_t n_parameters = 0;
  // Bytes made at load (eh_proj's column halves), kept alive for host backends that use
  // weights in place; declared before `storage` so that the tensors go first.
  std::vector<std::vector<uint8_t>> owned;
  std::vector<std::unique_ptr<Tensor>> storage;

  // Weight bytes one decoded token reads: every dense tensor, one embedding row, and of
  // each MoE layer its router, shared experts and `experts_per_token` routed experts of
  // average size. The memory-bandwidth ceiling of decode is bandwidth ÷ this (+ the cache).
  uint64_t decode_bytes(int64_t experts_per_token) const;
};

struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
};

// True for an MTP layer's embed_tokens / shared_head.head that is byte for byte the main
// model's embedding / output head (V3 carries 1.8 GB of such copies): the main tensor serves.
bool mtp_copy_of_main(const ModelSource& source, const std::string& name);

// Every tensor of a model with config `c` in the pack layout (split k_b/v_b, stacked experts),
// in load order: what a generator of synthetic packs writes.
std::vector<TensorSpec> pack_layout(const ModelConfig& c);

// Validates names, shapes and dtypes of every tensor (missing and unexpected ones are
// named in the error), then uploads them. The source must outlive the backend tensors.
// with_mtp: also load the first MTP layer when the config has one (otherwise MTP tensors
// are accepted and ignored).
ModelWeights load_weights(const ModelSource& source, backend::Backend& backend, bool with_mtp = false);

}  // namespace sibyl::engine
