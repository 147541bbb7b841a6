// A loaded model: config, weights on a backend, RoPE tables, and the forward pass.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "backend.h"
#include "chat_format.h"
#include "model_source.h"
#include "rope.h"
#include "tokenizer.h"
#include "weights.h"

namespace sibyl::engine {

enum class LogitsMode { last, all, none };
enum class AttentionPath { automatic, absorbed, expanded };

// Optional debug taps of one forward step (tests compare them with the reference).
struct StepObserver {
  virtual ~StepObserver() = default;
  // index 0: embeddings; l + 1: output of layer l; n_layers: after the final norm.
  virtual void hidden(int64_t index, const std::vector<float>& rows) = 0;
  // MoE layer l: chosen experts [n, top_k], their weights, raw router logits [n, n_experts].
  virtual void route(int64_t layer, const std::vector<int32_t>& ids, const std::vector<float>& weights,
                     const std::vector<float>& raw_logits) = 0;
};

struct ModelLoadOptions {
  backend::BackendKind backend = backend::BackendKind::automatic;
  backend::BackendOptions backend_options;  // threads, device, memory budget, shared Vulkan device
};

class Model {
 public:
  static std::shared_ptr<Model> load(const std::string& path, const ModelLoadOptions& options);
  ~Model();

  const ModelConfig& config() const { return source_->config; }
  const ModelSource& source() const { return *source_; }
  const ModelWeights& weights() const { return weights_; }
  const std::shared_ptr<backend::Backend>& backend() const { return backend_; }

  // The model's tokenizer and chat template; Errc::unsupported saying what is
  // missing or unrecognised when the model has none.
  const Tokenizer& tokenizer() const;
  const ChatFormat& chat_format() const;

  // Runs `n` tokens at positions [pos0, pos0 + n) against `cache` (which must hold
  // pos0 + n rows) and returns the requested logits rows [rows, vocab].
  void forward(backend::KvCache& cache, const int32_t* tokens, int64_t n, int64_t pos0, LogitsMode mode,
               AttentionPath path, std::vector<float>& logits, StepObserver* observer = nullptr) const;

 private:
  Model() = default;
  void load_text_support();
  std::shared_ptr<backend::Backend> backend_;
  std::unique_ptr<ModelSource> source_;  // keeps the weight memory maps alive
  ModelWeights weights_;
  RopeSetup rope_;
  std::unique_ptr<backend::Tensor> inv_freq_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<ChatFormat> chat_format_;
  std::string text_unavailable_;  // why tokenizer_/chat_format_ are missing
};

}  // namespace sibyl::engine
