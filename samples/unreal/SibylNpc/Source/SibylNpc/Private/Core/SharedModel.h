// One loaded Sibyl model shared by every NPC: the engine-independent part of the plugin.
// Only standard C++17 here (no Sibyl or Unreal headers), so an Unreal translation unit can
// include it without seeing the SDK.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

struct sibyl_model;  // the C handle (sibyl.h); only the core's .cpp files use it

namespace sibyl_npc {

/** How the shared model is loaded. Two NPCs asking for equal configs share one model. */
struct ModelConfig {
    enum class Backend { Auto, Cpu, Cuda, Vulkan };

    std::string path;             // model directory, GGUF file or .sibyl pack; empty: the library's
                                  // default model (sibyl_model_load with a NULL path)
    Backend backend = Backend::Auto;
    int32_t cpu_threads = 0;      // the CPU backend's threads; 0 = all hardware threads
    int32_t worker_threads = -1;  // library threads running the NPCs' requests: -1 = one (default),
                                  // 0 = none, the game calls SharedModel::step once per frame
    int32_t worker_nice = 10;     // Linux nice value of those threads (below the game's)
    uint64_t kv_cache_bytes = 0;  // the cache pool every NPC's session shares; 0 = 1 GiB
};

/**
 * A loaded model, reference-counted: NPC brains hold a std::shared_ptr to it, so it lives
 * as long as the last of them (the holder may be released first, in any order). acquire()
 * hands out the same model to every caller while any holder of it is alive.
 */
class SharedModel {
public:
    /**
     * The model for `config`: the live one if any holder still has it, else loaded now
     * (synchronously: call it on a loading screen). Null on failure, with the reason in
     * `*error` (may be null). Thread-safe.
     */
    static std::shared_ptr<SharedModel> acquire(const ModelConfig& config, std::string* error = nullptr);

    /** The directory the library loads for an empty path, or "" with the reason in `*error`. */
    static std::string default_model_path(std::string* error = nullptr);

    ~SharedModel();
    SharedModel(const SharedModel&) = delete;
    SharedModel& operator=(const SharedModel&) = delete;

    const ModelConfig& config() const noexcept { return config_; }
    /** One line for the log: path, backend, parameters, worker threads. */
    const std::string& description() const noexcept { return description_; }
    sibyl_model* handle() const noexcept { return handle_; }

    /** True when the game must call step() every frame (worker_threads == 0). */
    bool needs_steps() const noexcept { return config_.worker_threads == 0; }

    /**
     * With worker_threads == 0: run one batched step of every NPC's request on this thread,
     * sized to take about `budget_us` microseconds. Returns the tokens run (0: nothing was
     * pending), or -1 on failure (reason in `*error`). Does nothing (0) with worker threads.
     */
    int64_t step(uint64_t budget_us, std::string* error = nullptr);

private:
    SharedModel(ModelConfig config, sibyl_model* handle, std::string description) noexcept;

    ModelConfig config_;
    sibyl_model* handle_ = nullptr;  // owned: sibyl_model_destroy in the destructor
    std::string description_;
};

}  // namespace sibyl_npc
