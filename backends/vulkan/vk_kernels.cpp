#include "backends/vulkan/vk_kernels.h"

#include "engine/core/failure.h"

namespace sibyl::backend::vulkan {

bool find_spirv(const char* name, const uint32_t** words, size_t* count);  // generated: vk_spirv.cpp

struct ShaderInfo {
  const char* name;
  uint32_t bindings;
  int array_binding;  // -1: none
};

namespace {

ShaderInfo info(Shader s) {
  switch (s) {
    case Shader::add: return {"add", 2, -1};
    case Shader::swiglu: return {"swiglu", 3, -1};
    case Shader::gather_rows: return {"gather_rows", 3, -1};
    case Shader::embed: return {"embed", 3, -1};
    case Shader::rmsnorm: return {"rmsnorm", 3, -1};
    case Shader::matmul: return {"matmul", 3, -1};
    case Shader::matmul_nn: return {"matmul_nn", 3, -1};
    case Shader::mla_store: return {"mla_store", 7, -1};
    case Shader::kv_gather: return {"kv_gather", 4, -1};
    case Shader::mla_query: return {"mla_query", 4, -1};
    case Shader::attention: return {"attention", 8, -1};
    case Shader::attn_merge: return {"attn_merge", 2, -1};
    case Shader::route: return {"route", 4, -1};
    case Shader::moe_matmul: return {"moe_matmul", 4, -1};
    case Shader::moe_matmul_array: return {"moe_matmul_array", 4, 3};
    case Shader::moe_combine: return {"moe_combine", 4, -1};
  }
  return {"?", 0, -1};
}

}  // namespace

Kernels::~Kernels() {
  for (auto& [key, p] : pipelines_) {
    dev_.fn.vkDestroyPipeline(dev_.device, p.pipeline, nullptr);
    dev_.fn.vkDestroyPipelineLayout(dev_.device, p.layout, nullptr);
    dev_.fn.vkDestroyDescriptorSetLayout(dev_.device, p.set_layout, nullptr);
  }
  for (auto& [s, m] : modules_) dev_.fn.vkDestroyShaderModule(dev_.device, m, nullptr);
}

VkShaderModule Kernels::module(Shader s) {
  auto it = modules_.find(s);
  if (it != modules_.end()) return it->second;
  const uint32_t* words = nullptr;
  size_t count = 0;
  if (!find_spirv(info(s).name, &words, &count))
    engine::fail(engine::Errc::internal, std::string("vulkan: shader ") + info(s).name + " is not embedded");
  auto ci = vk_struct<VkShaderModuleCreateInfo>(VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO);
  ci.codeSize = count * 4;
  ci.pCode = words;
  VkShaderModule m;
  check(dev_.fn.vkCreateShaderModule(dev_.device, &ci, nullptr, &m), "vkCreateShaderModule");
  modules_[s] = m;
  return m;
}

void Kernels::create(Shader s, const ShaderInfo& si, const std::vector<uint32_t>& spec, uint32_t array_count,
                     Pipeline& p) {
  std::vector<VkDescriptorSetLayoutBinding> bindings(si.bindings);
  p.counts.assign(si.bindings, 1);
  for (uint32_t b = 0; b < si.bindings; ++b) {
    if (static_cast<int>(b) == si.array_binding) p.counts[b] = array_count;
    bindings[b] = {b, VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, p.counts[b], VK_SHADER_STAGE_COMPUTE_BIT, nullptr};
  }
  auto dl = vk_struct<VkDescriptorSetLayoutCreateInfo>(VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO);
  dl.bindingCount = si.bindings;
  dl.pBindings = bindings.data();
  check(dev_.fn.vkCreateDescriptorSetLayout(dev_.device, &dl, nullptr, &p.set_layout), "vkCreateDescriptorSetLayout");
  VkPushConstantRange range{VK_SHADER_STAGE_COMPUTE_BIT, 0, kPushBytes};
  auto pl = vk_struct<VkPipelineLayoutCreateInfo>(VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO);
  pl.setLayoutCount = 1;
  pl.pSetLayouts = &p.set_layout;
  pl.pushConstantRangeCount = 1;
  pl.pPushConstantRanges = &range;
  check(dev_.fn.vkCreatePipelineLayout(dev_.device, &pl, nullptr, &p.layout), "vkCreatePipelineLayout");

  std::vector<VkSpecializationMapEntry> entries(spec.size());
  for (uint32_t i = 0; i < spec.size(); ++i) entries[i] = {i, i * 4, 4};
  VkSpecializationInfo spec_info{static_cast<uint32_t>(entries.size()), entries.data(), spec.size() * 4, spec.data()};
  auto ci = vk_struct<VkComputePipelineCreateInfo>(VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO);
  ci.stage = vk_struct<VkPipelineShaderStageCreateInfo>(VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO);
  ci.stage.stage = VK_SHADER_STAGE_COMPUTE_BIT;
  ci.stage.module = module(s);
  ci.stage.pName = "main";
  ci.stage.pSpecializationInfo = &spec_info;
  ci.layout = p.layout;
  check(dev_.fn.vkCreateComputePipelines(dev_.device, VK_NULL_HANDLE, 1, &ci, nullptr, &p.pipeline),
        (std::string("vkCreateComputePipelines (") + si.name + ")").c_str());
}

const Pipeline& Kernels::get(Shader s, const std::vector<uint32_t>& spec, uint32_t array_count) {
  std::lock_guard lock(mu_);
  std::vector<uint32_t> key_spec = spec;
  key_spec.push_back(array_count);
  auto key = std::make_pair(s, key_spec);
  auto it = pipelines_.find(key);
  if (it != pipelines_.end()) return it->second;

  const ShaderInfo si = info(s);
  Pipeline p;
  try {
    create(s, si, spec, array_count, p);
  } catch (...) {  // what was made before the failure
    if (p.layout) dev_.fn.vkDestroyPipelineLayout(dev_.device, p.layout, nullptr);
    if (p.set_layout) dev_.fn.vkDestroyDescriptorSetLayout(dev_.device, p.set_layout, nullptr);
    throw;
  }
  return pipelines_.emplace(key, std::move(p)).first->second;
}

}  // namespace sibyl::backend::vulkan
