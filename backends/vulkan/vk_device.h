// One Vulkan device for Sibyl: created here (instance, physical device, logical device, one
// compute queue), or the application's, imported through VulkanDeviceImport.
#pragma once
#include <cstdint>
#include <string>

#include "backends/backend.h"
#include "backends/vulkan/vk_loader.h"

namespace sibyl::backend::vulkan {

class Device {
 public:
  // Errc::backend saying why when no usable device exists (so `auto` falls through to the CPU).
  explicit Device(const BackendOptions& options);
  ~Device();
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;

  Fns fn;
  VkInstance instance = VK_NULL_HANDLE;
  VkPhysicalDevice physical = VK_NULL_HANDLE;
  VkDevice device = VK_NULL_HANDLE;
  VkQueue queue = VK_NULL_HANDLE;
  uint32_t queue_family = 0;
  VkPhysicalDeviceProperties props{};
  VkPhysicalDeviceMemoryProperties memory{};
  bool imported = false;
  // shaderStorageBufferArrayDynamicIndexing is enabled: MoE kernels index arrays of expert buffers.
  bool dynamic_indexing = false;

  // vkQueueSubmit between the application's lock_queue / unlock_queue.
  void submit(VkCommandBuffer cb, VkFence fence);
  // A memory type allowed by `bits` with all of `need`, preferring those with `prefer`;
  // UINT32_MAX when none.
  uint32_t memory_type(uint32_t bits, VkMemoryPropertyFlags need, VkMemoryPropertyFlags prefer) const;
  const char* name() const { return props.deviceName; }

 private:
  void create_instance(PFN_vkGetInstanceProcAddr gipa);
  void pick_physical(int index);
  void create_device();
  void import(const VulkanDeviceImport& im);
  void release();

  VkDebugUtilsMessengerEXT messenger_ = VK_NULL_HANDLE;
  VulkanDeviceImport import_{};  // a copy: the caller's struct may be a temporary
};

// Validation errors reported to Sibyl's debug messengers so far (SIBYL_VULKAN_VALIDATION=1).
uint64_t validation_error_count();

}  // namespace sibyl::backend::vulkan
