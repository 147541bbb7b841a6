// The DeepSeek V2/V3 forward pass, built from backend ops. Per layer:
//   x += MLA(RMSNorm(x));  x += (MLP | MoE)(RMSNorm(x))
// Shapes in comments: n = tokens in this step, H = hidden, heads = attention heads.
#include <memory>

#include "failure.h"
#include "model.h"

namespace sibyl::engine {
namespace {

using backend::Backend;
using TensorPtr = std::unique_ptr<Tensor>;

struct Step {
  Backend& be;
  const ModelConfig& c;
  backend::KvCache& cache;
  const Tensor& positions;  // i32 [n, 1]
  backend::RopeParams rope;
  backend::MlaShape mla;
  backend::MlaPath path;
  int64_t n;
  StepObserver* observer;

  TensorPtr f32(int64_t cols) { return be.alloc(DType::f32, n, cols); }
  TensorPtr linear(const Tensor& x, const Tensor& w) {  // [n, w.rows]
    TensorPtr y = be.alloc(DType::f32, x.rows(), w.rows());
    be.matmul(*y, x, w);
    return y;
  }
  std::vector<float> download(const Tensor& t) {
    std::vector<float> v(static_cast<size_t>(t.rows() * t.cols()));
    be.read(t, v.data(), v.size() * 4);
    return v;
  }
};

// Multi-head latent attention; stores this step's latent rows in the cache.
TensorPtr mla_attention(Step& s, const LayerWeights& L, int64_t layer, const Tensor& x) {
  TensorPtr q;  // [n, heads·(nope + rope)]
  if (L.q_a) {
    TensorPtr c_q = s.linear(x, *L.q_a);  // [n, q_lora_rank]
    s.be.rmsnorm(*c_q, *c_q, *L.q_a_norm, static_cast<float>(s.c.rms_norm_eps));
    q = s.linear(*c_q, *L.q_b);
  } else {
    q = s.linear(x, *L.q);
  }
  TensorPtr kv_a = s.linear(x, *L.kv_a);  // [n, kv_lora_rank + rope]
  s.be.mla_store(s.cache, layer, *kv_a, *L.kv_a_norm, static_cast<float>(s.c.rms_norm_eps), s.positions, s.rope);
  TensorPtr attn = s.f32(s.c.n_heads * s.c.v_head_dim);  // [n, heads·v]
  s.be.mla_attention(*attn, *q, s.cache, layer, s.positions, backend::MlaWeights{L.kv_b, L.k_b, L.v_b}, s.mla,
                     s.rope, s.path);
  return s.linear(*attn, *L.o);  // [n, H]
}

// SwiGLU MLP: the dense layers' MLP and the shared experts.
TensorPtr swiglu_mlp(Step& s, const LayerWeights& L, const Tensor& x) {
  TensorPtr g = s.linear(x, *L.gate), u = s.linear(x, *L.up);  // [n, width]
  s.be.swiglu(*g, *g, *u);
  return s.linear(*g, *L.down);  // [n, H]
}

TensorPtr moe_ffn(Step& s, const LayerWeights& L, int64_t layer, const Tensor& x) {
  const ModelConfig& c = s.c;
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

  TensorPtr ids = s.be.alloc(DType::i32, s.n, rp.top_k);    // [n, top_k]
  TensorPtr weights = s.f32(rp.top_k);                      // [n, top_k]
  TensorPtr raw = s.observer ? s.f32(rp.n_experts) : nullptr;  // [n, n_experts]
  s.be.moe_route(*ids, *weights, raw.get(), x, *L.router, L.router_bias, rp);
  if (s.observer) {
    std::vector<int32_t> id_host(static_cast<size_t>(s.n * rp.top_k));
    s.be.read(*ids, id_host.data(), id_host.size() * 4);
    s.observer->route(layer, id_host, s.download(*weights), s.download(*raw));
  }
  TensorPtr out = s.f32(c.hidden_size);  // [n, H]
  s.be.moe_experts(*out, x, *ids, *weights, L.experts);
  if (L.gate) s.be.add(*out, *swiglu_mlp(s, L, x));
  return out;
}

// Expanded attention is cheaper for many queries, but materialises k_nope and v for every
// cached token; absorbed attention reads the latent cache directly. Short steps, and steps
// whose expansion would exceed 256 MiB (long contexts, many heads), go absorbed.
AttentionPath choose_attention_path(const ModelConfig& c, int64_t n_tokens, int64_t context) {
  const double expanded_bytes =
      static_cast<double>(context) * static_cast<double>(c.n_heads * (c.qk_nope_head_dim + c.v_head_dim)) * 4.0;
  return n_tokens < 16 || expanded_bytes > 256.0 * (1 << 20) ? AttentionPath::absorbed : AttentionPath::expanded;
}

}  // namespace

void Model::forward(backend::KvCache& cache, const int32_t* tokens, int64_t n, int64_t pos0, LogitsMode mode,
                    AttentionPath path, std::vector<float>& logits, StepObserver* observer) const {
  const ModelConfig& c = config();
  Backend& be = *backend_;
  if (n <= 0) fail(Errc::internal, "forward of an empty step");
  if (cache.capacity() < pos0 + n) fail(Errc::internal, "KV cache too small for the step");

  std::vector<int32_t> pos_host(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) pos_host[i] = static_cast<int32_t>(pos0 + i);
  TensorPtr token_ids = be.alloc(DType::i32, n, 1), positions = be.alloc(DType::i32, n, 1);
  be.begin_step();
  be.write(*token_ids, tokens, static_cast<size_t>(n) * 4);
  be.write(*positions, pos_host.data(), static_cast<size_t>(n) * 4);

  if (path == AttentionPath::automatic) path = choose_attention_path(c, n, pos0 + n);
  Step s{be, c, cache, *positions,
         backend::RopeParams{inv_freq_.get(), rope_.attention_factor, c.rope.interleaved},
         backend::MlaShape{c.n_heads, c.kv_lora_rank, c.qk_nope_head_dim, c.qk_rope_head_dim, c.v_head_dim,
                           rope_.softmax_scale},
         path == AttentionPath::absorbed ? backend::MlaPath::absorbed : backend::MlaPath::expanded, n, observer};

  TensorPtr x = s.f32(c.hidden_size);  // residual stream [n, H]
  be.embed(*x, *weights_.embed, *token_ids);
  if (observer) observer->hidden(0, s.download(*x));
  TensorPtr h = s.f32(c.hidden_size);
  const auto eps = static_cast<float>(c.rms_norm_eps);
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const LayerWeights& L = weights_.layers[l];
    be.rmsnorm(*h, *x, *L.input_norm, eps);
    be.add(*x, *mla_attention(s, L, l, *h));
    be.rmsnorm(*h, *x, *L.post_norm, eps);
    be.add(*x, *(L.moe ? moe_ffn(s, L, l, *h) : swiglu_mlp(s, L, *h)));
    if (observer && l + 1 < c.n_layers) observer->hidden(l + 1, s.download(*x));
  }
  be.rmsnorm(*h, *x, *weights_.norm, eps);  // [n, H]
  if (observer) observer->hidden(c.n_layers, s.download(*h));

  TensorPtr out;
  if (mode == LogitsMode::all) {
    out = s.linear(*h, *weights_.lm_head);  // [n, vocab]
  } else if (mode == LogitsMode::last) {
    TensorPtr last = be.alloc(DType::f32, 1, c.hidden_size);
    be.copy_row(*last, *h, n - 1);
    out = s.linear(*last, *weights_.lm_head);  // [1, vocab]
  }
  be.end_step();
  if (out) {
    logits.resize(static_cast<size_t>(out->rows() * out->cols()));
    be.read(*out, logits.data(), logits.size() * 4);
  } else {
    logits.clear();
  }
}

}  // namespace sibyl::engine
