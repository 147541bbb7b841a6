#include "backends/vulkan/vk_loader.h"

#include <dlfcn.h>

#include "engine/core/failure.h"

namespace sibyl::backend::vulkan {

using engine::Errc;
using engine::fail;

PFN_vkGetInstanceProcAddr Fns::system_loader(std::string& why) {
  // Opened once per process and kept: unloading the loader while any instance lives is unsafe.
  static void* lib = [] {
    void* h = dlopen("libvulkan.so.1", RTLD_NOW | RTLD_LOCAL);
    return h ? h : dlopen("libvulkan.so", RTLD_NOW | RTLD_LOCAL);
  }();
  if (!lib) {
    why = "no Vulkan loader (libvulkan.so.1) on this system";
    return nullptr;
  }
  auto gipa = reinterpret_cast<PFN_vkGetInstanceProcAddr>(dlsym(lib, "vkGetInstanceProcAddr"));
  if (!gipa) why = "the Vulkan loader has no vkGetInstanceProcAddr";
  return gipa;
}

void Fns::load_global(PFN_vkGetInstanceProcAddr gipa) {
  vkGetInstanceProcAddr = gipa;
#define SIBYL_VK_LOAD(name) name = reinterpret_cast<PFN_##name>(gipa(VK_NULL_HANDLE, #name));
  SIBYL_VK_GLOBAL_FNS(SIBYL_VK_LOAD)
#undef SIBYL_VK_LOAD
}

void Fns::load_instance(VkInstance instance) {
#define SIBYL_VK_LOAD(name)                                                                    \
  name = reinterpret_cast<PFN_##name>(vkGetInstanceProcAddr(instance, #name));                 \
  if (!name) fail(Errc::backend, "vulkan: the instance has no " #name);
  SIBYL_VK_INSTANCE_FNS(SIBYL_VK_LOAD)
#undef SIBYL_VK_LOAD
#define SIBYL_VK_LOAD(name) name = reinterpret_cast<PFN_##name>(vkGetInstanceProcAddr(instance, #name));
  SIBYL_VK_DEBUG_FNS(SIBYL_VK_LOAD)
#undef SIBYL_VK_LOAD
}

void Fns::load_device(VkDevice device) {
#define SIBYL_VK_LOAD(name)                                                  \
  name = reinterpret_cast<PFN_##name>(vkGetDeviceProcAddr(device, #name));   \
  if (!name) fail(Errc::backend, "vulkan: the device has no " #name);
  SIBYL_VK_DEVICE_FNS(SIBYL_VK_LOAD)
#undef SIBYL_VK_LOAD
}

const char* result_name(VkResult r) {
  switch (r) {
#define SIBYL_VK_CASE(x) \
  case x: return #x;
    SIBYL_VK_CASE(VK_SUCCESS)
    SIBYL_VK_CASE(VK_NOT_READY)
    SIBYL_VK_CASE(VK_TIMEOUT)
    SIBYL_VK_CASE(VK_EVENT_SET)
    SIBYL_VK_CASE(VK_EVENT_RESET)
    SIBYL_VK_CASE(VK_INCOMPLETE)
    SIBYL_VK_CASE(VK_ERROR_OUT_OF_HOST_MEMORY)
    SIBYL_VK_CASE(VK_ERROR_OUT_OF_DEVICE_MEMORY)
    SIBYL_VK_CASE(VK_ERROR_INITIALIZATION_FAILED)
    SIBYL_VK_CASE(VK_ERROR_DEVICE_LOST)
    SIBYL_VK_CASE(VK_ERROR_MEMORY_MAP_FAILED)
    SIBYL_VK_CASE(VK_ERROR_LAYER_NOT_PRESENT)
    SIBYL_VK_CASE(VK_ERROR_EXTENSION_NOT_PRESENT)
    SIBYL_VK_CASE(VK_ERROR_FEATURE_NOT_PRESENT)
    SIBYL_VK_CASE(VK_ERROR_INCOMPATIBLE_DRIVER)
    SIBYL_VK_CASE(VK_ERROR_TOO_MANY_OBJECTS)
    SIBYL_VK_CASE(VK_ERROR_FORMAT_NOT_SUPPORTED)
    SIBYL_VK_CASE(VK_ERROR_FRAGMENTED_POOL)
    SIBYL_VK_CASE(VK_ERROR_UNKNOWN)
    SIBYL_VK_CASE(VK_ERROR_OUT_OF_POOL_MEMORY)
    SIBYL_VK_CASE(VK_ERROR_INVALID_EXTERNAL_HANDLE)
    SIBYL_VK_CASE(VK_ERROR_FRAGMENTATION)
    SIBYL_VK_CASE(VK_ERROR_INVALID_OPAQUE_CAPTURE_ADDRESS)
#undef SIBYL_VK_CASE
    default: return "VkResult(unknown)";
  }
}

void fail_vk(VkResult r, const std::string& what) {
  const bool oom = r == VK_ERROR_OUT_OF_DEVICE_MEMORY || r == VK_ERROR_OUT_OF_HOST_MEMORY;
  fail(oom ? Errc::out_of_memory : Errc::backend, "vulkan: " + what + ": " + result_name(r));
}

}  // namespace sibyl::backend::vulkan
