#include "backends/vulkan/vk_recorder.h"

#include <algorithm>
#include <cstring>

#include "engine/core/failure.h"

namespace sibyl::backend::vulkan {

namespace {

constexpr VkDeviceSize kArenaChunk = 16u << 20;
constexpr uint32_t kSetsPerPool = 256;
constexpr uint32_t kDescriptorsPerPool = 4096;

bool overlaps(VkBuffer b, VkDeviceSize begin, VkDeviceSize end, VkBuffer b2, VkDeviceSize begin2, VkDeviceSize end2) {
  return b == b2 && begin < end2 && begin2 < end;
}

}  // namespace

Recorder::Recorder(Device& dev) : dev_(dev) {
  auto pi = vk_struct<VkCommandPoolCreateInfo>(VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO);
  pi.flags = VK_COMMAND_POOL_CREATE_TRANSIENT_BIT;
  pi.queueFamilyIndex = dev.queue_family;
  check(dev.fn.vkCreateCommandPool(dev.device, &pi, nullptr, &pool_), "vkCreateCommandPool");
  auto ai = vk_struct<VkCommandBufferAllocateInfo>(VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO);
  ai.commandPool = pool_;
  ai.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
  ai.commandBufferCount = 1;
  auto fi = vk_struct<VkFenceCreateInfo>(VK_STRUCTURE_TYPE_FENCE_CREATE_INFO);
  VkResult r = dev.fn.vkAllocateCommandBuffers(dev.device, &ai, &cb_);
  if (r == VK_SUCCESS) r = dev.fn.vkCreateFence(dev.device, &fi, nullptr, &fence_);
  if (r != VK_SUCCESS) {
    dev.fn.vkDestroyCommandPool(dev.device, pool_, nullptr);
    fail_vk(r, "creating a command buffer");
  }
}

Recorder::~Recorder() {
  try {
    finish();
  } catch (...) {  // a lost device: nothing more to wait for
  }
  for (VkDescriptorPool p : desc_pools_) dev_.fn.vkDestroyDescriptorPool(dev_.device, p, nullptr);
  dev_.fn.vkDestroyFence(dev_.device, fence_, nullptr);
  dev_.fn.vkDestroyCommandPool(dev_.device, pool_, nullptr);
}

void Recorder::begin(bool reusable) {
  if (open_) return;
  if (pending_) wait();
  if (ended_) {  // a kept recording: release it before recording anew
    reusable_ = false;
    wait();
  }
  reusable_ = reusable;
  auto bi = vk_struct<VkCommandBufferBeginInfo>(VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO);
  bi.flags = reusable ? 0 : VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT;
  check(dev_.fn.vkBeginCommandBuffer(cb_, &bi), "vkBeginCommandBuffer");
  open_ = true;
  // Order after everything submitted earlier to the queue (other command buffers, the
  // application's work on a shared queue).
  auto mb = vk_struct<VkMemoryBarrier>(VK_STRUCTURE_TYPE_MEMORY_BARRIER);
  mb.srcAccessMask = VK_ACCESS_MEMORY_WRITE_BIT;
  mb.dstAccessMask = VK_ACCESS_MEMORY_READ_BIT | VK_ACCESS_MEMORY_WRITE_BIT;
  dev_.fn.vkCmdPipelineBarrier(cb_, VK_PIPELINE_STAGE_ALL_COMMANDS_BIT, VK_PIPELINE_STAGE_ALL_COMMANDS_BIT, 0, 1, &mb,
                               0, nullptr, 0, nullptr);
}

void Recorder::submit() {
  if (!open_) return;
  open_ = false;
  written_.clear();
  read_.clear();
  check(dev_.fn.vkEndCommandBuffer(cb_), "vkEndCommandBuffer");
  ended_ = true;
  dev_.submit(cb_, fence_);
  pending_ = true;
}

void Recorder::resubmit() {
  if (open_ || pending_ || !ended_ || !reusable_) engine::fail(engine::Errc::internal, "vulkan: no recording to replay");
  dev_.submit(cb_, fence_);
  pending_ = true;
}

void Recorder::wait() {
  if (pending_) {
    VkResult r = dev_.fn.vkWaitForFences(dev_.device, 1, &fence_, VK_TRUE, UINT64_MAX);
    if (r != VK_SUCCESS) fail_vk(r, "vkWaitForFences");
    check(dev_.fn.vkResetFences(dev_.device, 1, &fence_), "vkResetFences");
    pending_ = false;
  }
  if (open_ || reusable_) return;  // still recording, or kept for replay: all of it is in use
  ended_ = false;
  check(dev_.fn.vkResetCommandPool(dev_.device, pool_, 0), "vkResetCommandPool");
  for (VkDescriptorPool p : desc_pools_) dev_.fn.vkResetDescriptorPool(dev_.device, p, 0);
  desc_pool_ = 0;
  arena_chunk_ = 0;
  arena_offset_ = 0;
  staged_ = 0;
}

void Recorder::barrier() {
  auto mb = vk_struct<VkMemoryBarrier>(VK_STRUCTURE_TYPE_MEMORY_BARRIER);
  mb.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT;
  mb.dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_READ_BIT |
                     VK_ACCESS_TRANSFER_WRITE_BIT;
  const VkPipelineStageFlags stages = VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT;
  dev_.fn.vkCmdPipelineBarrier(cb_, stages, stages, 0, 1, &mb, 0, nullptr, 0, nullptr);
  written_.clear();
  read_.clear();
}

void Recorder::hazard(std::span<const Span> reads, std::span<const Span> writes) {
  if (log_)
    for (auto list : {reads, writes})
      for (const Span& s : list) log_->push_back({s.buffer, s.begin, s.end - s.begin});
  bool conflict = false;
  for (const Span& w : written_) {
    for (const Span& r : reads) conflict |= overlaps(w.buffer, w.begin, w.end, r.buffer, r.begin, r.end);
    for (const Span& x : writes) conflict |= overlaps(w.buffer, w.begin, w.end, x.buffer, x.begin, x.end);
  }
  for (const Span& r : read_)
    for (const Span& x : writes) conflict |= overlaps(r.buffer, r.begin, r.end, x.buffer, x.begin, x.end);
  if (conflict) barrier();
  read_.insert(read_.end(), reads.begin(), reads.end());
  written_.insert(written_.end(), writes.begin(), writes.end());
}

VkDescriptorSet Recorder::allocate_set(VkDescriptorSetLayout layout) {
  for (;; ++desc_pool_) {
    if (desc_pool_ == desc_pools_.size()) {
      VkDescriptorPoolSize size{VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, kDescriptorsPerPool};
      auto pi = vk_struct<VkDescriptorPoolCreateInfo>(VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO);
      pi.maxSets = kSetsPerPool;
      pi.poolSizeCount = 1;
      pi.pPoolSizes = &size;
      VkDescriptorPool pool;
      check(dev_.fn.vkCreateDescriptorPool(dev_.device, &pi, nullptr, &pool), "vkCreateDescriptorPool");
      desc_pools_.push_back(pool);
    }
    auto ai = vk_struct<VkDescriptorSetAllocateInfo>(VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO);
    ai.descriptorPool = desc_pools_[desc_pool_];
    ai.descriptorSetCount = 1;
    ai.pSetLayouts = &layout;
    VkDescriptorSet set;
    VkResult r = dev_.fn.vkAllocateDescriptorSets(dev_.device, &ai, &set);
    if (r == VK_SUCCESS) return set;
    if (r != VK_ERROR_OUT_OF_POOL_MEMORY && r != VK_ERROR_FRAGMENTED_POOL) fail_vk(r, "vkAllocateDescriptorSets");
  }
}

void Recorder::dispatch(const Pipeline& p, std::span<const Arg> args, const void* push, uint32_t push_bytes,
                        uint32_t gx, uint32_t gy, uint32_t gz) {
  if (!open_) engine::fail(engine::Errc::internal, "vulkan: a dispatch outside a command buffer");
  const VkPhysicalDeviceLimits& lim = dev_.props.limits;
  if (gx > lim.maxComputeWorkGroupCount[0] || gy > lim.maxComputeWorkGroupCount[1] ||
      gz > lim.maxComputeWorkGroupCount[2])
    engine::fail(engine::Errc::unsupported, "vulkan: a dispatch of " + std::to_string(gx) + "×" + std::to_string(gy) +
                                                "×" + std::to_string(gz) + " workgroups exceeds the device's limit");
  if (gx == 0 || gy == 0 || gz == 0) return;
  std::vector<Span> reads, writes;
  std::vector<VkDescriptorBufferInfo> infos(args.size());
  for (size_t i = 0; i < args.size(); ++i) {
    const Range& r = args[i].range;
    infos[i] = {r.buffer, r.offset, r.size};
    const Span s{r.buffer, r.offset, r.offset + r.size};
    if (args[i].kind == Arg::in) reads.push_back(s);
    if (args[i].kind == Arg::out) writes.push_back(s);
    if (args[i].kind == Arg::weight && log_) log_->push_back(r);  // untracked, but still referenced
  }
  hazard(reads, writes);

  VkDescriptorSet set = allocate_set(p.set_layout);
  std::vector<VkWriteDescriptorSet> w(p.counts.size());
  size_t at = 0;
  for (uint32_t b = 0; b < p.counts.size(); ++b) {
    w[b] = vk_struct<VkWriteDescriptorSet>(VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET);
    w[b].dstSet = set;
    w[b].dstBinding = b;
    w[b].descriptorCount = p.counts[b];
    w[b].descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
    w[b].pBufferInfo = &infos[at];
    at += p.counts[b];
  }
  if (at != args.size()) engine::fail(engine::Errc::internal, "vulkan: dispatch arguments do not match the bindings");
  dev_.fn.vkUpdateDescriptorSets(dev_.device, static_cast<uint32_t>(w.size()), w.data(), 0, nullptr);
  dev_.fn.vkCmdBindPipeline(cb_, VK_PIPELINE_BIND_POINT_COMPUTE, p.pipeline);
  dev_.fn.vkCmdBindDescriptorSets(cb_, VK_PIPELINE_BIND_POINT_COMPUTE, p.layout, 0, 1, &set, 0, nullptr);
  if (push_bytes) dev_.fn.vkCmdPushConstants(cb_, p.layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, push_bytes, push);
  dev_.fn.vkCmdDispatch(cb_, gx, gy, gz);
}

void Recorder::upload(const Range& dst, VkDeviceSize dst_offset, const void* src, VkDeviceSize bytes) {
  if (bytes == 0) return;
  const VkDeviceSize need = (bytes + 15) / 16 * 16;
  while (arena_chunk_ < arena_.size() && arena_offset_ + need > arena_[arena_chunk_]->size()) {
    ++arena_chunk_;
    arena_offset_ = 0;
  }
  if (arena_chunk_ == arena_.size()) {
    arena_.push_back(std::make_unique<HostBuffer>(dev_, std::max(kArenaChunk, need), false));
    arena_offset_ = 0;
  }
  HostBuffer& h = *arena_[arena_chunk_];
  std::memcpy(h.data() + arena_offset_, src, bytes);
  const Span w{dst.buffer, dst.offset + dst_offset, dst.offset + dst_offset + bytes};
  hazard({}, std::span<const Span>(&w, 1));
  VkBufferCopy c{arena_offset_, dst.offset + dst_offset, bytes};
  dev_.fn.vkCmdCopyBuffer(cb_, h.buffer(), dst.buffer, 1, &c);
  arena_offset_ += need;
  staged_ += need;
}

void Recorder::copy(const Range& src, VkDeviceSize src_offset, const Range& dst, VkDeviceSize dst_offset,
                    VkDeviceSize bytes) {
  const Span r{src.buffer, src.offset + src_offset, src.offset + src_offset + bytes};
  const Span w{dst.buffer, dst.offset + dst_offset, dst.offset + dst_offset + bytes};
  hazard(std::span<const Span>(&r, 1), std::span<const Span>(&w, 1));
  VkBufferCopy c{src.offset + src_offset, dst.offset + dst_offset, bytes};
  dev_.fn.vkCmdCopyBuffer(cb_, src.buffer, dst.buffer, 1, &c);
}

void Recorder::fill_zero(const Range& dst) {
  const Span w{dst.buffer, dst.offset, dst.offset + dst.size};
  hazard({}, std::span<const Span>(&w, 1));
  dev_.fn.vkCmdFillBuffer(cb_, dst.buffer, dst.offset, dst.size, 0);
}

void Recorder::download(const Range& src, VkDeviceSize src_offset, VkBuffer host, VkDeviceSize bytes) {
  const Span r{src.buffer, src.offset + src_offset, src.offset + src_offset + bytes};
  hazard(std::span<const Span>(&r, 1), {});
  VkBufferCopy c{src.offset + src_offset, 0, bytes};
  dev_.fn.vkCmdCopyBuffer(cb_, src.buffer, host, 1, &c);
  auto mb = vk_struct<VkMemoryBarrier>(VK_STRUCTURE_TYPE_MEMORY_BARRIER);
  mb.srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT;
  mb.dstAccessMask = VK_ACCESS_HOST_READ_BIT;
  dev_.fn.vkCmdPipelineBarrier(cb_, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_PIPELINE_STAGE_HOST_BIT, 0, 1, &mb, 0, nullptr,
                               0, nullptr);
}

}  // namespace sibyl::backend::vulkan

