// vulkan-shared-device: a host that owns its Vulkan device, the way a game does, and lends it
// to Sibyl through sibyl_model_options.vulkan_device. Generation runs on a worker thread
// (Sibyl's calls block until the GPU finishes) while the main thread keeps submitting its own
// compute work to the same queue, guarded by the same mutex Sibyl locks through lock_queue.
// Then it checks the generated tokens against Sibyl's CPU backend.
//
//   vulkan-shared-device [MODEL] [TOKENS]      exit 0: tokens equal; 1: failure; 77: no device
#include <vulkan/vulkan.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "sibyl/sibyl.h"

namespace sample {
bool sample_spirv(const char* name, const uint32_t** words, size_t* count);  // generated
}

namespace {

std::atomic<int> g_validation_errors{0};

VKAPI_ATTR VkBool32 VKAPI_CALL on_validation(VkDebugUtilsMessageSeverityFlagBitsEXT severity,
                                             VkDebugUtilsMessageTypeFlagsEXT,
                                             const VkDebugUtilsMessengerCallbackDataEXT* data, void*) {
  if (severity & VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT) {
    ++g_validation_errors;
    std::fprintf(stderr, "validation error: %s\n", data->pMessage);
  }
  return VK_FALSE;
}

bool has_layer(const char* name) {
  uint32_t n = 0;
  vkEnumerateInstanceLayerProperties(&n, nullptr);
  std::vector<VkLayerProperties> layers(n);
  vkEnumerateInstanceLayerProperties(&n, layers.data());
  for (const auto& l : layers)
    if (std::strcmp(l.layerName, name) == 0) return true;
  return false;
}

// The application's Vulkan objects: instance, device, one queue, and a compute pipeline of its own.
struct App {
  VkInstance instance = VK_NULL_HANDLE;
  VkDebugUtilsMessengerEXT messenger = VK_NULL_HANDLE;
  VkPhysicalDevice physical = VK_NULL_HANDLE;
  VkDevice device = VK_NULL_HANDLE;
  VkQueue queue = VK_NULL_HANDLE;
  uint32_t family = 0;
  std::mutex queue_mutex;  // Vulkan queues need external synchronisation: shared with Sibyl
  std::string device_name;

  VkBuffer buffer = VK_NULL_HANDLE;
  VkDeviceMemory memory = VK_NULL_HANDLE;
  uint32_t* mapped = nullptr;
  VkShaderModule module = VK_NULL_HANDLE;
  VkDescriptorSetLayout set_layout = VK_NULL_HANDLE;
  VkPipelineLayout layout = VK_NULL_HANDLE;
  VkPipeline pipeline = VK_NULL_HANDLE;
  VkDescriptorPool pool = VK_NULL_HANDLE;
  VkDescriptorSet set = VK_NULL_HANDLE;
  VkCommandPool cmd_pool = VK_NULL_HANDLE;
  VkCommandBuffer cmd = VK_NULL_HANDLE;
  VkFence fence = VK_NULL_HANDLE;
  static constexpr uint32_t kElems = 4096, kRounds = 2000;

