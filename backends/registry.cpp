// Backend selection: which backends are built in, and `auto` = the first usable of CUDA, Vulkan, CPU.
#include "backend.h"
#include "failure.h"
#include "log.h"

namespace sibyl::backend {

#if SIBYL_WITH_CUDA
std::unique_ptr<Backend> create_cuda_backend(const BackendOptions& options);
#endif
#if SIBYL_WITH_VULKAN
std::unique_ptr<Backend> create_vulkan_backend(const BackendOptions& options);
#endif

bool backend_built(BackendKind kind) {
  switch (kind) {
    case BackendKind::automatic:
    case BackendKind::cpu: return true;
    case BackendKind::cuda: return SIBYL_WITH_CUDA != 0;
    case BackendKind::vulkan: return SIBYL_WITH_VULKAN != 0;
  }
  return false;
}

const char* backend_kind_name(BackendKind kind) {
  switch (kind) {
    case BackendKind::automatic: return "auto";
    case BackendKind::cpu: return "cpu";
    case BackendKind::cuda: return "cuda";
    case BackendKind::vulkan: return "vulkan";
  }
  return "?";
}

std::unique_ptr<Backend> create_backend(BackendKind kind, const BackendOptions& options) {
  using engine::Errc;
  if (kind == BackendKind::cpu) return create_cpu_backend(options);
  if (!backend_built(kind))
    engine::fail(Errc::backend, std::string("the ") + backend_kind_name(kind) +
                                    " backend is not built into this library (configure with SIBYL_" +
                                    (kind == BackendKind::cuda ? "CUDA" : "VULKAN") + "=ON)");
#if SIBYL_WITH_CUDA
  if (kind == BackendKind::cuda) return create_cuda_backend(options);
#endif
#if SIBYL_WITH_VULKAN
  if (kind == BackendKind::vulkan) return create_vulkan_backend(options);
#endif
  // automatic: GPUs first; a backend that finds no usable device says why in the log.
  for (BackendKind k : {BackendKind::cuda, BackendKind::vulkan}) {
    if (!backend_built(k)) continue;
    try {
      return create_backend(k, options);
    } catch (const engine::Failure& e) {
      if (e.code() != Errc::backend) throw;
      engine::log(engine::LogLevel::info, std::string("backend auto: ") + e.what() + "; trying the next");
    }
  }
  return create_cpu_backend(options);
}

}  // namespace sibyl::backend
