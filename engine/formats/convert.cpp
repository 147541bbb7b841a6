#include "engine/formats/convert.h"
#include "engine/model/weights.h"

#include <fnmatch.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <thread>

#include "engine/core/failure.h"
#include "engine/formats/model_source.h"
#include "engine/formats/pack.h"
#include "engine/core/quant.h"

namespace sibyl::engine {
namespace {

// One output tensor: `slabs` × [rows, cols] values, produced slab by slab so that a stack of
// experts never has to exist in float32 all at once.
struct Planned {
  std::string name;
  std::vector<int64_t> shape;
  int64_t slabs = 1, rows = 0, cols = 0;
  std::string cls;
  DType source_dtype = DType::f32;
  bool reshaped = false;  // built from differently laid-out inputs (kv_b split, expert stack)
  std::function<const uint8_t*(int64_t slab)> raw;   // stored bytes of a slab in source_dtype
  std::function<void(int64_t slab, float* dst)> values;
  const TensorView* fp8_scale = nullptr;  // kept FP8: its scales travel along
  uint64_t numel() const { return static_cast<uint64_t>(slabs * rows * cols); }
};

std::string tensor_class(const std::string& n) {
  if (n.ends_with("embed_tokens.weight")) return "embedding";  // the MTP layer's copy too
  if (n == "lm_head.weight" || n.ends_with(".shared_head.head.weight")) return "output head";
  if (n.ends_with(".eh_proj.weight")) return "MTP projection";
  if (n.ends_with("layernorm.weight") || n.ends_with("norm.weight")) return "norms";
  if (n.find(".self_attn.") != std::string::npos) return "attention";
  if (n.find(".mlp.shared_experts.") != std::string::npos) return "shared experts";
  if (n.find(".mlp.experts.") != std::string::npos) return "routed experts";
  if (n.find(".mlp.gate.") != std::string::npos) return "router";
  if (n.find(".mlp.") != std::string::npos) return "dense MLP";
  return "other";
}

// Rotary caches, and layers past the main stack and its MTP layers: not part of the model.
// (The MTP layers are kept: speculative decoding drafts with them.)
bool dropped(const std::string& name, const ModelConfig& c) {
  if (name.ends_with(".rotary_emb.inv_freq") || name.ends_with("_scale_inv")) return true;
  const std::string prefix = "model.layers.";
  if (!name.starts_with(prefix)) return false;
  const int64_t layer = std::atoll(name.c_str() + prefix.size());
  return layer >= c.n_layers + c.num_nextn_predict_layers;
}

class Planner {
 public:
  // keep_fp8: FP8 experts stay per expert, with their scales (stacking would need stacked scales).
  Planner(const ModelSource& src, bool keep_fp8) : src_(src), keep_fp8_(keep_fp8) {}

  std::vector<Planned> plan() {
    std::map<std::string, std::map<int64_t, const TensorView*>> expert_groups;  // stacked name → experts
    for (const auto& [name, view] : src_.tensors) {
      if (dropped(name, src_.config) || mtp_copy_of_main(src_, name)) continue;
      if (name.ends_with(".self_attn.kv_b_proj.weight")) {
        split_kv_b(name, view);
      } else if (auto e = per_expert(name); e && !(keep_fp8_ && view.dtype == DType::f8_e4m3)) {
        expert_groups[e->first][e->second] = &view;
      } else {
        whole(name, view);
      }
    }
    for (const auto& [name, experts] : expert_groups) stack_experts(name, experts);
    return std::move(out_);
  }

 private:
  // "model.layers.L.mlp.experts.E.P.weight" → ("model.layers.L.mlp.experts.P.weight", E)
  static std::optional<std::pair<std::string, int64_t>> per_expert(const std::string& name) {
    const std::string key = ".mlp.experts.";
    const size_t at = name.find(key);
    if (at == std::string::npos) return std::nullopt;
    const size_t num = at + key.size(), dot = name.find('.', num);
    if (dot == std::string::npos || dot == num ||
        name.substr(num, dot - num).find_first_not_of("0123456789") != std::string::npos)
      return std::nullopt;
    return std::make_pair(name.substr(0, num) + name.substr(dot + 1), std::atoll(name.c_str() + num));
  }

