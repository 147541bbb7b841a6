#include "engine/formats/model_source.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/formats/checkpoint.h"
#include "engine/core/failure.h"
#include "engine/formats/file_util.h"

namespace sibyl::engine {
namespace fs = std::filesystem;

namespace {

std::string read_if_exists(const fs::path& p) {
  std::error_code ec;
  return fs::exists(p, ec) ? read_text_file(p.string()) : std::string();
}

// The first bytes of a file, or "" when it cannot be read.
std::string file_magic(const std::string& path, size_t n) {
  std::ifstream in(path, std::ios::binary);
  std::string magic(n, '\0');
  if (!in.read(magic.data(), static_cast<std::streamsize>(n))) return "";
  return magic;
}

}  // namespace

GenerationDefaults parse_generation_config(const std::string& text, const std::string& source) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) fail(Errc::format, source + ": must be a JSON object");
  GenerationDefaults g;
  auto number = [&](const char* key) -> std::optional<double> {
    if (!j.contains(key) || j[key].is_null()) return std::nullopt;
    if (!j[key].is_number()) fail(Errc::format, source + ": \"" + key + "\" must be a number");
    return j[key].get<double>();
  };
  if (auto v = number("temperature")) g.temperature = static_cast<float>(*v);
  if (auto v = number("top_p")) g.top_p = static_cast<float>(*v);
  if (auto v = number("top_k")) g.top_k = static_cast<int32_t>(std::clamp(*v, 0.0, 1e9));
  if (auto v = number("max_new_tokens")) g.max_new_tokens = static_cast<int32_t>(std::clamp(*v, 0.0, 1e9));
  return g;
}

std::unique_ptr<ModelSource> open_hf_directory(const std::string& dir) {
  auto ckpt = std::make_shared<Checkpoint>(dir);
  auto src = std::make_unique<ModelSource>();
  src->path = dir;
  src->format = "Hugging Face directory";
  src->config = ckpt->config();
  for (const auto& [name, view] : ckpt->tensors()) src->tensors.emplace(name, *view);
  src->keep_alive.push_back(ckpt);
  const fs::path root(dir);
  src->tokenizer_json = read_if_exists(root / "tokenizer.json");
  src->tokenizer_config_json = read_if_exists(root / "tokenizer_config.json");
  if (src->tokenizer_json.empty())
    src->text_missing = "the model directory " + dir + " has no tokenizer.json; use token ids";
  else if (src->tokenizer_config_json.empty())
    src->text_missing = "the model directory " + dir + " has no tokenizer_config.json (chat template)";
  const fs::path gen = root / "generation_config.json";
  if (std::string text = read_if_exists(gen); !text.empty())
    src->generation = parse_generation_config(text, gen.string());
  return src;
}

std::unique_ptr<ModelSource> open_pack(const std::string& path) {
  auto pack = std::make_shared<PackFile>(path);
  auto src = std::make_unique<ModelSource>();
  const PackMetadata& meta = pack->metadata();
  src->path = path;
  src->format = ".sibyl pack";
  src->config = meta.config;
  src->tensors = pack->tensors();
  src->tokenizer_json = meta.tokenizer_json;
  src->tokenizer_config_json = meta.tokenizer_config_json;
  if (src->tokenizer_json.empty())
    src->text_missing = path + " holds no tokenizer; use token ids";
  else if (src->tokenizer_config_json.empty())
    src->text_missing = path + " holds no chat template";
  src->generation = meta.generation;
  src->keep_alive.push_back(pack);
  return src;
}

std::unique_ptr<ModelSource> open_model_source(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) fail(Errc::io, "model path does not exist: " + path);
  if (fs::is_directory(path, ec)) return open_hf_directory(path);
  const std::string magic = file_magic(path, 8);
  if (magic.starts_with("GGUF")) return open_gguf(path);
  if (magic == "SIBYLPAK") return open_pack(path);
  fail(Errc::format, path + " is neither a model directory, a GGUF file nor a .sibyl pack (unknown first bytes)");
}

}  // namespace sibyl::engine