  bool create(bool validation);
  bool create_pipeline();
  bool frame();  // one submission of the app's own shader, checked
  ~App();
};

bool App::create(bool validation) {
  VkApplicationInfo ai{};
  ai.sType = VK_STRUCTURE_TYPE_APPLICATION_INFO;
  ai.pApplicationName = "vulkan-shared-device";
  ai.apiVersion = VK_API_VERSION_1_2;  // Sibyl needs Vulkan 1.2
  const char* layer = "VK_LAYER_KHRONOS_validation";
  const char* ext = VK_EXT_DEBUG_UTILS_EXTENSION_NAME;
  validation = validation && has_layer(layer);
  VkInstanceCreateInfo ci{};
  ci.sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO;
  ci.pApplicationInfo = &ai;
  ci.enabledLayerCount = validation ? 1 : 0;
  ci.ppEnabledLayerNames = &layer;
  ci.enabledExtensionCount = validation ? 1 : 0;
  ci.ppEnabledExtensionNames = &ext;
  if (vkCreateInstance(&ci, nullptr, &instance) != VK_SUCCESS) return false;
  if (validation) {
    VkDebugUtilsMessengerCreateInfoEXT mi{};
    mi.sType = VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT;
    mi.messageSeverity = VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT;
    mi.messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT | VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT;
    mi.pfnUserCallback = on_validation;
    auto create_messenger = reinterpret_cast<PFN_vkCreateDebugUtilsMessengerEXT>(
        vkGetInstanceProcAddr(instance, "vkCreateDebugUtilsMessengerEXT"));
    if (create_messenger) create_messenger(instance, &mi, nullptr, &messenger);
    std::printf("validation layers: on\n");
  }
  uint32_t n = 0;
  vkEnumeratePhysicalDevices(instance, &n, nullptr);
  std::vector<VkPhysicalDevice> devices(n);
  vkEnumeratePhysicalDevices(instance, &n, devices.data());
  for (VkPhysicalDevice pd : devices) {  // the first Vulkan 1.2 device with a compute queue
    VkPhysicalDeviceProperties props;
    vkGetPhysicalDeviceProperties(pd, &props);
    if (props.apiVersion < VK_API_VERSION_1_2) continue;
    uint32_t nq = 0;
    vkGetPhysicalDeviceQueueFamilyProperties(pd, &nq, nullptr);
    std::vector<VkQueueFamilyProperties> q(nq);
    vkGetPhysicalDeviceQueueFamilyProperties(pd, &nq, q.data());
    for (uint32_t i = 0; i < nq && !physical; ++i)
      if (q[i].queueFlags & VK_QUEUE_COMPUTE_BIT) {
        physical = pd;
        family = i;
        device_name = props.deviceName;
      }
    if (physical) break;
  }
  if (!physical) return false;
  const float priority = 1.0f;
  VkDeviceQueueCreateInfo qi{};
  qi.sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO;
  qi.queueFamilyIndex = family;
  qi.queueCount = 1;
  qi.pQueuePriorities = &priority;
  VkDeviceCreateInfo di{};
  di.sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO;
  di.queueCreateInfoCount = 1;
  di.pQueueCreateInfos = &qi;
  if (vkCreateDevice(physical, &di, nullptr, &device) != VK_SUCCESS) return false;
  vkGetDeviceQueue(device, family, 0, &queue);
  return create_pipeline();
}

bool App::create_pipeline() {
  VkBufferCreateInfo bi{};
  bi.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO;
  bi.size = kElems * 4;
  bi.usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT;
  if (vkCreateBuffer(device, &bi, nullptr, &buffer) != VK_SUCCESS) return false;
  VkMemoryRequirements req;
  vkGetBufferMemoryRequirements(device, buffer, &req);
  VkPhysicalDeviceMemoryProperties mp;
  vkGetPhysicalDeviceMemoryProperties(physical, &mp);
  const VkMemoryPropertyFlags want = VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
  VkMemoryAllocateInfo mai{};
  mai.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO;
  mai.allocationSize = req.size;
  mai.memoryTypeIndex = UINT32_MAX;
  for (uint32_t i = 0; i < mp.memoryTypeCount && mai.memoryTypeIndex == UINT32_MAX; ++i)
    if ((req.memoryTypeBits & (1u << i)) && (mp.memoryTypes[i].propertyFlags & want) == want) mai.memoryTypeIndex = i;
  if (mai.memoryTypeIndex == UINT32_MAX || vkAllocateMemory(device, &mai, nullptr, &memory) != VK_SUCCESS)
    return false;
  vkBindBufferMemory(device, buffer, memory, 0);
  void* p = nullptr;
  vkMapMemory(device, memory, 0, VK_WHOLE_SIZE, 0, &p);
  mapped = static_cast<uint32_t*>(p);
  for (uint32_t i = 0; i < kElems; ++i) mapped[i] = i;

  const uint32_t* words = nullptr;
  size_t count = 0;
  if (!sample::sample_spirv("busy", &words, &count)) return false;
  VkShaderModuleCreateInfo si{};
  si.sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO;
  si.codeSize = count * 4;
  si.pCode = words;
  vkCreateShaderModule(device, &si, nullptr, &module);
  VkDescriptorSetLayoutBinding b{0, VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, 1, VK_SHADER_STAGE_COMPUTE_BIT, nullptr};
  VkDescriptorSetLayoutCreateInfo dl{};
  dl.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO;
  dl.bindingCount = 1;
  dl.pBindings = &b;
  vkCreateDescriptorSetLayout(device, &dl, nullptr, &set_layout);
  VkPushConstantRange range{VK_SHADER_STAGE_COMPUTE_BIT, 0, 4};
  VkPipelineLayoutCreateInfo pl{};
  pl.sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO;
  pl.setLayoutCount = 1;
  pl.pSetLayouts = &set_layout;
  pl.pushConstantRangeCount = 1;
  pl.pPushConstantRanges = &range;
  vkCreatePipelineLayout(device, &pl, nullptr, &layout);
  VkComputePipelineCreateInfo ci{};
  ci.sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO;
  ci.stage.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO;
  ci.stage.stage = VK_SHADER_STAGE_COMPUTE_BIT;
  ci.stage.module = module;
  ci.stage.pName = "main";
  ci.layout = layout;
  if (vkCreateComputePipelines(device, VK_NULL_HANDLE, 1, &ci, nullptr, &pipeline) != VK_SUCCESS) return false;
  VkDescriptorPoolSize ps{VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, 1};
  VkDescriptorPoolCreateInfo dp{};
  dp.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO;
  dp.maxSets = 1;
  dp.poolSizeCount = 1;
  dp.pPoolSizes = &ps;
  vkCreateDescriptorPool(device, &dp, nullptr, &pool);
  VkDescriptorSetAllocateInfo da{};
  da.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO;
  da.descriptorPool = pool;
  da.descriptorSetCount = 1;
  da.pSetLayouts = &set_layout;
  vkAllocateDescriptorSets(device, &da, &set);
  VkDescriptorBufferInfo info{buffer, 0, VK_WHOLE_SIZE};
  VkWriteDescriptorSet w{};
  w.sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET;
  w.dstSet = set;
  w.descriptorCount = 1;
  w.descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
  w.pBufferInfo = &info;
  vkUpdateDescriptorSets(device, 1, &w, 0, nullptr);
  VkCommandPoolCreateInfo cp{};
  cp.sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO;
  cp.flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT;
  cp.queueFamilyIndex = family;
  vkCreateCommandPool(device, &cp, nullptr, &cmd_pool);
  VkCommandBufferAllocateInfo ca{};
  ca.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO;
  ca.commandPool = cmd_pool;
  ca.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
  ca.commandBufferCount = 1;
  vkAllocateCommandBuffers(device, &ca, &cmd);
  VkFenceCreateInfo fi{};
  fi.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO;
  return vkCreateFence(device, &fi, nullptr, &fence) == VK_SUCCESS;
}

bool App::frame() {
  std::vector<uint32_t> expect(mapped, mapped + kElems);
  for (uint32_t& x : expect)
    for (uint32_t i = 0; i < kRounds; ++i) x = x * 1664525u + 1013904223u;
  VkCommandBufferBeginInfo bi{};
  bi.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO;
  bi.flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT;
  vkBeginCommandBuffer(cmd, &bi);
  vkCmdBindPipeline(cmd, VK_PIPELINE_BIND_POINT_COMPUTE, pipeline);
  vkCmdBindDescriptorSets(cmd, VK_PIPELINE_BIND_POINT_COMPUTE, layout, 0, 1, &set, 0, nullptr);
  vkCmdPushConstants(cmd, layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, 4, &kRounds);
  vkCmdDispatch(cmd, kElems / 64, 1, 1);
  VkMemoryBarrier mb{};
  mb.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER;
  mb.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT;
  mb.dstAccessMask = VK_ACCESS_HOST_READ_BIT;
  vkCmdPipelineBarrier(cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_PIPELINE_STAGE_HOST_BIT, 0, 1, &mb, 0, nullptr, 0,
                       nullptr);
  vkEndCommandBuffer(cmd);
  VkSubmitInfo si{};
  si.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO;
  si.commandBufferCount = 1;
  si.pCommandBuffers = &cmd;
  VkResult r;
  {
    std::lock_guard<std::mutex> lock(queue_mutex);  // the queue Sibyl submits to as well
    r = vkQueueSubmit(queue, 1, &si, fence);
  }
  if (r != VK_SUCCESS) return false;
  vkWaitForFences(device, 1, &fence, VK_TRUE, UINT64_MAX);
  vkResetFences(device, 1, &fence);
  return std::memcmp(expect.data(), mapped, kElems * 4) == 0;
}

App::~App() {
  if (device) {
    vkDestroyFence(device, fence, nullptr);
    vkDestroyCommandPool(device, cmd_pool, nullptr);
    vkDestroyDescriptorPool(device, pool, nullptr);
    vkDestroyPipeline(device, pipeline, nullptr);
    vkDestroyPipelineLayout(device, layout, nullptr);
    vkDestroyDescriptorSetLayout(device, set_layout, nullptr);
    vkDestroyShaderModule(device, module, nullptr);
    vkDestroyBuffer(device, buffer, nullptr);
    vkFreeMemory(device, memory, nullptr);
    vkDestroyDevice(device, nullptr);
  }
  if (messenger) {
    auto destroy = reinterpret_cast<PFN_vkDestroyDebugUtilsMessengerEXT>(
        vkGetInstanceProcAddr(instance, "vkDestroyDebugUtilsMessengerEXT"));
    if (destroy) destroy(instance, messenger, nullptr);
  }
  if (instance) vkDestroyInstance(instance, nullptr);
}

void lock_queue(void* m) { static_cast<std::mutex*>(m)->lock(); }
void unlock_queue(void* m) { static_cast<std::mutex*>(m)->unlock(); }

int on_token(int32_t token, void* out) {
  static_cast<std::vector<int32_t>*>(out)->push_back(token);
  return 0;
}

bool check(sibyl_status s, const char* what) {
  if (s == SIBYL_OK) return true;
  std::fprintf(stderr, "%s: %s: %s\n", what, sibyl_status_string(s), sibyl_last_error_message());
  return false;
}

// The chat prompt of one question, as token ids.
std::vector<int32_t> prompt_tokens(sibyl_model* model, const char* question) {
  sibyl_chat_message m{"user", question, std::strlen(question)};
  size_t len = 0;
  sibyl_model_render_chat(model, &m, 1, 1, nullptr, 0, &len);
  std::string text(len, '\0');
  if (!check(sibyl_model_render_chat(model, &m, 1, 1, text.data(), text.size(), &len), "render_chat")) return {};
  size_t n = 0;
  sibyl_model_tokenize(model, text.data(), text.size(), nullptr, 0, &n);
  std::vector<int32_t> ids(n);
  if (!check(sibyl_model_tokenize(model, text.data(), text.size(), ids.data(), ids.size(), &n), "tokenize")) return {};
  return ids;
}

// Greedy generation of up to `max_tokens` from the question's prompt.
bool generate(sibyl_model* model, const char* question, uint32_t max_tokens, std::vector<int32_t>& out) {
  const std::vector<int32_t> prompt = prompt_tokens(model, question);
  sibyl_session* session = nullptr;
  if (prompt.empty() || !check(sibyl_session_create(model, nullptr, &session), "session_create")) return false;
  sibyl_generate_options g;
  sibyl_generate_options_init(&g);
  g.max_new_tokens = max_tokens;
  const bool ok = check(sibyl_session_generate(session, prompt.data(), prompt.size(), &g, on_token, &out, nullptr),
                        "generate");
  sibyl_session_destroy(session);
  return ok;
}

std::string text_of(sibyl_model* model, const std::vector<int32_t>& ids) {
  size_t len = 0;
  sibyl_model_detokenize(model, ids.data(), ids.size(), nullptr, 0, &len);
  std::string s(len, '\0');
  sibyl_model_detokenize(model, ids.data(), ids.size(), s.data(), s.size(), &len);
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  const char* model_path = argc > 1 ? argv[1] : nullptr;  // nullptr: the default model
  const uint32_t max_tokens = argc > 2 ? static_cast<uint32_t>(std::atoi(argv[2])) : 48;
  const char* question = "What is 6238 + 76?";
  const char* v = std::getenv("SIBYL_VULKAN_VALIDATION");

  App app;
  if (!app.create(v && std::strcmp(v, "0") != 0)) {
    std::printf("SKIP: no Vulkan 1.2 device with a compute queue\n");
    return 77;
  }
  std::printf("application device: %s (queue family %u)\n", app.device_name.c_str(), app.family);

  // Lend the device to Sibyl. The mutex guards the one queue both submit to.
  sibyl_vulkan_device dev{};
  dev.struct_size = sizeof dev;
  dev.instance = app.instance;
  dev.physical_device = app.physical;
  dev.device = app.device;
  dev.queue = app.queue;
  dev.queue_family_index = app.family;
  dev.get_instance_proc_addr = reinterpret_cast<void*>(&vkGetInstanceProcAddr);
  dev.lock_queue = lock_queue;
  dev.unlock_queue = unlock_queue;
  dev.queue_user_data = &app.queue_mutex;
  sibyl_model_options mo;
  sibyl_model_options_init(&mo);
  mo.backend = SIBYL_BACKEND_VULKAN;
  mo.vulkan_device = &dev;
  sibyl_model* gpu_model = nullptr;
  if (!check(sibyl_model_load(model_path, &mo, &gpu_model), "load on the shared device")) return 1;

  // Generation on a worker thread; the main thread is the frame loop.
  std::vector<int32_t> gpu_tokens;
  std::atomic<bool> done{false};
  bool gen_ok = false;
  std::thread worker([&] {
    gen_ok = generate(gpu_model, question, max_tokens, gpu_tokens);
    done = true;
  });
  int frames = 0, bad_frames = 0;
  while (!done || frames < 3) {
    if (!app.frame()) ++bad_frames;
    ++frames;
  }
  worker.join();
  std::printf("frames submitted by the application while Sibyl generated: %d (%d wrong)\n", frames, bad_frames);
  std::printf("tokens generated on the shared device: %zu\n", gpu_tokens.size());
  std::printf("text: %s\n", text_of(gpu_model, gpu_tokens).c_str());
  sibyl_model_destroy(gpu_model);  // before the application destroys its device

  // The same generation on the CPU backend.
  sibyl_model_options co;
  sibyl_model_options_init(&co);
  co.backend = SIBYL_BACKEND_CPU;
  sibyl_model* cpu_model = nullptr;
  std::vector<int32_t> cpu_tokens;
  if (!check(sibyl_model_load(model_path, &co, &cpu_model), "load on the CPU")) return 1;
  const bool cpu_ok = generate(cpu_model, question, max_tokens, cpu_tokens);
  sibyl_model_destroy(cpu_model);

  const bool same = gen_ok && cpu_ok && gpu_tokens == cpu_tokens && !gpu_tokens.empty();
  std::printf("tokens equal to the CPU backend's: %s\n", same ? "yes" : "NO");
  std::printf("validation errors: %d\n", g_validation_errors.load());
  return same && bad_frames == 0 && frames > 0 && g_validation_errors == 0 ? 0 : 1;
}
