#include "engine/model/model.h"

#include <xxhash.h>

#include <algorithm>
#include <thread>


#include "engine/core/failure.h"
#include "engine/core/log.h"
#include "engine/runtime/scheduler.h"

namespace sibyl::engine {

static uint64_t model_fingerprint(const ModelSource& src);

std::shared_ptr<Model> Model::load(const std::string& path, const ModelLoadOptions& options) {
  std::shared_ptr<Model> m(new Model(), &Model::destroy);
  m->source_ = open_model_source(path);
  backend::BackendOptions bo = options.backend_options;
  // With library workers running the steps, the backend's own threads share their priority.
  if (options.scheduler.workers > 0 && bo.thread_nice == 0) bo.thread_nice = options.scheduler.worker_nice;
  m->backend_ = backend::create_backend(options.backend, bo);
  m->weights_ = load_weights(*m->source_, *m->backend_, options.mtp);
  m->rope_ = compute_rope(m->config());
  const auto half = static_cast<int64_t>(m->rope_.inv_freq.size());
  m->inv_freq_ = m->backend_->alloc(DType::f32, 1, half);
  m->backend_->write(*m->inv_freq_, m->rope_.inv_freq.data(), static_cast<size_t>(half) * 4);
  KvPagesOptions kv;
  kv.page_tokens = options.kv_page_tokens > 0 ? options.kv_page_tokens : kDefaultKvPageTokens;
  kv.budget_bytes = options.kv_cache_bytes > 0 ? options.kv_cache_bytes : kDefaultKvCacheBytes;
  m->kv_ = std::make_shared<SharedKvPages>();
  m->kv_->pages = std::make_unique<KvPages>(*m->backend_, m->config().n_layers + (m->has_mtp() ? 1 : 0),
                                             m->config().kv_width(), kv);
  m->scheduler_ = std::make_unique<Scheduler>(*m, options.scheduler);
  m->fingerprint_ = model_fingerprint(*m->source_);
  m->load_text_support();
  log(LogLevel::info, "loaded " + path + " (" + m->source_->format + ", " + m->config().model_type + ", " +
                          std::to_string(m->weights_.n_parameters) + " parameters) on " + m->backend_->name());
  return m;
}

static uint64_t model_fingerprint(const ModelSource& src) {
  const ModelConfig& c = src.config;
  std::string key = c.model_type;
  for (int64_t v : {c.vocab_size, c.hidden_size, c.intermediate_size, c.n_layers, c.n_heads, c.q_lora_rank,
                    c.kv_lora_rank, c.qk_nope_head_dim, c.qk_rope_head_dim, c.v_head_dim, c.n_routed_experts,
                    c.n_shared_experts, c.moe_intermediate_size, c.n_experts_per_tok, c.first_k_dense_replace})
    key.append(";").append(std::to_string(v));
  for (const auto& [name, t] : src.tensors) {  // sorted by name
    key.append(";").append(name).append(":").append(std::to_string(static_cast<int>(t.dtype)));
    key.append(":").append(t.shape_string());
    if (name == "model.embed_tokens.weight" || name == "lm_head.weight")
      key.append(reinterpret_cast<const char*>(t.data), std::min<size_t>(t.nbytes, 4096));
  }
  return XXH3_64bits(key.data(), key.size());
}

void Model::destroy(Model* m) {
  if (m->scheduler_ && (m->scheduler_->on_worker_thread() || m->scheduler_->stepping_here())) {
    std::thread([m] { delete m; }).detach();
    return;
  }
  delete m;
}

Model::~Model() {
  scheduler_.reset();  // stops its threads, ends pending requests
  if (!kv_) return;
  std::lock_guard lock(kv_->mutex);
  plans_.clear();  // backend tensors before the backend
  kv_->pages.reset();
}

void Model::copy_pages(const std::vector<PageCopy>& copies) {
  if (copies.empty()) return;
  backend_->begin_step(0);
  for (const PageCopy& c : copies) backend_->copy_kv_page(kv_pages().pool(), c.dst, c.src);
  backend_->end_step();
}

void Model::load_text_support() {
  const ModelSource& src = *source_;
  text_unavailable_ = src.text_missing;
  if (src.tokenizer_json.empty()) return;
  tokenizer_ = Tokenizer::from_json(src.tokenizer_json, src.path + " (tokenizer)");  // a broken one fails the load
  if (src.tokenizer_config_json.empty()) return;
  try {
    chat_format_ = std::make_unique<ChatFormat>(
        ChatFormat::from_tokenizer_config(src.tokenizer_config_json, src.path + " (chat template)"));
  } catch (const Failure& e) {  // the model still runs; only chat calls report this
    if (e.code() != Errc::unsupported) throw;
    text_unavailable_ = e.what();
    log(LogLevel::warn, text_unavailable_);
  }
}

const Tokenizer& Model::tokenizer() const {
  if (!tokenizer_) fail(Errc::unsupported, text_unavailable_);
  return *tokenizer_;
}

const ChatFormat& Model::chat_format() const {
  if (!chat_format_) fail(Errc::unsupported, text_unavailable_);
  return *chat_format_;
}

}  // namespace sibyl::engine
