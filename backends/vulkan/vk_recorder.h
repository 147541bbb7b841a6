// A command buffer being recorded, submitted and waited for, with what it needs meanwhile:
// descriptor sets and a host staging arena for uploads. Barriers are inserted only where a
// command touches memory that an earlier, unbarriered command wrote (or writes memory one
// read) — which also makes it safe to reuse a freed tensor's range within the same command
// buffer.
#pragma once
#include <memory>
#include <span>
#include <vector>

#include "backends/vulkan/vk_kernels.h"
#include "backends/vulkan/vk_memory.h"

namespace sibyl::backend::vulkan {

struct Arg {
  enum Kind { in, out, weight };  // weights are never written inside a command buffer: untracked
  Range range;
  Kind kind = in;
};

class Recorder {
 public:
  explicit Recorder(Device& dev);
  ~Recorder();
  Recorder(const Recorder&) = delete;
  Recorder& operator=(const Recorder&) = delete;

  bool open() const { return open_; }        // recording
  bool pending() const { return pending_; }  // submitted, not yet waited for
  // Waits for a pending submission first. `reusable`: the command buffer may be resubmitted
  // (a replayed step), so wait() keeps it, its descriptor sets and its arena.
  void begin(bool reusable = false);
  void submit();    // ends and submits the command buffer
  void resubmit();  // submits the ended reusable command buffer again
  void wait();      // waits, then (unless reusable) resets the pools and the arena
  void finish() { if (open_) submit(); wait(); }
  // Turns a reusable recording back into a one-shot one (it will not be replayed).
  void make_one_shot() { reusable_ = false; }
  // Every buffer range a later command reads or writes is appended to `log` (nullptr: none).
  void set_log(std::vector<Range>* log) { log_ = log; }

  // `args` in binding order, arrays flattened (pipeline.counts); `push` at most kPushBytes.
  void dispatch(const Pipeline& p, std::span<const Arg> args, const void* push, uint32_t push_bytes, uint32_t gx,
                uint32_t gy = 1, uint32_t gz = 1);
  // Host bytes → dst (through the staging arena, copied now).
  void upload(const Range& dst, VkDeviceSize dst_offset, const void* src, VkDeviceSize bytes);
  void copy(const Range& src, VkDeviceSize src_offset, const Range& dst, VkDeviceSize dst_offset, VkDeviceSize bytes);
  void fill_zero(const Range& dst);
  // src → a host buffer, made visible to the host once waited for.
  void download(const Range& src, VkDeviceSize src_offset, VkBuffer host, VkDeviceSize bytes);
  VkDeviceSize staged_bytes() const { return staged_; }

 private:
  struct Span {
    VkBuffer buffer;
    VkDeviceSize begin, end;
  };
  void hazard(std::span<const Span> reads, std::span<const Span> writes);
  void barrier();
  VkDescriptorSet allocate_set(VkDescriptorSetLayout layout);

  Device& dev_;
  VkCommandPool pool_ = VK_NULL_HANDLE;
  VkCommandBuffer cb_ = VK_NULL_HANDLE;
  VkFence fence_ = VK_NULL_HANDLE;
  bool open_ = false, pending_ = false, reusable_ = false, ended_ = false;
  std::vector<Range>* log_ = nullptr;
  std::vector<VkDescriptorPool> desc_pools_;
  size_t desc_pool_ = 0;
  std::vector<std::unique_ptr<HostBuffer>> arena_;
  size_t arena_chunk_ = 0;
  VkDeviceSize arena_offset_ = 0, staged_ = 0;
  std::vector<Span> written_, read_;  // since the last barrier
};

}  // namespace sibyl::backend::vulkan
