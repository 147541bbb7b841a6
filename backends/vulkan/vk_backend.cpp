// The Vulkan backend's memory, transfers and step boundaries; the ops are in vk_ops.cpp,
// vk_mla.cpp and vk_moe.cpp.
#include "backends/vulkan/vk_backend.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "engine/core/failure.h"
#include "engine/core/log.h"

namespace sibyl::backend::vulkan {

using engine::Errc;
using engine::fail;

namespace {

constexpr VkDeviceSize kUploadPiece = 8u << 20;     // staged per copy
constexpr VkDeviceSize kUploadBatch = 64u << 20;    // staged before a submission

}  // namespace

// ---------------------------------------------------------------- tensors

VkTensor::~VkTensor() { be_.release(alloc_); }

WeightDesc VkTensor::desc() const {
  const int64_t col_blocks = block_cols ? (cols() + block_cols - 1) / block_cols : 1;
  return {static_cast<uint32_t>(dtype()), static_cast<uint32_t>(engine::row_bytes(dtype(), cols())), scale_word,
          static_cast<uint32_t>(std::max<int64_t>(block_rows, 1)), static_cast<uint32_t>(std::max<int64_t>(block_cols, 1)),
          static_cast<uint32_t>(col_blocks)};
}

VkKvPool::~VkKvPool() {
  for (const Alloc& a : layers_) be_.release(a);
}

void VkKvPool::grow(int64_t n_pages) {
  if (n_pages > n_pages_) be_.grow_pool(*this, n_pages);
}

// ---------------------------------------------------------------- backend

VulkanBackend::VulkanBackend(const BackendOptions& options)
    : dev_(options), mem_(dev_, options.memory_budget), kernels_(dev_), step_(dev_), xfer_(dev_) {
  // On CPU implementations (lavapipe) barriers are expensive and there is no memory
  // coalescing to gain: one invocation per output row. GPUs reduce each row across 16 lanes.
  lanes_ = dev_.props.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU ? 1 : 16;
  if (const char* l = std::getenv("SIBYL_VULKAN_LANES")) {  // for tests of both kernels' shapes
    const int v = std::atoi(l);
    if (v == 1 || v == 2 || v == 4 || v == 8 || v == 16 || v == 32 || v == 64) lanes_ = static_cast<uint32_t>(v);
  }
  dummy_ = mem_.alloc(256, "a placeholder buffer");
  engine::log(engine::LogLevel::info, std::string("vulkan: ") + dev_.name() + (dev_.imported ? " (shared with the application)" : ""));
}

VulkanBackend::~VulkanBackend() {
  try {
    std::lock_guard lock(mu_);
    xfer_.finish();
    step_.finish();
    wait_steps_locked();
    while (!replays_.empty()) drop_locked(replays_.begin()->first);
  } catch (...) {  // a lost device: nothing to wait for
  }
  mem_.free(dummy_);
}

void VulkanBackend::release(const Alloc& a) {
  std::lock_guard lock(mem_mu_);
  mem_.free(a);
  if (track_releases_ && a.block != UINT32_MAX) released_.push_back(a.range);  // recordings may reference it
}

Alloc VulkanBackend::temp(VkDeviceSize bytes, const char* what) {
  std::lock_guard lock(mem_mu_);
  return mem_.alloc(bytes, what);
}

void VulkanBackend::trim_locked() {
  if (in_step_ || step_.open() || step_.pending() || xfer_.open() || xfer_.pending() || (last_ && last_->pending()))
    return;
  std::lock_guard lock(mem_mu_);
  mem_.trim();
}

void VulkanBackend::wait_steps_locked() {
  step_.wait();
  if (last_) last_->wait();
}

std::unique_lock<std::mutex> VulkanBackend::out_of_step() {
  std::unique_lock lock(mu_);
  const auto me = std::this_thread::get_id();
  if (owner_ == me) abandon_step_locked();  // this thread began a step and never ended it
  cv_.wait(lock, [&] { return owner_ == std::thread::id(); });
  return lock;
}

void VulkanBackend::abandon_step_locked() {
  try {
    if (xfer_.open()) xfer_.submit();  // inputs written ahead of the ops
    if (mode_ != Mode::replaying) rec_->finish();
    if (mode_ != Mode::plain) {  // an unfinished recording is no use; a failed replay is not trusted
      const uint64_t key = key_;
      mode_ = Mode::plain;
      rec_ = &step_;
      replay_ = nullptr;
      drop_locked(key);
    }
    xfer_.finish();
  } catch (...) {
  }
  mode_ = Mode::plain;
  rec_ = &step_;
  replay_ = nullptr;
  last_ = nullptr;
  in_step_ = false;
  owner_ = std::thread::id();
  cv_.notify_all();
}

std::unique_ptr<Tensor> VulkanBackend::upload(const HostWeight& w) {
  const VkDeviceSize data = engine::row_bytes(w.dtype, w.cols) * static_cast<VkDeviceSize>(w.rows);
  VkDeviceSize scale_at = 0, scale_bytes = 0;
  if (w.block_scale) {
    if (w.block_rows <= 0 || w.block_cols <= 0) fail(Errc::invalid_argument, "vulkan: " + w.name + ": bad FP8 blocks");
    scale_at = (data + 3) / 4 * 4;
    scale_bytes = static_cast<VkDeviceSize>((w.rows + w.block_rows - 1) / w.block_rows) *
                  static_cast<VkDeviceSize>((w.cols + w.block_cols - 1) / w.block_cols) * 4;
  }
  auto lock = out_of_step();
  Alloc a = temp(std::max(data, scale_at + scale_bytes), w.name.c_str());
  auto t = std::make_unique<VkTensor>(*this, w.dtype, w.rows, w.cols, a);
  if (w.block_scale) {
    t->scale_word = static_cast<uint32_t>(scale_at / 4);
    t->block_rows = w.block_rows;
    t->block_cols = w.block_cols;
  }
  xfer_.begin();
  const auto* src = static_cast<const uint8_t*>(w.data);
  for (VkDeviceSize at = 0; at < data; at += kUploadPiece) {
    if (xfer_.staged_bytes() >= kUploadBatch) {
      xfer_.finish();
      xfer_.begin();
    }
    xfer_.upload(a.range, at, src + at, std::min(kUploadPiece, data - at));
  }
  if (scale_bytes) xfer_.upload(a.range, scale_at, w.block_scale, scale_bytes);
  return t;  // submitted with the next batch, or at the next step / read / write
}

std::unique_ptr<Tensor> VulkanBackend::alloc(DType dtype, int64_t rows, int64_t cols) {
  if (engine::is_quantized(dtype)) fail(Errc::internal, "vulkan: alloc of a quantized tensor");
  const VkDeviceSize bytes = engine::row_bytes(dtype, cols) * static_cast<VkDeviceSize>(rows);
  return std::make_unique<VkTensor>(*this, dtype, rows, cols, temp(bytes, "an activation tensor"));
}

void VulkanBackend::write(Tensor& dst, const void* src, size_t bytes) {
  if (bytes > dst.nbytes()) fail(Errc::internal, "vulkan backend: write past the end of a tensor");
  write_range(vk(dst).range(), 0, src, bytes);
}

void VulkanBackend::write_range(const Range& dst, VkDeviceSize offset, const void* src, size_t bytes) {
  if (bytes == 0) return;
  {
    std::lock_guard lock(mu_);
    if (owner_ == std::this_thread::get_id() && in_step_) {  // ordered before the step's ops
      try {
        if (mode_ != Mode::plain && !ops_started_) {  // a step input: uploaded ahead of the (replayed) step
          xfer_.begin();
          xfer_.upload(dst, offset, src, bytes);
          return;
        }
        if (mode_ == Mode::replaying)
          fail(Errc::internal, "vulkan: a write between the ops of a step begun with a replay key");
        if (mode_ == Mode::recording) poison_locked();
        rec().upload(dst, offset, src, bytes);
      } catch (...) {
        abandon_step_locked();
        throw;
      }
      return;
    }
  }
  auto lock = out_of_step();
  wait_steps_locked();  // the last step may still read dst
  xfer_.begin();
  xfer_.upload(dst, offset, src, bytes);
  xfer_.finish();
  trim_locked();
}

void VulkanBackend::read(const Tensor& src, void* dst, size_t bytes) {
  if (bytes > src.nbytes()) fail(Errc::internal, "vulkan backend: read past the end of a tensor");
  read_range(vk(src).range(), 0, dst, bytes);
}

void VulkanBackend::read_range(const Range& src, VkDeviceSize offset, void* dst, size_t bytes) {
  if (bytes == 0) return;
  auto readback = [&](Recorder& r) {
    if (!readback_ || readback_->size() < bytes)
      readback_ = std::make_unique<HostBuffer>(dev_, std::max<VkDeviceSize>(bytes, 1 << 20), true);
    r.download(src, offset, readback_->buffer(), bytes);
    r.finish();
    std::memcpy(dst, readback_->data(), bytes);
  };
  {
    std::lock_guard lock(mu_);
    if (owner_ == std::this_thread::get_id() && in_step_) {  // a capture inside the step
      try {
        if (mode_ == Mode::replaying) fail(Errc::internal, "vulkan: a read inside a step begun with a replay key");
        if (mode_ == Mode::recording) poison_locked();
        if (xfer_.open()) xfer_.submit();  // inputs written ahead of the ops
        readback(rec());
        rec().begin();
      } catch (...) {
        abandon_step_locked();
        throw;
      }
      return;
    }
  }
  auto lock = out_of_step();
  xfer_.finish();
  wait_steps_locked();
  xfer_.begin();
  readback(xfer_);
  trim_locked();
}

std::unique_ptr<KvPool> VulkanBackend::create_kv_pool(int64_t n_layers, int64_t row_width, int64_t page_tokens) {
  if (n_layers < 0 || row_width <= 0 || page_tokens <= 0)
    fail(Errc::internal, "vulkan: create_kv_pool(" + std::to_string(n_layers) + ", " + std::to_string(row_width) +
                             ", " + std::to_string(page_tokens) + ")");
  return std::make_unique<VkKvPool>(*this, n_layers, row_width, page_tokens);
}

void VulkanBackend::grow_pool(VkKvPool& pool, int64_t n_pages) {
  const VkDeviceSize bytes = static_cast<VkDeviceSize>(n_pages) * pool.page_bytes();
  const VkDeviceSize old_bytes = static_cast<VkDeviceSize>(pool.n_pages_) * pool.page_bytes();
  auto lock = out_of_step();
  std::vector<Alloc> grown;
  try {
    for (size_t l = 0; l < pool.layers_.size(); ++l) grown.push_back(temp(bytes, "the KV cache pages"));
    if (old_bytes) {  // keep the contents (queue order puts the copy after the last step)
      xfer_.begin();
      for (size_t l = 0; l < grown.size(); ++l) xfer_.copy(pool.layers_[l].range, 0, grown[l].range, 0, old_bytes);
      xfer_.finish();
    }
  } catch (...) {
    for (const Alloc& a : grown) release(a);
    throw;
  }
  for (const Alloc& a : pool.layers_) release(a);  // recordings that read them are dropped
  pool.layers_ = std::move(grown);
  pool.n_pages_ = n_pages;
}

namespace {

void check_kv_rows(const VkKvPool& p, int64_t layer, int64_t page, int64_t n_rows) {
  if (layer < 0 || layer >= p.n_layers() || page < 0 || page >= p.n_pages() || n_rows < 0 ||
      n_rows > p.page_tokens())
    fail(Errc::internal, "vulkan: KV rows " + std::to_string(n_rows) + " of page " + std::to_string(page) +
                             " in layer " + std::to_string(layer) + " are outside the pool");
}

}  // namespace

void VulkanBackend::read_kv_rows(const KvPool& pool, int64_t layer, int64_t page, int64_t n_rows, float* dst) {
  const VkKvPool& p = vk(pool);
  check_kv_rows(p, layer, page, n_rows);
  read_range(p.layer(layer), static_cast<VkDeviceSize>(page) * p.page_bytes(), dst,
             static_cast<size_t>(n_rows * p.width()) * 4);
}

void VulkanBackend::write_kv_rows(KvPool& pool, int64_t layer, int64_t page, int64_t n_rows, const float* src) {
  const VkKvPool& p = vk(pool);
  check_kv_rows(p, layer, page, n_rows);
  write_range(p.layer(layer), static_cast<VkDeviceSize>(page) * p.page_bytes(), src,
              static_cast<size_t>(n_rows * p.width()) * 4);
}

void VulkanBackend::begin_step(uint64_t replay_key) {
  std::unique_lock lock(mu_);
  const auto me = std::this_thread::get_id();
  if (owner_ == me) abandon_step_locked();
  cv_.wait(lock, [&] { return owner_ == std::thread::id(); });
  owner_ = me;
  try {
    xfer_.finish();
    wait_steps_locked();
    check_released_locked();
    trim_locked();
    start_step_locked(replay_key);
  } catch (...) {
    abandon_step_locked();
    throw;
  }
}

void VulkanBackend::end_step() {
  std::lock_guard lock(mu_);
  if (owner_ != std::this_thread::get_id() || !in_step_) fail(Errc::internal, "vulkan: end_step without begin_step");
  try {
    submit_step_locked();
  } catch (...) {
    abandon_step_locked();
    throw;
  }
  in_step_ = false;
  owner_ = std::thread::id();
  cv_.notify_all();
}

}  // namespace sibyl::backend::vulkan

namespace sibyl::backend {
std::unique_ptr<Backend> create_vulkan_backend(const BackendOptions& options) {
  return std::make_unique<vulkan::VulkanBackend>(options);
}
}  // namespace sibyl::backend