  // Float32 values of rows [row0, row0 + n) of a stored tensor, FP8 scales applied.
  void read_rows(const TensorView& t, int64_t row0, int64_t n, float* dst) const {
    const int64_t cols = t.shape.back();
    const size_t rb = row_bytes(t.dtype, cols);
    for (int64_t r = 0; r < n; ++r) dequantize_row(t.dtype, t.data + (row0 + r) * rb, dst + r * cols, cols);
    if (t.dtype != DType::f8_e4m3) return;
    const TensorView& s = src_.tensors.at(t.name + "_scale_inv");
    const int64_t br = src_.config.fp8_block_rows, bc = src_.config.fp8_block_cols;
    const int64_t col_blocks = (cols + bc - 1) / bc;
    for (int64_t r = 0; r < n; ++r)
      for (int64_t c = 0; c < cols; ++c) {
        float scale;
        std::memcpy(&scale, s.data + 4 * (((row0 + r) / br) * col_blocks + c / bc), 4);
        dst[r * cols + c] *= scale;
      }
  }

  void whole(const std::string& name, const TensorView& t) {
    Planned p;
    p.name = name;
    p.shape = t.shape;
    p.cls = tensor_class(name);
    p.source_dtype = t.dtype;
    p.cols = t.shape.back();
    p.slabs = t.shape.size() == 3 ? t.shape[0] : 1;  // stacked experts / per-head tensors
    p.rows = t.numel() / p.cols / p.slabs;
    const size_t slab_bytes = static_cast<size_t>(p.rows) * row_bytes(t.dtype, p.cols);
    p.raw = [&t, slab_bytes](int64_t s) { return t.data + s * slab_bytes; };
    p.values = [this, &t, rows = p.rows](int64_t s, float* dst) { read_rows(t, s * rows, rows, dst); };
    if (t.dtype == DType::f8_e4m3) p.fp8_scale = &src_.tensors.at(name + "_scale_inv");
    out_.push_back(std::move(p));
  }

  // kv_b [heads·(nope+v), R] → k_b [heads, R, nope] (W_UK transposed per head), v_b [heads, v, R].
  void split_kv_b(const std::string& name, const TensorView& t) {
    const ModelConfig& c = src_.config;
    const int64_t H = c.n_heads, R = c.kv_lora_rank, dn = c.qk_nope_head_dim, dv = c.v_head_dim;
    const std::string prefix = name.substr(0, name.size() - std::string("kv_b_proj.weight").size());
    auto head_rows = [this, &t, R, dn, dv](int64_t h, std::vector<float>& buf) {
      buf.resize(static_cast<size_t>((dn + dv) * R));
      read_rows(t, h * (dn + dv), dn + dv, buf.data());
    };
    Planned k;
    k.name = prefix + "k_b_proj.weight";
    k.shape = {H, R, dn};
    k.slabs = H, k.rows = R, k.cols = dn;
    k.values = [head_rows, R, dn](int64_t h, float* dst) {
      std::vector<float> buf;
      head_rows(h, buf);
      for (int64_t r = 0; r < R; ++r)
        for (int64_t n = 0; n < dn; ++n) dst[r * dn + n] = buf[n * R + r];
    };
    Planned v;
    v.name = prefix + "v_b_proj.weight";
    v.shape = {H, dv, R};
    v.slabs = H, v.rows = dv, v.cols = R;
    v.values = [head_rows, R, dn, dv](int64_t h, float* dst) {
      std::vector<float> buf;
      head_rows(h, buf);
      std::copy(buf.begin() + dn * R, buf.begin() + (dn + dv) * R, dst);
    };
    for (Planned* p : {&k, &v}) {
      p->cls = "attention";
      p->source_dtype = t.dtype;
      p->reshaped = true;
      out_.push_back(std::move(*p));
    }
  }

