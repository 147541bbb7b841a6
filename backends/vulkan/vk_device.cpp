#include "backends/vulkan/vk_device.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "engine/core/failure.h"
#include "engine/core/log.h"

namespace sibyl::backend::vulkan {

using engine::Errc;
using engine::fail;

namespace {

std::atomic<uint64_t> g_validation_errors{0};

bool env_flag(const char* name) {
  const char* v = std::getenv(name);
  return v && *v && std::strcmp(v, "0") != 0;
}

VKAPI_ATTR VkBool32 VKAPI_CALL on_debug_message(VkDebugUtilsMessageSeverityFlagBitsEXT severity,
                                                VkDebugUtilsMessageTypeFlagsEXT, const VkDebugUtilsMessengerCallbackDataEXT* data,
                                                void*) {
  const bool error = severity & VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT;
  if (error) ++g_validation_errors;
  engine::log(error ? engine::LogLevel::error : engine::LogLevel::warn,
              std::string("vulkan validation: ") + (data && data->pMessage ? data->pMessage : "?"));
  return VK_FALSE;
}

std::string version_string(uint32_t v) {
  return std::to_string(VK_API_VERSION_MAJOR(v)) + "." + std::to_string(VK_API_VERSION_MINOR(v));
}

}  // namespace

uint64_t validation_error_count() { return g_validation_errors.load(); }

Device::Device(const BackendOptions& options) {
  if (options.vulkan_import) {
    import(*options.vulkan_import);
    return;
  }
  std::string why;
  PFN_vkGetInstanceProcAddr gipa = Fns::system_loader(why);
  if (!gipa) fail(Errc::backend, "vulkan: " + why);
  try {
    create_instance(gipa);
    pick_physical(options.device_index);
    create_device();
  } catch (...) {
    release();  // the destructor does not run for a constructor that throws
    throw;
  }
}

Device::~Device() { release(); }

void Device::release() {
  if (imported) return;  // the application's handles
  if (device) fn.vkDestroyDevice(device, nullptr);
  if (messenger_) fn.vkDestroyDebugUtilsMessengerEXT(instance, messenger_, nullptr);
  if (instance) fn.vkDestroyInstance(instance, nullptr);
  device = VK_NULL_HANDLE;
  messenger_ = VK_NULL_HANDLE;
  instance = VK_NULL_HANDLE;
}

void Device::create_instance(PFN_vkGetInstanceProcAddr gipa) {
  fn.load_global(gipa);
  if (!fn.vkCreateInstance) fail(Errc::backend, "vulkan: the loader has no vkCreateInstance");
  uint32_t loader = VK_API_VERSION_1_0;
  if (fn.vkEnumerateInstanceVersion) fn.vkEnumerateInstanceVersion(&loader);
  if (loader < VK_API_VERSION_1_2)
    fail(Errc::backend, "vulkan: the loader supports Vulkan " + version_string(loader) + "; Sibyl needs 1.2");

  std::vector<const char*> layers, extensions;
  if (env_flag("SIBYL_VULKAN_VALIDATION")) {
    uint32_t n = 0;
    fn.vkEnumerateInstanceLayerProperties(&n, nullptr);
    std::vector<VkLayerProperties> avail(n);
    fn.vkEnumerateInstanceLayerProperties(&n, avail.data());
    for (const auto& l : avail)
      if (std::strcmp(l.layerName, "VK_LAYER_KHRONOS_validation") == 0) layers.push_back("VK_LAYER_KHRONOS_validation");
    uint32_t ne = 0;
    fn.vkEnumerateInstanceExtensionProperties(nullptr, &ne, nullptr);
    std::vector<VkExtensionProperties> exts(ne);
    fn.vkEnumerateInstanceExtensionProperties(nullptr, &ne, exts.data());
    for (const auto& e : exts)
      if (std::strcmp(e.extensionName, VK_EXT_DEBUG_UTILS_EXTENSION_NAME) == 0)
        extensions.push_back(VK_EXT_DEBUG_UTILS_EXTENSION_NAME);
    if (layers.empty())
      engine::log(engine::LogLevel::warn, "SIBYL_VULKAN_VALIDATION is set but VK_LAYER_KHRONOS_validation is not "
                                          "installed (Debian: vulkan-validationlayers)");
  }

  auto app = vk_struct<VkApplicationInfo>(VK_STRUCTURE_TYPE_APPLICATION_INFO);
  app.pApplicationName = "sibyl";
  app.pEngineName = "sibyl";
  app.apiVersion = VK_API_VERSION_1_2;
  auto ci = vk_struct<VkInstanceCreateInfo>(VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO);
  ci.pApplicationInfo = &app;
  ci.enabledLayerCount = static_cast<uint32_t>(layers.size());
  ci.ppEnabledLayerNames = layers.data();
  ci.enabledExtensionCount = static_cast<uint32_t>(extensions.size());
  ci.ppEnabledExtensionNames = extensions.data();
  VkResult r = fn.vkCreateInstance(&ci, nullptr, &instance);
  if (r != VK_SUCCESS) fail(Errc::backend, std::string("vulkan: vkCreateInstance: ") + result_name(r));
  fn.load_instance(instance);

  if (!extensions.empty() && fn.vkCreateDebugUtilsMessengerEXT) {
    auto mi = vk_struct<VkDebugUtilsMessengerCreateInfoEXT>(VK_STRUCTURE_TYPE_DEBUG_UTILS_MESSENGER_CREATE_INFO_EXT);
    mi.messageSeverity = VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT | VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT;
    mi.messageType = VK_DEBUG_UTILS_MESSAGE_TYPE_GENERAL_BIT_EXT | VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT |
                     VK_DEBUG_UTILS_MESSAGE_TYPE_PERFORMANCE_BIT_EXT;
    mi.pfnUserCallback = on_debug_message;
    check(fn.vkCreateDebugUtilsMessengerEXT(instance, &mi, nullptr, &messenger_), "vkCreateDebugUtilsMessengerEXT");
  }
}

void Device::pick_physical(int index) {
  uint32_t n = 0;
  check(fn.vkEnumeratePhysicalDevices(instance, &n, nullptr), "vkEnumeratePhysicalDevices");
  std::vector<VkPhysicalDevice> all(n);
  check(fn.vkEnumeratePhysicalDevices(instance, &n, all.data()), "vkEnumeratePhysicalDevices");
  // Software rasterisers (llvmpipe/lavapipe) are slower than Sibyl's own CPU backend, so `auto`
  // must not pick them; tests and benchmarks opt in.
  const bool allow_cpu = env_flag("SIBYL_VULKAN_ALLOW_CPU");
  std::vector<VkPhysicalDevice> usable;
  std::string seen;
  for (VkPhysicalDevice pd : all) {
    VkPhysicalDeviceProperties p;
    fn.vkGetPhysicalDeviceProperties(pd, &p);
    uint32_t nq = 0;
    fn.vkGetPhysicalDeviceQueueFamilyProperties(pd, &nq, nullptr);
    std::vector<VkQueueFamilyProperties> q(nq);
    fn.vkGetPhysicalDeviceQueueFamilyProperties(pd, &nq, q.data());
    bool compute = false;
    for (const auto& f : q) compute |= (f.queueFlags & VK_QUEUE_COMPUTE_BIT) != 0;
    std::string reason;
    if (p.apiVersion < VK_API_VERSION_1_2) reason = "Vulkan " + version_string(p.apiVersion) + " < 1.2";
    else if (!compute) reason = "no compute queue";
    else if (p.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU && !allow_cpu)
      reason = "a CPU implementation (set SIBYL_VULKAN_ALLOW_CPU=1 to use it)";
    seen += std::string(seen.empty() ? "" : "; ") + p.deviceName + (reason.empty() ? "" : ": " + reason);
    if (reason.empty()) usable.push_back(pd);
  }
  if (usable.empty())
    fail(Errc::backend, "vulkan: no usable device" + (seen.empty() ? std::string(" (none found)") : " (" + seen + ")"));
  if (index < 0 || index >= static_cast<int>(usable.size()))
    fail(Errc::backend, "vulkan: device_index " + std::to_string(index) + " but there are " +
                            std::to_string(usable.size()) + " usable devices (" + seen + ")");
  physical = usable[static_cast<size_t>(index)];
  fn.vkGetPhysicalDeviceProperties(physical, &props);
  fn.vkGetPhysicalDeviceMemoryProperties(physical, &memory);

  uint32_t nq = 0;
  fn.vkGetPhysicalDeviceQueueFamilyProperties(physical, &nq, nullptr);
  std::vector<VkQueueFamilyProperties> q(nq);
  fn.vkGetPhysicalDeviceQueueFamilyProperties(physical, &nq, q.data());
  queue_family = UINT32_MAX;
  for (uint32_t i = 0; i < nq; ++i) {  // a compute-only family (async compute) when there is one
    if (!(q[i].queueFlags & VK_QUEUE_COMPUTE_BIT)) continue;
    if (queue_family == UINT32_MAX || !(q[i].queueFlags & VK_QUEUE_GRAPHICS_BIT)) queue_family = i;
    if (!(q[i].queueFlags & VK_QUEUE_GRAPHICS_BIT)) break;
  }
}

void Device::create_device() {
  VkPhysicalDeviceFeatures have{};
  fn.vkGetPhysicalDeviceFeatures(physical, &have);
  VkPhysicalDeviceFeatures want{};
  want.shaderStorageBufferArrayDynamicIndexing = have.shaderStorageBufferArrayDynamicIndexing;
  dynamic_indexing = have.shaderStorageBufferArrayDynamicIndexing;

  const float priority = 1.0f;
  auto qi = vk_struct<VkDeviceQueueCreateInfo>(VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO);
  qi.queueFamilyIndex = queue_family;
  qi.queueCount = 1;
  qi.pQueuePriorities = &priority;
  auto di = vk_struct<VkDeviceCreateInfo>(VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO);
  di.queueCreateInfoCount = 1;
  di.pQueueCreateInfos = &qi;
  di.pEnabledFeatures = &want;
  VkResult r = fn.vkCreateDevice(physical, &di, nullptr, &device);
  if (r != VK_SUCCESS)
    fail(Errc::backend, std::string("vulkan: vkCreateDevice on ") + props.deviceName + ": " + result_name(r));
  fn.load_device(device);
  fn.vkGetDeviceQueue(device, queue_family, 0, &queue);
}

void Device::import(const VulkanDeviceImport& im) {
  imported = true;
  import_ = im;
  instance = static_cast<VkInstance>(im.instance);
  physical = static_cast<VkPhysicalDevice>(im.physical_device);
  device = static_cast<VkDevice>(im.device);
  queue = static_cast<VkQueue>(im.queue);
  queue_family = im.queue_family_index;
  if (!instance || !physical || !device || !queue)
    fail(Errc::invalid_argument, "vulkan: the imported device needs instance, physical_device, device and queue");
  auto gipa = reinterpret_cast<PFN_vkGetInstanceProcAddr>(im.get_instance_proc_addr);
  std::string why;
  if (!gipa) gipa = Fns::system_loader(why);
  if (!gipa) fail(Errc::backend, "vulkan: " + why + " and the import gives no get_instance_proc_addr");
  fn.load_global(gipa);
  fn.load_instance(instance);
  fn.vkGetPhysicalDeviceProperties(physical, &props);
  fn.vkGetPhysicalDeviceMemoryProperties(physical, &memory);
  if (props.apiVersion < VK_API_VERSION_1_2)
    fail(Errc::backend, std::string("vulkan: the imported device ") + props.deviceName + " supports Vulkan " +
                            version_string(props.apiVersion) + "; Sibyl needs 1.2");
  uint32_t nq = 0;
  fn.vkGetPhysicalDeviceQueueFamilyProperties(physical, &nq, nullptr);
  std::vector<VkQueueFamilyProperties> q(nq);
  fn.vkGetPhysicalDeviceQueueFamilyProperties(physical, &nq, q.data());
  if (queue_family >= nq || !(q[queue_family].queueFlags & VK_QUEUE_COMPUTE_BIT))
    fail(Errc::invalid_argument, "vulkan: the imported queue family " + std::to_string(queue_family) +
                                     " has no compute capability");
  fn.load_device(device);
  // Which features the application enabled cannot be queried: assume none beyond Vulkan 1.2 core.
  dynamic_indexing = false;
}

void Device::submit(VkCommandBuffer cb, VkFence fence) {
  auto si = vk_struct<VkSubmitInfo>(VK_STRUCTURE_TYPE_SUBMIT_INFO);
  si.commandBufferCount = 1;
  si.pCommandBuffers = &cb;
  if (import_.lock_queue) import_.lock_queue(import_.queue_user_data);
  VkResult r = fn.vkQueueSubmit(queue, 1, &si, fence);
  if (import_.unlock_queue) import_.unlock_queue(import_.queue_user_data);
  check(r, "vkQueueSubmit");
}

uint32_t Device::memory_type(uint32_t bits, VkMemoryPropertyFlags need, VkMemoryPropertyFlags prefer) const {
  uint32_t fallback = UINT32_MAX;
  for (uint32_t i = 0; i < memory.memoryTypeCount; ++i) {
    if (!(bits & (1u << i))) continue;
    const VkMemoryPropertyFlags f = memory.memoryTypes[i].propertyFlags;
    if ((f & need) != need) continue;
    if ((f & prefer) == prefer) return i;
    if (fallback == UINT32_MAX) fallback = i;
  }
  return fallback;
}

}  // namespace sibyl::backend::vulkan
