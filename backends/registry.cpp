// Backend selection: which backends are built in, and `auto` = the first usable of CUDA, Vulkan, CPU.
#include <cstdlib>
#include <filesystem>
#include <system_error>

#include "backends/backend.h"
#include "engine/core/failure.h"
#include "engine/core/log.h"

namespace sibyl::backend {
namespace {

// Whether this machine shows a GPU at all. `auto` skips the GPU probes when it does not: opening
// the Vulkan loader maps every installed driver (tens of MiB, never returned by Mesa) and costs
// tens of ms — too much for a library that must load in milliseconds on a player's PC without a
// GPU. On Linux every GPU driver exposes a device node (Mesa and AMD: /dev/dri/renderD*, NVIDIA:
// /dev/nvidia*, WSL: /dev/dxg); elsewhere, assume one may exist.
bool gpu_device_present() {
#if defined(__linux__)
  namespace fs = std::filesystem;
  std::error_code ec;
  for (const char* node : {"/dev/nvidiactl", "/dev/nvidia0", "/dev/dxg"})
    if (fs::exists(node, ec)) return true;
  for (fs::directory_iterator it("/dev/dri", ec), end; !ec && it != end; it.increment(ec))
    if (it->path().filename().string().rfind("renderD", 0) == 0) return true;
  return false;
#else
  return true;
#endif
}

// A CPU Vulkan implementation (lavapipe) was asked for: it needs no device node.
bool cpu_vulkan_allowed() {
  const char* v = std::getenv("SIBYL_VULKAN_ALLOW_CPU");
  return v && *v && *v != '0';
}

}  // namespace

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
  const bool gpu = gpu_device_present();
  if (!gpu) engine::log(engine::LogLevel::info, "backend auto: no GPU device node (/dev/dri/renderD*, /dev/nvidia*)");
  for (BackendKind k : {BackendKind::cuda, BackendKind::vulkan}) {
    if (!backend_built(k)) continue;
    if (!gpu && !(k == BackendKind::vulkan && (cpu_vulkan_allowed() || options.vulkan_import))) continue;
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
