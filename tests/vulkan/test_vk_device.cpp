// Device-level behaviour: running on the application's own VkDevice (import, queue locking,
// one-expert-per-dispatch kernels), tensors freed while a step still uses their memory, the
// memory budget, and errors that name their cause.
#include <vulkan/vulkan.h>

#include <atomic>
#include <deque>

#include "vk_test_util.h"

namespace sibyl::vktest {
namespace {

// A device made the way an application would: Vulkan 1.2, one queue of a compute family,
// no optional features.
struct AppDevice {
  VkInstance instance = VK_NULL_HANDLE;
  VkPhysicalDevice physical = VK_NULL_HANDLE;
  VkDevice device = VK_NULL_HANDLE;
  VkQueue queue = VK_NULL_HANDLE;
  uint32_t family = 0;
  AppDevice() {
    VkApplicationInfo app{};
    app.sType = VK_STRUCTURE_TYPE_APPLICATION_INFO;
    app.apiVersion = VK_API_VERSION_1_2;
    VkInstanceCreateInfo ci{};
    ci.sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO;
    ci.pApplicationInfo = &app;
    if (vkCreateInstance(&ci, nullptr, &instance) != VK_SUCCESS) return;
    uint32_t n = 0;
    vkEnumeratePhysicalDevices(instance, &n, nullptr);
    std::vector<VkPhysicalDevice> all(n);
    vkEnumeratePhysicalDevices(instance, &n, all.data());
    for (VkPhysicalDevice pd : all) {
      uint32_t nq = 0;
      vkGetPhysicalDeviceQueueFamilyProperties(pd, &nq, nullptr);
      std::vector<VkQueueFamilyProperties> q(nq);
      vkGetPhysicalDeviceQueueFamilyProperties(pd, &nq, q.data());
      for (uint32_t i = 0; i < nq && !physical; ++i)
        if (q[i].queueFlags & VK_QUEUE_COMPUTE_BIT) {
          physical = pd;
          family = i;
        }
    }
    if (!physical) return;
    const float prio = 1.0f;
    VkDeviceQueueCreateInfo qi{};
    qi.sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO;
    qi.queueFamilyIndex = family;
    qi.queueCount = 1;
    qi.pQueuePriorities = &prio;
    VkDeviceCreateInfo di{};
    di.sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO;
    di.queueCreateInfoCount = 1;
    di.pQueueCreateInfos = &qi;
    if (vkCreateDevice(physical, &di, nullptr, &device) != VK_SUCCESS) return;
    vkGetDeviceQueue(device, family, 0, &queue);
  }
  ~AppDevice() {
    if (device) vkDestroyDevice(device, nullptr);
    if (instance) vkDestroyInstance(instance, nullptr);
  }
};

std::atomic<int> g_locks{0}, g_unlocks{0};

TEST(VkDevice, ImportedDeviceRunsOpsAndLocksTheQueue) {
  SIBYL_REQUIRE_VULKAN();
  AppDevice app;
  ASSERT_NE(app.queue, nullptr) << "could not create the application's device";
  backend::VulkanDeviceImport im;
  im.instance = app.instance;
  im.physical_device = app.physical;
  im.device = app.device;
  im.queue = app.queue;
  im.queue_family_index = app.family;
  im.lock_queue = [](void* u) { ++*static_cast<std::atomic<int>*>(u); };
  im.unlock_queue = [](void*) { ++g_unlocks; };
  im.queue_user_data = &g_locks;
  backend::BackendOptions o;
  o.vulkan_import = &im;
  {
    auto vk = backend::create_backend(backend::BackendKind::vulkan, o);
    auto cpu = backend::create_cpu_backend({});
    std::mt19937 rng(7);
    // Routed experts run one expert per dispatch here (no dynamic indexing assumed).
    const int64_t E = 5, K = 2, H = 64, I = 32, n = 3;
    std::deque<HostTensor> host;  // the CPU backend uses host weights in place: keep them
    std::vector<Pair> g, u, d;
    backend::ExpertWeights w[2];
    for (int64_t e = 0; e < E; ++e) {
      auto a = random_floats(I * H, rng, 0.1f), b = random_floats(I * H, rng, 0.1f), c = random_floats(H * I, rng, 0.1f);
      g.push_back(upload_both(*cpu, *vk, host.emplace_back(encode(DType::q8_0, I, H, a))));
      u.push_back(upload_both(*cpu, *vk, host.emplace_back(encode(DType::q8_0, I, H, b))));
      d.push_back(upload_both(*cpu, *vk, host.emplace_back(encode(DType::bf16, H, I, c))));
    }
    for (int s = 0; s < 2; ++s)
      for (int64_t e = 0; e < E; ++e) {
        w[s].gate.push_back(s ? g[e].vk.get() : g[e].cpu.get());
        w[s].up.push_back(s ? u[e].vk.get() : u[e].cpu.get());
        w[s].down.push_back(s ? d[e].vk.get() : d[e].cpu.get());
      }
    Pair ids = i32_both(*cpu, *vk, n, K, {4, 0, 2, 3, 1, 4}), wts = f32_both(*cpu, *vk, n, K, random_floats(n * K, rng));
    Pair x = f32_both(*cpu, *vk, n, H, random_floats(n * H, rng)), out = alloc_both(*cpu, *vk, DType::f32, n, H);
    for (int s = 0; s < 2; ++s) {
      Backend& b = s ? *vk : *cpu;
      b.begin_step();
      b.moe_experts(s ? *out.vk : *out.cpu, s ? *x.vk : *x.cpu, s ? *ids.vk : *ids.cpu, s ? *wts.vk : *wts.cpu, w[s]);
      b.end_step();
    }
    EXPECT_LT(rel_error(read_f32(*vk, *out.vk), read_f32(*cpu, *out.cpu)), 1e-5);
  }
  EXPECT_GT(g_locks.load(), 0);
  EXPECT_EQ(g_locks.load(), g_unlocks.load());
}

// The engine frees temporaries inside a step, before the command buffer runs: their memory is
// reused by later tensors of the same step and both must see their own data.
TEST(VkDevice, TensorsFreedMidStepKeepTheirDataForEarlierOps) {
  SIBYL_REQUIRE_VULKAN();
  std::string why;
  auto vk = make_vulkan(why);
  auto cpu = backend::create_cpu_backend({});
  std::mt19937 rng(3);
  const int64_t K = 64, N = 48;
  auto wf = random_floats(N * K, rng);
  HostTensor h = encode(DType::f32, N, K, wf);
  Pair w = upload_both(*cpu, *vk, h);
  std::vector<std::vector<float>> want, got;
  std::vector<TensorPtr> outs;
  vk->begin_step();
  for (int r = 0; r < 6; ++r) {
    auto xv = random_floats(2 * K, rng);
    TensorPtr x = vk->alloc(DType::f32, 2, K);  // likely the memory of the previous round's x
    vk->write(*x, xv.data(), xv.size() * 4);
    outs.push_back(vk->alloc(DType::f32, 2, N));
    vk->matmul(*outs.back(), *x, *w.vk);
    // x is destroyed here, before the step is submitted
    TensorPtr xc = cpu->alloc(DType::f32, 2, K), yc = cpu->alloc(DType::f32, 2, N);
    cpu->write(*xc, xv.data(), xv.size() * 4);
    cpu->matmul(*yc, *xc, *w.cpu);
    want.push_back(read_f32(*cpu, *yc));
  }
  vk->end_step();
  for (int r = 0; r < 6; ++r) EXPECT_LT(rel_error(read_f32(*vk, *outs[r]), want[r]), 1e-6) << "round " << r;
}

TEST(VkDevice, BudgetAndOversizedRequestsFailCleanly) {
  SIBYL_REQUIRE_VULKAN();
  backend::BackendOptions o;
  o.memory_budget = 2u << 20;
  std::string why;
  auto vk = make_vulkan(why, o);
  ASSERT_TRUE(vk) << why;
  try {
    vk->alloc(DType::f32, 1024, 1024);  // 4 MiB
    FAIL() << "expected out_of_memory";
  } catch (const engine::Failure& e) {
    EXPECT_EQ(e.code(), engine::Errc::out_of_memory);
    EXPECT_NE(std::string(e.what()).find("budget"), std::string::npos) << e.what();
  }
  auto small = vk->alloc(DType::f32, 16, 16);  // still usable afterwards
  std::vector<float> v(256, 2.0f), back(256);
  vk->write(*small, v.data(), 1024);
  vk->read(*small, back.data(), 1024);
  EXPECT_EQ(back, v);
}

TEST(VkDevice, NoSuchDeviceIsABackendError) {
  SIBYL_REQUIRE_VULKAN();
  backend::BackendOptions o;
  o.device_index = 99;
  try {
    backend::create_backend(backend::BackendKind::vulkan, o);
    FAIL() << "device 99 should not exist";
  } catch (const engine::Failure& e) {
    EXPECT_EQ(e.code(), engine::Errc::backend);
    EXPECT_NE(std::string(e.what()).find("device_index 99"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace sibyl::vktest
