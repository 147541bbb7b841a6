// Where a model comes from — a Hugging Face directory, a GGUF file or a .sibyl pack — read
// into one form: the config, the tensors under the engine's canonical names (see
// docs/MODEL_FILES.md), and the text the tokenizer and chat format are built from.
#pragma once
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/model/config.h"
#include "engine/formats/pack.h"  // GenerationDefaults
#include "engine/formats/safetensors.h"

namespace sibyl::engine {

struct ModelSource {
  std::string path;
  std::string format;  // "Hugging Face directory", "GGUF", ".sibyl pack"
  ModelConfig config;
  // Canonical names: Hugging Face's, plus the split MLA up-projections
  // (self_attn.k_b_proj.weight [heads, kv_lora, nope], self_attn.v_b_proj.weight
  // [heads, v, kv_lora]) and stacked experts (mlp.experts.{gate,up,down}_proj.weight [experts, …]).
  std::map<std::string, TensorView> tensors;
  std::string tokenizer_json;         // tokenizer.json text; empty: none
  std::string tokenizer_config_json;  // tokenizer_config.json text (chat template); empty: none
  std::string text_missing;           // why one of the two is empty
  GenerationDefaults generation;
  std::vector<std::shared_ptr<const void>> keep_alive;  // the mappings the views point into
};

// Opens by kind: a directory is a Hugging Face checkpoint, a file starting with "GGUF" a GGUF
// file, one starting with "SIBYLPAK" a pack. Errc::io when absent, Errc::format/unsupported
// naming what is wrong.
std::unique_ptr<ModelSource> open_model_source(const std::string& path);
std::unique_ptr<ModelSource> open_hf_directory(const std::string& dir);
std::unique_ptr<ModelSource> open_gguf(const std::string& path);  // gguf_import.cpp
std::unique_ptr<ModelSource> open_pack(const std::string& path);

// generation_config.json text → defaults (unknown keys ignored, wrong types Errc::format).
GenerationDefaults parse_generation_config(const std::string& json_text, const std::string& source);

}  // namespace sibyl::engine
