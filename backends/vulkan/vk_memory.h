// Device memory: tensors are sub-allocated from a few large blocks (each one VkDeviceMemory
// bound to one VkBuffer), under the byte budget of BackendOptions::memory_budget. Host-visible
// staging buffers carry uploads and read-backs.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "backends/vulkan/vk_device.h"

namespace sibyl::backend::vulkan {

// A range of a device buffer, as shaders bind it.
struct Range {
  VkBuffer buffer = VK_NULL_HANDLE;
  VkDeviceSize offset = 0, size = 0;
};

struct Alloc {
  Range range;
  uint32_t block = UINT32_MAX;  // index in DeviceMemory's table
};

class DeviceMemory {
 public:
  DeviceMemory(Device& dev, uint64_t budget);
  ~DeviceMemory();
  // Errc::out_of_memory naming `what` when the budget or the device runs out.
  Alloc alloc(VkDeviceSize bytes, const char* what);
  // The range may be reused at once (recorders order reuse with barriers); its block is only
  // released by trim(), which must run when no command buffer is recorded or in flight.
  void free(const Alloc& a);
  void trim();
  uint64_t allocated() const { return allocated_; }  // bytes of VkDeviceMemory held
  VkDeviceSize max_range() const { return dev_.props.limits.maxStorageBufferRange; }

 private:
  struct Block {
    VkDeviceMemory memory = VK_NULL_HANDLE;
    VkBuffer buffer = VK_NULL_HANDLE;
    VkDeviceSize size = 0, used = 0;
    std::map<VkDeviceSize, VkDeviceSize> free;  // offset → size, coalesced
    bool dedicated = false;
  };
  uint32_t new_block(VkDeviceSize size, bool dedicated, const char* what);
  void release_block(uint32_t index);
  static bool carve(Block& b, VkDeviceSize bytes, VkDeviceSize align, VkDeviceSize& offset);

  Device& dev_;
  uint64_t budget_;
  uint64_t allocated_ = 0;
  VkDeviceSize align_;
  VkDeviceSize next_block_size_;
  std::vector<std::unique_ptr<Block>> blocks_;  // null: a released slot
};

// A host-visible, coherent, persistently mapped buffer (staging for transfers).
class HostBuffer {
 public:
  HostBuffer(Device& dev, VkDeviceSize size, bool readback);
  ~HostBuffer();
  HostBuffer(const HostBuffer&) = delete;
  HostBuffer& operator=(const HostBuffer&) = delete;
  VkBuffer buffer() const { return buffer_; }
  VkDeviceSize size() const { return size_; }
  uint8_t* data() const { return data_; }

 private:
  Device& dev_;
  VkBuffer buffer_ = VK_NULL_HANDLE;
  VkDeviceMemory memory_ = VK_NULL_HANDLE;
  VkDeviceSize size_;
  uint8_t* data_ = nullptr;
};

}  // namespace sibyl::backend::vulkan
