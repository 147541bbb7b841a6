// Vulkan entry points, loaded at run time: the loader library is opened with dlopen (so libsibyl
// runs, on the CPU, where there is no Vulkan), or the application's vkGetInstanceProcAddr is used.
#pragma once
#include <vulkan/vulkan.h>

#include <string>

namespace sibyl::backend::vulkan {

// Global (pre-instance) functions.
#define SIBYL_VK_GLOBAL_FNS(X)            \
  X(vkCreateInstance)                     \
  X(vkEnumerateInstanceVersion)           \
  X(vkEnumerateInstanceLayerProperties)   \
  X(vkEnumerateInstanceExtensionProperties)

#define SIBYL_VK_INSTANCE_FNS(X)                 \
  X(vkDestroyInstance)                           \
  X(vkEnumeratePhysicalDevices)                  \
  X(vkGetPhysicalDeviceProperties)               \
  X(vkGetPhysicalDeviceFeatures)                 \
  X(vkGetPhysicalDeviceQueueFamilyProperties)    \
  X(vkGetPhysicalDeviceMemoryProperties)         \
  X(vkCreateDevice)                              \
  X(vkGetDeviceProcAddr)

// Optional: present only with VK_EXT_debug_utils enabled.
#define SIBYL_VK_DEBUG_FNS(X)          \
  X(vkCreateDebugUtilsMessengerEXT)    \
  X(vkDestroyDebugUtilsMessengerEXT)

#define SIBYL_VK_DEVICE_FNS(X)          \
  X(vkDestroyDevice)                    \
  X(vkGetDeviceQueue)                   \
  X(vkAllocateMemory)                   \
  X(vkFreeMemory)                       \
  X(vkMapMemory)                        \
  X(vkUnmapMemory)                      \
  X(vkCreateBuffer)                     \
  X(vkDestroyBuffer)                    \
  X(vkGetBufferMemoryRequirements)      \
  X(vkBindBufferMemory)                 \
  X(vkCreateShaderModule)               \
  X(vkDestroyShaderModule)              \
  X(vkCreateDescriptorSetLayout)        \
  X(vkDestroyDescriptorSetLayout)       \
  X(vkCreatePipelineLayout)             \
  X(vkDestroyPipelineLayout)            \
  X(vkCreateComputePipelines)           \
  X(vkDestroyPipeline)                  \
  X(vkCreateDescriptorPool)             \
  X(vkDestroyDescriptorPool)            \
  X(vkResetDescriptorPool)              \
  X(vkAllocateDescriptorSets)           \
  X(vkUpdateDescriptorSets)             \
  X(vkCreateCommandPool)                \
  X(vkDestroyCommandPool)               \
  X(vkResetCommandPool)                 \
  X(vkAllocateCommandBuffers)           \
  X(vkBeginCommandBuffer)               \
  X(vkEndCommandBuffer)                 \
  X(vkCmdBindPipeline)                  \
  X(vkCmdBindDescriptorSets)            \
  X(vkCmdPushConstants)                 \
  X(vkCmdDispatch)                      \
  X(vkCmdPipelineBarrier)               \
  X(vkCmdCopyBuffer)                    \
  X(vkCmdFillBuffer)                    \
  X(vkQueueSubmit)                      \
  X(vkCreateFence)                      \
  X(vkDestroyFence)                     \
  X(vkWaitForFences)                    \
  X(vkResetFences)

struct Fns {
  PFN_vkGetInstanceProcAddr vkGetInstanceProcAddr = nullptr;
#define SIBYL_VK_DECLARE(name) PFN_##name name = nullptr;
  SIBYL_VK_GLOBAL_FNS(SIBYL_VK_DECLARE)
  SIBYL_VK_INSTANCE_FNS(SIBYL_VK_DECLARE)
  SIBYL_VK_DEBUG_FNS(SIBYL_VK_DECLARE)
  SIBYL_VK_DEVICE_FNS(SIBYL_VK_DECLARE)
#undef SIBYL_VK_DECLARE

  // The system loader's vkGetInstanceProcAddr (opened once, never closed); nullptr when there is
  // no loader, with the reason in `why`.
  static PFN_vkGetInstanceProcAddr system_loader(std::string& why);
  void load_global(PFN_vkGetInstanceProcAddr gipa);
  void load_instance(VkInstance instance);  // Errc::backend naming a missing function
  void load_device(VkDevice device);
};

// A zeroed Vulkan struct with its sType.
template <class T>
T vk_struct(VkStructureType type) {
  T v{};
  v.sType = type;
  return v;
}

// "VK_ERROR_OUT_OF_DEVICE_MEMORY", …
const char* result_name(VkResult r);

// Throws Errc::backend ("vulkan: <what>: <VkResult name>"), or Errc::out_of_memory for the
// out-of-memory results.
[[noreturn]] void fail_vk(VkResult r, const std::string& what);
inline void check(VkResult r, const char* what) {
  if (r != VK_SUCCESS) fail_vk(r, what);
}

}  // namespace sibyl::backend::vulkan
