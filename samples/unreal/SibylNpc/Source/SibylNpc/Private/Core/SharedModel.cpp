#include "SharedModel.h"

#include "SibylSdk.h"

#include <map>
#include <mutex>
#include <utility>

namespace sibyl_npc {
namespace {

// The live models by config. Entries are weak: the registry never keeps a model loaded.
// Never destroyed, so a holder released during static destruction finds it intact.
struct Registry {
    std::mutex mutex;
    std::map<std::string, std::weak_ptr<SharedModel>> models;
};

Registry& registry() {
    static Registry* r = new Registry;
    return *r;
}

std::string config_key(const ModelConfig& c) {
    return c.path + '\n' + std::to_string(static_cast<int>(c.backend)) + ' ' + std::to_string(c.cpu_threads) + ' ' +
           std::to_string(c.worker_threads) + ' ' + std::to_string(c.worker_nice) + ' ' +
           std::to_string(c.kv_cache_bytes);
}

sibyl::Backend sdk_backend(ModelConfig::Backend b) {
    switch (b) {
        case ModelConfig::Backend::Cpu: return sibyl::Backend::Cpu;
        case ModelConfig::Backend::Cuda: return sibyl::Backend::Cuda;
        case ModelConfig::Backend::Vulkan: return sibyl::Backend::Vulkan;
        default: return sibyl::Backend::Auto;
    }
}

void set_error(std::string* out, std::string message) {
    if (out) *out = std::move(message);
}

}  // namespace

SharedModel::SharedModel(ModelConfig config, sibyl_model* handle, std::string description) noexcept
    : config_(std::move(config)), handle_(handle), description_(std::move(description)) {}

SharedModel::~SharedModel() {
    // Brains hold the model, so their sessions and requests are gone by now; the registry's
    // weak entry simply expires.
    sibyl_model_destroy(handle_);
}

std::string SharedModel::default_model_path(std::string* error) {
    sibyl::Result<std::string> path = sibyl::Model::default_model_path();
    if (!path) {
        set_error(error, path.error().message);
        return {};
    }
    return *path;
}

std::shared_ptr<SharedModel> SharedModel::acquire(const ModelConfig& config, std::string* error) {
    // A library older than the headers this was built with (a stale DLL next to the game)
    // would misread the option structs: refuse it with a clear message instead.
    if (!sibyl::abi_compatible()) {
        set_error(error, "libsibyl " + std::string(sibyl::version()) + " cannot serve a program built against " +
                             std::to_string(SIBYL_ABI_VERSION_MAJOR) + "." + std::to_string(SIBYL_ABI_VERSION_MINOR));
        return nullptr;
    }
    Registry& reg = registry();
    const std::string key = config_key(config);
    // Held while loading, so two NPCs spawned together never load the model twice.
    std::lock_guard<std::mutex> lock(reg.mutex);
    const auto found = reg.models.find(key);
    if (found != reg.models.end())
        if (std::shared_ptr<SharedModel> live = found->second.lock()) return live;

    sibyl::ModelOptions options;
    options.backend = sdk_backend(config.backend);
    options.n_threads = config.cpu_threads;
    options.worker_threads = config.worker_threads;
    options.worker_nice = config.worker_nice;
    options.kv_cache_bytes = config.kv_cache_bytes;
    // An empty path is the library's default model (sibyl_model_load with NULL, ABI 0.8).
    sibyl::Result<sibyl::Model> model =
        config.path.empty() ? sibyl::Model::load_default(options) : sibyl::Model::load(config.path, options);
    if (!model) {
        set_error(error, model.error().message);
        return nullptr;
    }

    std::string description = config.path.empty() ? default_model_path() : config.path;
    if (sibyl::Result<sibyl::ModelInfo> info = model->info()) {
        description += " (" + info->backend + " backend, " + std::to_string(info->n_parameters) + " parameters, " +
                       std::to_string(info->worker_threads) + " worker thread" +
                       (info->worker_threads == 1 ? "" : "s") + ")";
    }
    std::shared_ptr<SharedModel> shared(new SharedModel(config, model->release(), std::move(description)));
    reg.models[key] = shared;
    // Drop the entries of models nobody holds any more.
    for (auto it = reg.models.begin(); it != reg.models.end();) it = it->second.expired() ? reg.models.erase(it) : ++it;
    return shared;
}

int64_t SharedModel::step(uint64_t budget_us, std::string* error) {
    if (!needs_steps()) return 0;
    sibyl_step_report report{};
    report.struct_size = sizeof report;
    const sibyl_status st = sibyl_model_step(handle_, budget_us, &report);
    if (st != SIBYL_OK) {
        set_error(error, sibyl::Error::from_status(st).message);
        return -1;
    }
    return report.rows;
}

}  // namespace sibyl_npc