  void stack_experts(const std::string& name, const std::map<int64_t, const TensorView*>& experts) {
    const TensorView& first = *experts.begin()->second;
    const auto n = static_cast<int64_t>(experts.size());
    if (experts.rbegin()->first != n - 1 || first.shape.size() != 2)
      fail(Errc::format, src_.path + ": the experts of " + name + " are not numbered 0.." + std::to_string(n - 1));
    std::vector<const TensorView*> list;
    bool same_dtype = true;
    for (const auto& [e, view] : experts) {
      if (view->shape != first.shape)
        fail(Errc::format, src_.path + ": " + view->name + " has shape " + view->shape_string() + ", expert 0 " +
                               first.shape_string());
      same_dtype = same_dtype && view->dtype == first.dtype;
      list.push_back(view);
    }
    Planned p;
    p.name = name;
    p.shape = {n, first.shape[0], first.shape[1]};
    p.slabs = n, p.rows = first.shape[0], p.cols = first.shape[1];
    p.cls = "routed experts";
    p.source_dtype = same_dtype ? first.dtype : DType::f32;
    p.reshaped = true;
    if (same_dtype && first.dtype != DType::f8_e4m3) p.raw = [list](int64_t s) { return list[s]->data; };
    p.values = [this, list, rows = p.rows](int64_t s, float* dst) { read_rows(*list[s], 0, rows, dst); };
    out_.push_back(std::move(p));
  }

