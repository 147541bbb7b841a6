// Compute pipelines built from the embedded SPIR-V, one per (shader, specialization constants),
// created on first use and kept for the backend's lifetime.
#pragma once
#include <cstdint>
#include <map>
#include <mutex>
#include <vector>

#include "backends/vulkan/vk_device.h"

namespace sibyl::backend::vulkan {

enum class Shader {
  add,
  swiglu,
  gather_rows,
  embed,
  rmsnorm,
  matmul,
  matmul_nn,
  mla_store,
  kv_gather,
  mla_query,
  attention,
  attn_merge,
  route,
  moe_matmul,
  moe_matmul_array,
  moe_combine,
};

struct Pipeline {
  VkPipeline pipeline = VK_NULL_HANDLE;
  VkPipelineLayout layout = VK_NULL_HANDLE;
  VkDescriptorSetLayout set_layout = VK_NULL_HANDLE;
  std::vector<uint32_t> counts;  // descriptors per binding (1, or an array of expert buffers)
};

struct ShaderInfo;  // name and bindings of a shader (vk_kernels.cpp)

// Every pipeline has this much push-constant space (the guaranteed minimum).
constexpr uint32_t kPushBytes = 128;

class Kernels {
 public:
  explicit Kernels(Device& dev) : dev_(dev) {}
  ~Kernels();
  // `spec`: specialization constants 0, 1, … in order (constant 0 is the workgroup size).
  // `array_count`: the descriptor count of the shader's expert-array binding, if it has one.
  const Pipeline& get(Shader s, const std::vector<uint32_t>& spec, uint32_t array_count = 1);

 private:
  VkShaderModule module(Shader s);
  void create(Shader s, const ShaderInfo& si, const std::vector<uint32_t>& spec, uint32_t array_count,
              Pipeline& p);
  Device& dev_;
  std::mutex mu_;
  std::map<Shader, VkShaderModule> modules_;
  std::map<std::pair<Shader, std::vector<uint32_t>>, Pipeline> pipelines_;
};

}  // namespace sibyl::backend::vulkan
