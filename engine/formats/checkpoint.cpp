#include "engine/formats/checkpoint.h"

#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "engine/core/failure.h"

namespace sibyl::engine {
namespace fs = std::filesystem;

Checkpoint::Checkpoint(const std::string& dir) : dir_(dir) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) fail(Errc::io, "model path does not exist: " + dir);
  if (!fs::is_directory(dir, ec))
    fail(Errc::io, dir + " is not a directory (expected a Hugging Face model directory)");
  fs::path root(dir);
  if (!fs::exists(root / "config.json", ec)) fail(Errc::io, "no config.json in " + dir);
  config_ = load_model_config((root / "config.json").string());

  fs::path index = root / "model.safetensors.index.json";
  if (fs::exists(index, ec)) {
    std::string path = index.string();
    nlohmann::json j = nlohmann::json::parse(read_text_file(path), nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
      fail(Errc::format, path + ": expected a JSON object with a \"weight_map\" object");
    std::map<std::string, std::string> wanted;  // tensor -> shard
    std::set<std::string> shards;
    for (auto& [name, file] : j["weight_map"].items()) {
      if (!file.is_string()) fail(Errc::format, path + ": weight_map[\"" + name + "\"] must be a file name");
      std::string f = file.get<std::string>();
      if (f.empty() || f.find('/') != std::string::npos || f.find('\\') != std::string::npos || f == "..")
        fail(Errc::format, path + ": shard name \"" + f + "\" must be a plain file name in the model directory");
      wanted[name] = f;
      shards.insert(f);
    }
    for (const auto& shard : shards) add_file(shard);
    for (const auto& [name, shard] : wanted) {
      auto it = tensors_.find(name);
      if (it == tensors_.end() || fs::path(it->second->file).filename() != shard)
        fail(Errc::format, path + ": tensor \"" + name + "\" is listed in " + shard + " but not stored there");
    }
  } else if (fs::exists(root / "model.safetensors", ec)) {
    add_file("model.safetensors");
  } else {
    fail(Errc::io, "no model.safetensors or model.safetensors.index.json in " + dir);
  }
}

void Checkpoint::add_file(const std::string& file_name) {
  std::string path = (fs::path(dir_) / file_name).string();
  files_.push_back(std::make_unique<SafetensorsFile>(path));
  for (const auto& [name, view] : files_.back()->tensors()) {
    if (!tensors_.emplace(name, &view).second)
      fail(Errc::format, "tensor \"" + name + "\" is stored twice (again in " + path + ")");
  }
}

}  // namespace sibyl::engine
