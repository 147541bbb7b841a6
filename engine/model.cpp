#include "model.h"

#include "failure.h"
#include "log.h"

namespace sibyl::engine {

std::shared_ptr<Model> Model::load(const std::string& path, const ModelLoadOptions& options) {
  std::shared_ptr<Model> m(new Model());
  m->checkpoint_ = std::make_unique<Checkpoint>(path);
  backend::BackendOptions bo;
  bo.n_threads = options.n_threads;
  m->backend_ = backend::create_cpu_backend(bo);
  m->weights_ = load_weights(*m->checkpoint_, *m->backend_);
  m->rope_ = compute_rope(m->config());
  const auto half = static_cast<int64_t>(m->rope_.inv_freq.size());
  m->inv_freq_ = m->backend_->alloc(DType::f32, 1, half);
  m->backend_->write(*m->inv_freq_, m->rope_.inv_freq.data(), static_cast<size_t>(half) * 4);
  log(LogLevel::info, "loaded " + path + " (" + m->config().model_type + ", " +
                          std::to_string(m->weights_.n_parameters) + " parameters) on " + m->backend_->name());
  return m;
}

Model::~Model() = default;

}  // namespace sibyl::engine
