// A loaded model: config, weights on a backend, RoPE tables, and the forward pass.
#pragma once
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "backends/backend.h"
#include "engine/chat/chat_format.h"
#include "engine/formats/model_source.h"
#include "engine/runtime/kv_pages.h"
#include "engine/runtime/scheduler_options.h"
#include "engine/runtime/seq_pages.h"
#include "engine/runtime/step_plan.h"
#include "engine/model/rope.h"
#include "engine/text/tokenizer.h"
#include "engine/chat/tool_calls.h"
#include "engine/model/weights.h"

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
  int64_t kv_cache_bytes = 0;               // the latent cache pool of all sessions; 0: kDefaultKvCacheBytes
  int64_t kv_page_tokens = 0;               // tokens per cache page; 0: kDefaultKvPageTokens
  bool mtp = true;  // load the first multi-token-prediction layer when the model has one
  SchedulerOptions scheduler;
};

constexpr int64_t kDefaultKvCacheBytes = int64_t{1} << 30;
constexpr int64_t kDefaultKvPageTokens = 64;

// One sequence's part of a forward step: tokens at positions [pos0, pos0 + n), whose latent
// rows live in `pages` (a page table that must already cover pos0 + n positions).
struct SeqStep {
  const int32_t* tokens = nullptr;
  int64_t n = 0;
  int64_t pos0 = 0;
  const std::vector<int32_t>* pages = nullptr;
  LogitsMode logits = LogitsMode::last;
  AttentionPath path = AttentionPath::automatic;  // automatic: see choose_attention_path
  const float* hidden = nullptr;  // forward_mtp: the main model's final-normed rows h_{p-1} [n, hidden]
};

// The attention path for a sequence's `n_tokens` rows over `context` positions on a backend
// whose results may depend on the batch (batch-invariant backends always go absorbed).
AttentionPath choose_attention_path(const ModelConfig& c, int64_t n_tokens, int64_t context);

class Model {
 public:
  static std::shared_ptr<Model> load(const std::string& path, const ModelLoadOptions& options);
  ~Model();
  // The shared_ptr's deleter: when the last reference goes on one of the model's own step
  // threads (an event callback), the model is destroyed on another thread, which can wait
  // for that step to end.
  static void destroy(Model* m);

  const ModelConfig& config() const { return source_->config; }
  const ModelSource& source() const { return *source_; }
  const ModelWeights& weights() const { return weights_; }
  const std::shared_ptr<backend::Backend>& backend() const { return backend_; }

  // The model's tokenizer and chat template; Errc::unsupported saying what is
  // missing or unrecognised when the model has none.
  const Tokenizer& tokenizer() const;
  const ChatFormat& chat_format() const;
  // The tool sets chats offered lately, compiled (see ToolSetCache).
  ToolSetCache& tool_sets() const { return tool_sets_; }

  // Identifies the weights (config, tensor names/types/shapes, sample bytes): session
  // states only load into the model they were saved from.
  uint64_t fingerprint() const { return fingerprint_; }

  // The lock every step and every use of kv_pages() takes: one step runs at a time. Recursive:
  // an event callback (run inside a step) may use other sessions.
  std::recursive_mutex& step_mutex() const { return kv_->mutex; }
  KvPages& kv_pages() { return *kv_->pages; }
  // The cache pool as sessions hold it: it outlives the model (empty once the model is gone).
  const std::shared_ptr<SharedKvPages>& shared_kv() const { return kv_; }
  class Scheduler& scheduler() { return *scheduler_; }

  // One step over the rows of several sequences (under step_mutex()); returns the kept
  // logits rows [rows, vocab], sequences in order, and when `hidden` is given every row's
  // final-normed hidden state [rows, hidden_size] (the MTP layer's input).
  void forward(const std::vector<SeqStep>& seqs, std::vector<float>& logits, StepObserver* observer = nullptr,
               std::vector<float>* hidden = nullptr);
  // The MTP layer (has_mtp()) over rows p >= 1 of several sequences: token t_p with the main
  // model's hidden h_{p-1} (SeqStep::hidden), stored in the MTP cache (layer n_layers of the
  // pool) at position p; its logits predict t_{p+1}.
  void forward_mtp(const std::vector<SeqStep>& seqs, std::vector<float>& logits);
  bool has_mtp() const { return weights_.mtp != nullptr; }
  // Runs the page copies of copy-on-write in a step of their own.
  void copy_pages(const std::vector<PageCopy>& copies);
  // Steps that ran split in lanes (run_step) since the model loaded.
  int64_t lane_steps() const { return lane_steps_; }

 private:
  Model() = default;
  StepPlan& plan(const StepPlan::Key& key);
  StepPlan& prepare_step(const std::vector<SeqStep>& seqs, bool observed, bool mtp, backend::StepBatch& batch,
                         int lane);
  // The ops of a step on its plan, through finish_step into logits [logits_rows, vocab] (and
  // hidden [rows, hidden_size] when not null).
  using StepBody = std::function<void(StepPlan& a, const backend::StepBatch& batch, float* logits, float* hidden)>;
  // Prepares and runs a step: in lanes side by side when the backend has them and the batch
  // splits evenly (see lane_cuts in deepseek.cpp), else as one.
  void run_step(const std::vector<SeqStep>& seqs, bool observed, bool mtp, const StepBody& body,
                std::vector<float>& logits, std::vector<float>* hidden);
  void finish_step(StepPlan& a, const backend::Tensor& head, float* logits, float* hidden);
  static constexpr size_t kMaxPlans = 16;
  static constexpr int kMaxLanes = 8;  // a split step's plans all stay cached while it runs
  static_assert(static_cast<size_t>(kMaxLanes) < kMaxPlans);

  void load_text_support();
  std::shared_ptr<backend::Backend> backend_;
  std::unique_ptr<ModelSource> source_;  // keeps the weight memory maps alive
  ModelWeights weights_;
  RopeSetup rope_;
  std::unique_ptr<backend::Tensor> inv_freq_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<ChatFormat> chat_format_;
  std::string text_unavailable_;  // why tokenizer_/chat_format_ are missing
  mutable ToolSetCache tool_sets_;
  std::shared_ptr<SharedKvPages> kv_;
  std::unique_ptr<class Scheduler> scheduler_;
  std::list<std::unique_ptr<StepPlan>> plans_;  // most recently used first
  uint64_t plans_made_ = 0;
  uint64_t fingerprint_ = 0;
  StepInputs inputs_;
  struct Lane {  // one lane of a split step
    std::vector<SeqStep> seqs;
    backend::StepBatch batch;
    StepPlan* plan = nullptr;
    int64_t first_kept = 0, first_row = 0;  // where its logits and hidden rows go in the step's
  };
  std::vector<Lane> lanes_;
  int64_t lane_steps_ = 0;
};

}  // namespace sibyl::engine
