#include "backends/vulkan/vk_memory.h"

#include <algorithm>

#include "engine/core/failure.h"

namespace sibyl::backend::vulkan {

using engine::Errc;
using engine::fail;

namespace {

constexpr VkDeviceSize kMiB = 1 << 20;
constexpr VkDeviceSize kFirstBlock = 16 * kMiB;  // blocks double up to kMaxBlock
constexpr VkDeviceSize kMaxBlock = 256 * kMiB;

std::string mib(uint64_t bytes) { return std::to_string((bytes + kMiB - 1) / kMiB) + " MiB"; }

VkDeviceSize round_up(VkDeviceSize v, VkDeviceSize a) { return (v + a - 1) / a * a; }

}  // namespace

DeviceMemory::DeviceMemory(Device& dev, uint64_t budget)
    : dev_(dev), budget_(budget), next_block_size_(kFirstBlock) {
  align_ = std::max<VkDeviceSize>(16, dev.props.limits.minStorageBufferOffsetAlignment);
}

DeviceMemory::~DeviceMemory() {
  for (uint32_t i = 0; i < blocks_.size(); ++i)
    if (blocks_[i]) release_block(i);
}

uint32_t DeviceMemory::new_block(VkDeviceSize size, bool dedicated, const char* what) {
  if (budget_ && allocated_ + size > budget_)
    fail(Errc::out_of_memory, std::string("vulkan: ") + what + " needs " + mib(size) + " more device memory but " +
                                  mib(allocated_) + " of the " + mib(budget_) + " budget (memory_budget) is in use");
  auto b = std::make_unique<Block>();
  b->size = size;
  b->dedicated = dedicated;
  auto bi = vk_struct<VkBufferCreateInfo>(VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO);
  bi.size = size;
  bi.usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT;
  bi.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
  check(dev_.fn.vkCreateBuffer(dev_.device, &bi, nullptr, &b->buffer), "vkCreateBuffer");
  VkMemoryRequirements req;
  dev_.fn.vkGetBufferMemoryRequirements(dev_.device, b->buffer, &req);
  auto ai = vk_struct<VkMemoryAllocateInfo>(VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO);
  ai.allocationSize = req.size;
  ai.memoryTypeIndex = dev_.memory_type(req.memoryTypeBits, 0, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT);
  VkResult r = ai.memoryTypeIndex == UINT32_MAX ? VK_ERROR_OUT_OF_DEVICE_MEMORY
                                                 : dev_.fn.vkAllocateMemory(dev_.device, &ai, nullptr, &b->memory);
  if (r == VK_SUCCESS) r = dev_.fn.vkBindBufferMemory(dev_.device, b->buffer, b->memory, 0);
  if (r != VK_SUCCESS) {
    if (b->memory) dev_.fn.vkFreeMemory(dev_.device, b->memory, nullptr);
    dev_.fn.vkDestroyBuffer(dev_.device, b->buffer, nullptr);
    if (r == VK_ERROR_OUT_OF_DEVICE_MEMORY || r == VK_ERROR_OUT_OF_HOST_MEMORY)
      fail(Errc::out_of_memory, std::string("vulkan: allocating ") + mib(size) + " of device memory for " + what +
                                    " failed (" + result_name(r) + "; " + mib(allocated_) + " already in use on " +
                                    dev_.name() + ")");
    fail_vk(r, std::string("allocating device memory for ") + what);
  }
  allocated_ += size;
  b->free[0] = size;
  for (uint32_t i = 0; i < blocks_.size(); ++i)
    if (!blocks_[i]) {
      blocks_[i] = std::move(b);
      return i;
    }
  blocks_.push_back(std::move(b));
  return static_cast<uint32_t>(blocks_.size() - 1);
}

void DeviceMemory::release_block(uint32_t index) {
  Block& b = *blocks_[index];
  dev_.fn.vkDestroyBuffer(dev_.device, b.buffer, nullptr);
  dev_.fn.vkFreeMemory(dev_.device, b.memory, nullptr);
  allocated_ -= b.size;
  blocks_[index].reset();
}

bool DeviceMemory::carve(Block& b, VkDeviceSize bytes, VkDeviceSize align, VkDeviceSize& offset) {
  for (auto it = b.free.begin(); it != b.free.end(); ++it) {  // first fit
    const VkDeviceSize start = round_up(it->first, align), end = it->first + it->second;
    if (start + bytes > end) continue;
    const VkDeviceSize head = start - it->first, tail_at = start + bytes;
    b.free.erase(it);
    if (head) b.free[start - head] = head;
    if (tail_at < end) b.free[tail_at] = end - tail_at;
    b.used += bytes;
    offset = start;
    return true;
  }
  return false;
}

Alloc DeviceMemory::alloc(VkDeviceSize bytes, const char* what) {
  bytes = round_up(bytes, 16) + 16;  // shaders may read one word past the last byte (weights.glsl)
  if (bytes > max_range())
    fail(Errc::unsupported, std::string("vulkan: ") + what + " is " + mib(bytes) + " but " + dev_.name() +
                                " binds at most " + mib(max_range()) + " per buffer (maxStorageBufferRange)");
  Alloc a;
  a.range.size = bytes;
  for (uint32_t i = 0; i < blocks_.size(); ++i) {
    Block* b = blocks_[i].get();
    if (!b || b->dedicated) continue;
    if (carve(*b, bytes, align_, a.range.offset)) {
      a.block = i;
      a.range.buffer = b->buffer;
      return a;
    }
  }
  const bool dedicated = bytes > kMaxBlock / 2;
  VkDeviceSize size = dedicated ? bytes : std::max(next_block_size_, round_up(bytes, kMiB));
  if (!dedicated && budget_ && allocated_ + size > budget_ && allocated_ + bytes <= budget_)
    size = std::max<VkDeviceSize>(bytes, (budget_ - allocated_) / align_ * align_);  // the budget's last bytes
  a.block = new_block(size, dedicated, what);
  if (!dedicated) next_block_size_ = std::min(next_block_size_ * 2, kMaxBlock);
  Block& b = *blocks_[a.block];
  carve(b, bytes, align_, a.range.offset);
  a.range.buffer = b.buffer;
  return a;
}

void DeviceMemory::free(const Alloc& a) {
  if (a.block == UINT32_MAX) return;
  Block& b = *blocks_[a.block];
  b.used -= a.range.size;
  auto [it, inserted] = b.free.emplace(a.range.offset, a.range.size);
  auto next = std::next(it);
  if (next != b.free.end() && it->first + it->second == next->first) {
    it->second += next->second;
    b.free.erase(next);
  }
  if (it != b.free.begin()) {
    auto prev = std::prev(it);
    if (prev->first + prev->second == it->first) {
      prev->second += it->second;
      b.free.erase(it);
    }
  }
}

void DeviceMemory::trim() {
  bool kept = false;  // one empty regular block stays for the next step's activations
  for (uint32_t i = 0; i < blocks_.size(); ++i) {
    Block* b = blocks_[i].get();
    if (!b || b->used != 0) continue;
    if (!b->dedicated && !kept) {
      kept = true;
      continue;
    }
    release_block(i);
  }
}

HostBuffer::HostBuffer(Device& dev, VkDeviceSize size, bool readback) : dev_(dev), size_(size) {
  auto bi = vk_struct<VkBufferCreateInfo>(VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO);
  bi.size = size;
  bi.usage = VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT;
  bi.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
  check(dev.fn.vkCreateBuffer(dev.device, &bi, nullptr, &buffer_), "vkCreateBuffer (staging)");
  VkMemoryRequirements req;
  dev.fn.vkGetBufferMemoryRequirements(dev.device, buffer_, &req);
  auto ai = vk_struct<VkMemoryAllocateInfo>(VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO);
  ai.allocationSize = req.size;
  ai.memoryTypeIndex =
      dev.memory_type(req.memoryTypeBits, VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT,
                      readback ? VK_MEMORY_PROPERTY_HOST_CACHED_BIT : 0);
  VkResult r = ai.memoryTypeIndex == UINT32_MAX ? VK_ERROR_OUT_OF_HOST_MEMORY
                                                 : dev.fn.vkAllocateMemory(dev.device, &ai, nullptr, &memory_);
  if (r == VK_SUCCESS) r = dev.fn.vkBindBufferMemory(dev.device, buffer_, memory_, 0);
  void* p = nullptr;
  if (r == VK_SUCCESS) r = dev.fn.vkMapMemory(dev.device, memory_, 0, VK_WHOLE_SIZE, 0, &p);
  if (r != VK_SUCCESS) {
    if (memory_) dev.fn.vkFreeMemory(dev.device, memory_, nullptr);
    dev.fn.vkDestroyBuffer(dev.device, buffer_, nullptr);
    fail_vk(r, "allocating a " + mib(size) + " staging buffer");
  }
  data_ = static_cast<uint8_t*>(p);
}

HostBuffer::~HostBuffer() {
  dev_.fn.vkUnmapMemory(dev_.device, memory_);
  dev_.fn.vkFreeMemory(dev_.device, memory_, nullptr);
  dev_.fn.vkDestroyBuffer(dev_.device, buffer_, nullptr);
}

}  // namespace sibyl::backend::vulkan
