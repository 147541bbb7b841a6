#include "engine/model/weights.h"

#include <algorithm>
#include <cstring>
#include <functional>
#include <set>
#include <string>

#include "engine/core/failure.h"

namespace sibyl::engine {
namespace {

struct Expected {
  std::string name;
  int64_t rows, cols;  // rows == 0: a 1-D tensor of `cols`
  const Tensor** slot;
  // Stacked tensors [slots.size(), rows, cols]: one backend tensor per slab.
  std::vector<const Tensor*>* slots = nullptr;
  // Per-head tensors [heads, rows, cols], uploaded as one [heads·rows, cols] tensor.
  int64_t heads = 0;
  // A [rows, 2·cols/2] matrix uploaded as its two column halves: `slot` the first, `second` the last.
  const Tensor** second = nullptr;

  std::vector<int64_t> shape() const {
    std::vector<int64_t> v;
    if (slots) v.push_back(static_cast<int64_t>(slots->size()));
    if (heads) v.push_back(heads);
    if (rows) v.push_back(rows);
    v.push_back(cols);
    return v;
  }
  std::string shape_string() const {
    std::string s;
    for (int64_t d : shape()) s += (s.empty() ? "[" : ", ") + std::to_string(d);
    return s + "]";
  }
};

std::string join_names(const std::vector<std::string>& names) {
  std::string s;
  const size_t shown = std::min<size_t>(names.size(), 8);
  for (size_t i = 0; i < shown; ++i) s += (i ? ", " : "") + names[i];
  if (names.size() > shown) s += " and " + std::to_string(names.size() - shown) + " more";
  return s;
}

// Tensors a checkpoint may carry that this engine does not use: rotary caches, and the
// multi-token-prediction layers from `first_unused` on (they follow the main stack).
bool ignorable(const std::string& name, const ModelConfig& c, int64_t first_unused) {
  if (name.ends_with(".rotary_emb.inv_freq")) return true;
  const std::string prefix = "model.layers.";
  if (!name.starts_with(prefix)) return false;
  size_t end = name.find('.', prefix.size());
  if (end == std::string::npos) return false;
  std::string num = name.substr(prefix.size(), end - prefix.size());
  if (num.empty() || num.find_first_not_of("0123456789") != std::string::npos || num.size() > 9) return false;
  int64_t layer = std::stoll(num);
  return layer >= first_unused && layer < c.n_layers + c.num_nextn_predict_layers;
}

// Whether layer l is MoE. transformers makes every layer from first_k_dense_replace on MoE and
// ignores moe_layer_freq; DeepSeek's code honours it. No released model has a frequency other
// than 1, so when one is given the checkpoint itself says which layers carry a router.
// What the tensors of a model look like: which names exist decides the layout.
using HasTensor = std::function<bool(const std::string&)>;

bool layer_is_moe(const ModelConfig& c, const HasTensor& has, int64_t l) {
  if (c.n_routed_experts == 0 || l < c.first_k_dense_replace) return false;
  if (c.moe_layer_freq == 1) return true;
  return has("model.layers." + std::to_string(l) + ".mlp.gate.weight");
}

// An FP8 weight needs the config's block size and its float32 `<name>_scale_inv` of one
// scale per (possibly partial) block.
void check_fp8_scale(const ModelSource& src, const Expected& x) {
  const ModelConfig& c = src.config;
  if (c.fp8_block_rows == 0)
    fail(Errc::format, "tensor \"" + x.name + "\" is F8_E4M3 but config.json has no FP8 quantization_config");
  if (x.rows == 0 || x.slots || x.heads)
    fail(Errc::unsupported, "tensor \"" + x.name + "\" is F8_E4M3 but not a matrix");
  const std::string name = x.name + "_scale_inv";
  auto it = src.tensors.find(name);
  if (it == src.tensors.end()) fail(Errc::format, "FP8 tensor \"" + x.name + "\" has no \"" + name + "\"");
  const TensorView& s = it->second;
  const int64_t rows = (x.rows + c.fp8_block_rows - 1) / c.fp8_block_rows;
  const int64_t cols = (x.cols + c.fp8_block_cols - 1) / c.fp8_block_cols;
  if (s.dtype != DType::f32 || s.shape.size() != 2 || s.shape[0] != rows || s.shape[1] != cols)
    fail(Errc::format, "\"" + name + "\" is " + dtype_name(s.dtype) + " " + s.shape_string() + "; expected F32 [" +
                           std::to_string(rows) + ", " + std::to_string(cols) + "] for weight_block_size [" +
                           std::to_string(c.fp8_block_rows) + ", " + std::to_string(c.fp8_block_cols) + "]");
}

// The tensors of decoder layer `l` under `p` ("model.layers.L.").
void expect_layer(const ModelConfig& c, const HasTensor& has, int64_t l, const std::string& p, LayerWeights& L,
                  std::vector<Expected>& e) {
  const int64_t H = c.hidden_size, heads = c.n_heads;
  e.push_back({p + "input_layernorm.weight", 0, H, &L.input_norm});
  e.push_back({p + "post_attention_layernorm.weight", 0, H, &L.post_norm});
  const std::string a = p + "self_attn.";
  if (c.q_lora_rank > 0) {
    e.push_back({a + "q_a_proj.weight", c.q_lora_rank, H, &L.q_a});
    e.push_back({a + "q_a_layernorm.weight", 0, c.q_lora_rank, &L.q_a_norm});
    e.push_back({a + "q_b_proj.weight", heads * c.qk_head_dim(), c.q_lora_rank, &L.q_b});
  } else {
    e.push_back({a + "q_proj.weight", heads * c.qk_head_dim(), H, &L.q});
  }
  e.push_back({a + "kv_a_proj_with_mqa.weight", c.kv_width(), H, &L.kv_a});
  e.push_back({a + "kv_a_layernorm.weight", 0, c.kv_lora_rank, &L.kv_a_norm});
  if (has(a + "kv_b_proj.weight")) {
    e.push_back({a + "kv_b_proj.weight", heads * (c.qk_nope_head_dim + c.v_head_dim), c.kv_lora_rank, &L.kv_b});
  } else {  // split per head: W_UK transposed [kv_lora, nope], W_UV [v, kv_lora]
    e.push_back({a + "k_b_proj.weight", c.kv_lora_rank, c.qk_nope_head_dim, &L.k_b, nullptr, heads});
    e.push_back({a + "v_b_proj.weight", c.v_head_dim, c.kv_lora_rank, &L.v_b, nullptr, heads});
  }
  e.push_back({a + "o_proj.weight", H, heads * c.v_head_dim, &L.o});
  const std::string m = p + "mlp.";
  L.moe = layer_is_moe(c, has, l);
  int64_t mlp_width = c.intermediate_size;
  std::string mlp_prefix = m;
  if (L.moe) {
    e.push_back({m + "gate.weight", c.n_routed_experts, H, &L.router});
    if (c.topk_method == TopkMethod::noaux_tc)
      e.push_back({m + "gate.e_score_correction_bias", 0, c.n_routed_experts, &L.router_bias});
    L.experts.gate.resize(static_cast<size_t>(c.n_routed_experts));
    L.experts.up.resize(L.experts.gate.size());
    L.experts.down.resize(L.experts.gate.size());
    const std::string stacked = m + "experts.";
    const bool is_stacked = has(stacked + "gate_proj.weight");
    if (is_stacked) {  // [experts, rows, cols]
      e.push_back({stacked + "gate_proj.weight", c.moe_intermediate_size, H, nullptr, &L.experts.gate});
      e.push_back({stacked + "up_proj.weight", c.moe_intermediate_size, H, nullptr, &L.experts.up});
      e.push_back({stacked + "down_proj.weight", H, c.moe_intermediate_size, nullptr, &L.experts.down});
    }
    for (int64_t x = 0; x < c.n_routed_experts && !is_stacked; ++x) {
      const std::string ex = m + "experts." + std::to_string(x) + ".";
      e.push_back({ex + "gate_proj.weight", c.moe_intermediate_size, H, &L.experts.gate[x]});
      e.push_back({ex + "up_proj.weight", c.moe_intermediate_size, H, &L.experts.up[x]});
      e.push_back({ex + "down_proj.weight", H, c.moe_intermediate_size, &L.experts.down[x]});
    }
    mlp_width = c.n_shared_experts * c.moe_intermediate_size;
    mlp_prefix = m + "shared_experts.";
  }
  if (mlp_width > 0) {
    e.push_back({mlp_prefix + "gate_proj.weight", mlp_width, H, &L.gate});
    e.push_back({mlp_prefix + "up_proj.weight", mlp_width, H, &L.up});
    e.push_back({mlp_prefix + "down_proj.weight", H, mlp_width, &L.down});
  }
}

// The first MTP layer (layer num_hidden_layers): its own tensors, then its decoder block.
// Its embed_tokens, shared_head.head and shared_head.norm are optional (GGUF files may leave
// them out): the main model's embedding, lm_head and final norm are used without them.
void expect_mtp(const ModelConfig& c, const HasTensor& has, MtpWeights& w, std::vector<Expected>& e) {
  const int64_t H = c.hidden_size;
  const std::string p = "model.layers." + std::to_string(c.n_layers) + ".";
  e.push_back({p + "enorm.weight", 0, H, &w.enorm});
  e.push_back({p + "hnorm.weight", 0, H, &w.hnorm});
  Expected eh{p + "eh_proj.weight", H, 2 * H, &w.eh_embed};
  eh.second = &w.eh_hidden;
  e.push_back(eh);
  if (has(p + "shared_head.norm.weight")) e.push_back({p + "shared_head.norm.weight", 0, H, &w.head_norm});
  if (has(p + "shared_head.head.weight")) e.push_back({p + "shared_head.head.weight", c.vocab_size, H, &w.head});
  if (has(p + "embed_tokens.weight")) e.push_back({p + "embed_tokens.weight", c.vocab_size, H, &w.embed});
  expect_layer(c, has, c.n_layers, p, w.block, e);
}

std::vector<Expected> expected_tensors(const ModelConfig& c, const HasTensor& has, ModelWeights& w) {
  std::vector<Expected> e;
  const int64_t H = c.hidden_size;
  e.push_back({"model.embed_tokens.weight", c.vocab_size, H, &w.embed});
  e.push_back({"model.norm.weight", 0, H, &w.norm});
  if (!c.tie_word_embeddings) e.push_back({"lm_head.weight", c.vocab_size, H, &w.lm_head});
  w.layers.resize(static_cast<size_t>(c.n_layers));
  for (int64_t l = 0; l < c.n_layers; ++l)
    expect_layer(c, has, l, "model.layers." + std::to_string(l) + ".", w.layers[l], e);
  if (w.mtp) expect_mtp(c, has, *w.mtp, e);
  return e;
}

bool stacked_experts(const ModelSource& src) {
  for (const auto& [name, view] : src.tensors)
    if (name.ends_with(".mlp.experts.gate_proj.weight")) return true;
  return false;
}

}  // namespace

std::vector<TensorSpec> pack_layout(const ModelConfig& c) {
  ModelWeights scratch;
  const HasTensor has = [](const std::string& name) {
    return !name.ends_with("kv_b_proj.weight");  // split k_b/v_b, stacked experts, routers present
  };
  std::vector<TensorSpec> specs;
  for (const Expected& x : expected_tensors(c, has, scratch)) {
    specs.push_back({x.name, x.shape()});
  }
  return specs;
}

namespace {

// Uploads the two column halves of matrix `x` (eh_proj) into x.slot and x.second.
void upload_halves(const ModelSource& src, const Expected& x, const TensorView& t, backend::Backend& backend,
                   ModelWeights& w) {
  const ModelConfig& c = src.config;
  const int64_t rows = x.rows, half = x.cols / 2;
  if (half % block_elems(t.dtype) != 0)
    fail(Errc::unsupported, "tensor \"" + x.name + "\" is " + dtype_name(t.dtype) + ": its column halves of " +
                                std::to_string(half) + " are not whole blocks");
  const size_t row = row_bytes(t.dtype, x.cols), half_row = row_bytes(t.dtype, half);
  int64_t scale_cols = 0;
  if (t.dtype == DType::f8_e4m3) {
    if (half % c.fp8_block_cols != 0)
      fail(Errc::unsupported, "tensor \"" + x.name + "\" is F8_E4M3 with column blocks of " +
                                  std::to_string(c.fp8_block_cols) + " that straddle its two halves");
    scale_cols = (x.cols + c.fp8_block_cols - 1) / c.fp8_block_cols;
  }
  const Tensor** slots[2] = {x.slot, x.second};
  for (int k = 0; k < 2; ++k) {
    std::vector<uint8_t>& bytes = w.owned.emplace_back(static_cast<size_t>(rows) * half_row);
    for (int64_t r = 0; r < rows; ++r)
      std::memcpy(bytes.data() + r * half_row, t.data + r * row + k * half_row, half_row);
    backend::HostWeight hw{x.name + (k ? " (hidden half)" : " (embedding half)"), t.dtype, rows, half, bytes.data()};
    if (scale_cols > 0) {
      const uint8_t* s = src.tensors.at(x.name + "_scale_inv").data;
      const int64_t scale_rows = (rows + c.fp8_block_rows - 1) / c.fp8_block_rows, half_scales = scale_cols / 2;
      std::vector<uint8_t>& sb = w.owned.emplace_back(static_cast<size_t>(scale_rows * half_scales) * 4);
      for (int64_t r = 0; r < scale_rows; ++r)
        std::memcpy(sb.data() + r * half_scales * 4, s + (r * scale_cols + k * half_scales) * 4,
                    static_cast<size_t>(half_scales) * 4);
      hw.block_scale = sb.data();
      hw.block_rows = c.fp8_block_rows;
      hw.block_cols = c.fp8_block_cols;
    }
    w.storage.push_back(backend.upload(hw));
    *slots[k] = w.storage.back().get();
  }
}

}  // namespace

ModelWeights load_weights(const ModelSource& src, backend::Backend& backend, bool with_mtp) {
  const ModelConfig& c = src.config;
  // A config far larger than its checkpoint is refused before its tensor list is built.
  const double implied = static_cast<double>(c.n_layers) * (16.0 + 3.0 * static_cast<double>(c.n_routed_experts));
  const double stored = static_cast<double>(src.tensors.size());
  if (implied > 2.0 * stored + 64.0 && !stacked_experts(src))
    fail(Errc::format, src.path + ": its config describes a model of about " + std::to_string(int64_t(implied)) +
                           " tensors (" + std::to_string(c.n_layers) + " layers, " +
                           std::to_string(c.n_routed_experts) + " experts) but the file holds " +
                           std::to_string(src.tensors.size()) + " tensors");
  ModelWeights w;
  if (with_mtp && c.num_nextn_predict_layers > 0) w.mtp = std::make_unique<MtpWeights>();
  std::vector<Expected> expected =
      expected_tensors(c, [&](const std::string& name) { return src.tensors.count(name) != 0; }, w);
  const int64_t first_unused = c.n_layers + (w.mtp ? 1 : 0);

  std::vector<std::string> missing, unexpected;
  std::set<std::string> known;
  for (const Expected& x : expected) {
    known.insert(x.name);
    auto it = src.tensors.find(x.name);
    if (it == src.tensors.end()) {
      missing.push_back(x.name);
      continue;
    }
    const TensorView& t = it->second;
    if (x.shape() != t.shape)
      fail(Errc::format, "tensor \"" + x.name + "\" in " + t.file + " has shape " + t.shape_string() +
                             " but the config implies " + x.shape_string());
    if (t.dtype == DType::f8_e4m3) {
      check_fp8_scale(src, x);
      known.insert(x.name + "_scale_inv");
    } else if (t.dtype == DType::i32 || t.dtype == DType::i64) {
      fail(Errc::unsupported, "tensor \"" + x.name + "\" has dtype " + dtype_name(t.dtype) +
                                  "; weights must be F32, F16, BF16, Q8_0, Q5_0, Q4_K, Q6_K or (with an FP8 "
                                  "quantization_config) F8_E4M3");
    }
    if (x.cols % block_elems(t.dtype) != 0)
      fail(Errc::format, "tensor \"" + x.name + "\" is " + dtype_name(t.dtype) + " but its rows of " +
                             std::to_string(x.cols) + " are not whole blocks of " +
                             std::to_string(block_elems(t.dtype)));
  }
  for (const auto& [name, view] : src.tensors)
    if (!known.count(name) && !ignorable(name, c, first_unused)) unexpected.push_back(name);
  if (!missing.empty() || !unexpected.empty()) {
    std::string msg = src.path + " does not match its config:";
    if (!missing.empty()) msg += " missing tensors: " + join_names(missing) + ".";
    if (w.mtp && std::all_of(missing.begin(), missing.end(), [&](const std::string& n) {
          return n.starts_with("model.layers." + std::to_string(c.n_layers) + ".");
        }))
      msg += " Its multi-token-prediction layer is incomplete: load the model with MTP off to ignore it.";
    if (!unexpected.empty()) msg += " unexpected tensors: " + join_names(unexpected) + ".";
    fail(Errc::format, msg);
  }

  const std::string mtp_prefix = "model.layers." + std::to_string(c.n_layers) + ".";
  for (const Expected& x : expected) {
    const TensorView& t = src.tensors.at(x.name);
    if (!x.name.starts_with(mtp_prefix)) w.n_parameters += static_cast<uint64_t>(t.numel());  // the main model's
    if (x.second) {
      upload_halves(src, x, t, backend, w);
      continue;
    }
    if (w.mtp && mtp_copy_of_main(src, x.name)) continue;  // set to the main tensor below
    backend::HostWeight hw{x.name, t.dtype, std::max<int64_t>(x.rows, 1) * std::max<int64_t>(x.heads, 1), x.cols, t.data};
    if (t.dtype == DType::f8_e4m3) {  // kept as FP8: the kernels scale each block as they read it
      hw.block_scale = src.tensors.at(x.name + "_scale_inv").data;
      hw.block_rows = c.fp8_block_rows;
      hw.block_cols = c.fp8_block_cols;
    }
    if (!x.slots) {
      w.storage.push_back(backend.upload(hw));
      *x.slot = w.storage.back().get();
    } else {  // one tensor per slab, in place
      const size_t slab = static_cast<size_t>(x.rows) * row_bytes(t.dtype, x.cols);
      for (size_t i = 0; i < x.slots->size(); ++i) {
        hw.data = t.data + i * slab;
        w.storage.push_back(backend.upload(hw));
        (*x.slots)[i] = w.storage.back().get();
      }
    }
  }
  if (c.tie_word_embeddings) w.lm_head = w.embed;
  if (w.mtp) {
    if (!w.mtp->embed) w.mtp->embed = w.embed;
    if (!w.mtp->head) w.mtp->head = w.lm_head;
    if (!w.mtp->head_norm) w.mtp->head_norm = w.norm;
  }
  return w;
}

bool mtp_copy_of_main(const ModelSource& src, const std::string& name) {
  const ModelConfig& c = src.config;
  const std::string mtp = "model.layers." + std::to_string(c.n_layers) + ".";
  std::string main;
  if (name == mtp + "embed_tokens.weight") main = "model.embed_tokens.weight";
  if (name == mtp + "shared_head.head.weight") main = c.tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight";
  if (main.empty()) return false;
  auto x = src.tensors.find(name), y = src.tensors.find(main);
  if (x == src.tensors.end() || y == src.tensors.end()) return false;
  const TensorView &s = x->second, &t = y->second;
  return s.dtype == t.dtype && s.shape == t.shape && s.nbytes == t.nbytes && s.dtype != DType::f8_e4m3 &&
         std::memcmp(s.data, t.data, s.nbytes) == 0;
}

uint64_t ModelWeights::decode_bytes(int64_t experts_per_token) const {
  auto bytes = [](const Tensor* t) -> uint64_t { return t ? t->nbytes() : 0; };
  uint64_t total = bytes(norm) + bytes(lm_head) + (embed ? bytes(embed) / static_cast<uint64_t>(embed->rows()) : 0);
  for (const LayerWeights& l : layers) {
    for (const Tensor* t : {l.input_norm, l.post_norm, l.q_a, l.q_a_norm, l.q_b, l.q, l.kv_a, l.kv_a_norm, l.kv_b, l.k_b,
                            l.v_b, l.o, l.gate, l.up, l.down, l.router, l.router_bias})
      total += bytes(t);
    const size_t n = l.experts.gate.size();
    if (n == 0) continue;
    uint64_t experts = 0;
    for (size_t e = 0; e < n; ++e) experts += bytes(l.experts.gate[e]) + bytes(l.experts.up[e]) + bytes(l.experts.down[e]);
    total += experts / n * static_cast<uint64_t>(experts_per_token);
  }
  return total;
}

}  // namespace sibyl::engine
