// A Hugging Face checkpoint directory: config.json plus one or many safetensors shards.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engine/model/config.h"
#include "engine/formats/safetensors.h"

namespace sibyl::engine {

class Checkpoint {
 public:
  // Reads config.json, then model.safetensors.index.json (shards) or model.safetensors.
  explicit Checkpoint(const std::string& dir);

  const ModelConfig& config() const { return config_; }
  const std::map<std::string, const TensorView*>& tensors() const { return tensors_; }
  const std::string& dir() const { return dir_; }

 private:
  void add_file(const std::string& file_name);

  std::string dir_;
  ModelConfig config_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const TensorView*> tensors_;
};

}  // namespace sibyl::engine