  const ModelSource& src_;
  bool keep_fp8_;
  std::vector<Planned> out_;
};

bool storable(DType t) { return t != DType::f8_e4m3 && t != DType::i32 && t != DType::i64; }

// Float presets never round FP8 weights further: FP8 × block scale rarely fits a 16-bit float,
// and FP8 is already smaller. So FP8 stays FP8, and the small tensors split out of an FP8 kv_b
// become F32 (exact).
bool float_preset(const std::string& preset) {
  return preset == "keep" || preset == "f32" || preset == "f16" || preset == "bf16";
}

DType preset_type(const std::string& preset, const Planned& p) {
  if (p.source_dtype == DType::f8_e4m3 && float_preset(preset)) return p.reshaped ? DType::f32 : DType::f8_e4m3;
  if (preset == "keep") return p.source_dtype;
  if (preset == "q4_k") return p.cls == "routed experts" ? DType::q4_k : DType::q8_0;
  DType t;
  if (!dtype_from_name(preset.c_str(), t) || !storable(t)) fail(Errc::invalid_argument, "unknown preset " + preset);
  return t;
}

DType choose_type(const ConvertOptions& o, const Planned& p) {
  // Vectors and the router are tiny and precision-sensitive: always float32.
  if (p.shape.size() == 1 || p.cls == "router" || p.cls == "norms") return DType::f32;
  DType t = preset_type(o.preset, p);
  for (const auto& [glob, type] : o.overrides)
    if (fnmatch(glob.c_str(), p.name.c_str(), 0) == 0) t = type;
  if (t == DType::f8_e4m3) return p.fp8_scale ? t : DType::bf16;  // FP8 is only ever kept, never made
  return fit_row_type(t, p.cols);
}

// Quantizes `rows` rows of `cols` floats into dst, on up to n_threads threads.
void quantize_rows(DType t, const float* src, uint8_t* dst, int64_t rows, int64_t cols, int n_threads) {
  const size_t rb = row_bytes(t, cols);
  const int64_t workers = std::clamp<int64_t>(rows * cols / (1 << 16), 1, n_threads);
  auto work = [&](int64_t w) {
    for (int64_t r = rows * w / workers; r < rows * (w + 1) / workers; ++r)
      quantize_row(t, src + r * cols, dst + r * rb, cols);
  };
  std::vector<std::thread> pool;
  for (int64_t w = 1; w < workers; ++w) pool.emplace_back(work, w);
  work(0);
  for (auto& th : pool) th.join();
}

}  // namespace

DType fit_row_type(DType t, int64_t cols) {
  while (cols % block_elems(t) != 0)
    t = t == DType::q4_k ? DType::q5_0 : t == DType::q6_k || t == DType::q5_0 ? DType::q8_0 : DType::bf16;
  return t;
}

const std::vector<std::string>& convert_presets() {
  static const std::vector<std::string> p = {"keep", "f32", "f16", "bf16", "q8_0", "q6_k", "q4_k"};
  return p;
}

std::vector<std::pair<std::string, DType>> parse_type_overrides(const std::string& text) {
  std::vector<std::pair<std::string, DType>> out;
  size_t begin = 0;
  while (begin < text.size()) {
    size_t end = text.find(',', begin);
    if (end == std::string::npos) end = text.size();
    const std::string part = text.substr(begin, end - begin);
    const size_t eq = part.rfind('=');
    DType t;
    if (eq == std::string::npos || eq == 0 || !dtype_from_name(part.substr(eq + 1).c_str(), t) || !storable(t))
      fail(Errc::invalid_argument, "type override \"" + part +
                                       "\" must be GLOB=TYPE with TYPE one of F32, F16, BF16, Q8_0, Q5_0, Q4_K, Q6_K");
    out.emplace_back(part.substr(0, eq), t);
    begin = end + 1;
  }
  return out;
}

ConvertReport convert_model(const std::string& input, const std::string& output, const ConvertOptions& o) {
  const auto& presets = convert_presets();
  if (std::find(presets.begin(), presets.end(), o.preset) == presets.end())
    fail(Errc::invalid_argument, "unknown preset \"" + o.preset + "\" (keep, f32, f16, bf16, q8_0, q6_k, q4_k)");
  const int threads = o.n_threads > 0 ? o.n_threads : std::max(1u, std::thread::hardware_concurrency());
  const auto src = open_model_source(input);
  Planner planner(*src, float_preset(o.preset));  // the plan's readers refer to it and to the source
  const std::vector<Planned> plan = planner.plan();

  PackMetadata meta;
  meta.config = src->config;
  meta.tokenizer_json = src->tokenizer_json;
  meta.tokenizer_config_json = src->tokenizer_config_json;
  meta.generation = src->generation;
  meta.source = "converted from " + input + " (" + src->format + ", preset " + o.preset + ") by sibyl-convert";
  std::vector<DType> types;
  bool any_fp8 = false;
  for (const Planned& p : plan) {
    types.push_back(choose_type(o, p));
    any_fp8 = any_fp8 || types.back() == DType::f8_e4m3;
  }
  if (!any_fp8) meta.config.fp8_block_rows = meta.config.fp8_block_cols = 0;

  ConvertReport report;
  ConvertProgress progress;
  for (const Planned& p : plan) progress.total_params += p.numel();
  PackWriter writer(output, std::move(meta));
  std::vector<uint8_t> bytes;
  std::vector<float> values;
  for (size_t i = 0; i < plan.size(); ++i) {
    const Planned& p = plan[i];
    const DType t = types[i];
    const size_t slab_bytes = static_cast<size_t>(p.rows) * row_bytes(t, p.cols);
    bytes.resize(slab_bytes * static_cast<size_t>(p.slabs));
    for (int64_t s = 0; s < p.slabs; ++s) {
      uint8_t* dst = bytes.data() + s * slab_bytes;
      if (t == p.source_dtype && p.raw) {  // same type: the stored bytes as they are
        std::memcpy(dst, p.raw(s), slab_bytes);
        continue;
      }
      values.resize(static_cast<size_t>(p.rows * p.cols));
      p.values(s, values.data());
      quantize_rows(t, values.data(), dst, p.rows, p.cols, threads);
    }
    writer.add_tensor(p.name, t, p.shape, bytes.data(), bytes.size());
    if (t == DType::f8_e4m3)
      writer.add_tensor(p.name + "_scale_inv", DType::f32, p.fp8_scale->shape, p.fp8_scale->data, p.fp8_scale->nbytes);
    for (TensorClassStats* c : {&report.classes[p.cls], &report.total}) {
      c->tensors += 1;
      c->params += p.numel();
      c->bytes += bytes.size() + (t == DType::f8_e4m3 ? p.fp8_scale->nbytes : 0);
      c->params_by_type[t] += p.numel();
    }
    progress.done_params += p.numel();
    progress.tensor = p.name;
    if (o.progress) o.progress(progress);
  }
  writer.finish();
  report.file_bytes = writer.bytes_written();
  return report;
}

}  // namespace sibyl::engine
