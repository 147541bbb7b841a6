// Model conversion to a .sibyl pack: any source Sibyl opens (Hugging Face bf16/fp16/fp32/FP8,
// GGUF, another pack) → the canonical layout the kernels want (split MLA k_b/v_b, stacked
// experts), each tensor in the element type a preset and per-tensor overrides choose.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "engine/core/dtype.h"

namespace sibyl::engine {

struct ConvertProgress {
  uint64_t done_params = 0, total_params = 0;
  std::string tensor;  // the output tensor just written
};

struct ConvertOptions {
  // "keep" (source types where the layout allows), "f32", "f16", "bf16", "q8_0", "q6_k",
  // "q4_k" (routed experts Q4_K, the rest of the matrices Q8_0). Float presets keep FP8
  // weights as FP8 (exact and smaller). See docs/MODEL_FILES.md.
  std::string preset = "bf16";
  // (glob on the canonical output name, type), applied in order after the preset; e.g.
  // {"*.mlp.experts.*", DType::q4_k}. Vectors (norms, biases) and the router stay float32.
  std::vector<std::pair<std::string, DType>> overrides;
  int n_threads = 0;  // 0: all hardware threads
  std::function<void(const ConvertProgress&)> progress;
};

struct TensorClassStats {
  uint64_t tensors = 0, params = 0, bytes = 0;
  std::map<DType, uint64_t> params_by_type;
  double bits_per_weight() const { return params ? 8.0 * static_cast<double>(bytes) / static_cast<double>(params) : 0; }
};

struct ConvertReport {
  std::map<std::string, TensorClassStats> classes;  // "routed experts", "attention", …
  TensorClassStats total;
  uint64_t file_bytes = 0;
};

// `wanted`, or llama.cpp's fallback when a row of `cols` is not whole blocks of it:
// Q4_K → Q5_0, Q6_K → Q8_0, Q5_0/Q8_0 → BF16.
DType fit_row_type(DType wanted, int64_t cols);

// Names the presets convert_model accepts.
const std::vector<std::string>& convert_presets();

// Parses "GLOB=TYPE[,GLOB=TYPE…]"; Errc::invalid_argument naming the bad part.
std::vector<std::pair<std::string, DType>> parse_type_overrides(const std::string& text);

// Converts `input` (directory, GGUF or pack) into the pack `output`. Errc::invalid_argument for
// an unknown preset; the source's own errors as opening it would give them.
ConvertReport convert_model(const std::string& input, const std::string& output, const ConvertOptions& options);

}  // namespace sibyl::engine
