#include "backends/cuda/context.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "backends/cuda/cublas_loader.h"
#include "engine/core/failure.h"
#include "backends/cuda/kernels.h"
#include "engine/core/log.h"

namespace sibyl::backend::cuda {

using engine::Errc;
using engine::fail;

void throw_cuda(cudaError_t err, const std::string& what) {
  const Errc code = err == cudaErrorMemoryAllocation ? Errc::out_of_memory : Errc::backend;
  fail(code, "CUDA backend: " + what + ": " + cudaGetErrorString(err));
}

void throw_cublas(cublasStatus_t st, const std::string& what) {
  fail(Errc::backend, "CUDA backend: " + what + ": cuBLAS status " + std::to_string(int(st)) + " (" +
                          cublas().status_string(st) + ")");
}

namespace {

std::string mib(double bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MiB", bytes / (1 << 20));
  return buf;
}

const char* env(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : nullptr;
}

// Runs on every entry: the mutex, and this thread's current device (cudaSetDevice is per thread).
}  // namespace

class Context::Lock {
 public:
  explicit Lock(Context& c) : guard_(c.mutex_) {
    int cur = -1;
    if (cudaGetDevice(&cur) != cudaSuccess || cur != c.device_) check(cudaSetDevice(c.device_), "cudaSetDevice");
  }

 private:
  std::lock_guard<std::recursive_mutex> guard_;
};

std::shared_ptr<Context> Context::create(const BackendOptions& options) {
  std::shared_ptr<Context> c(new Context());
  c->init(options);
  return c;
}

void Context::init(const BackendOptions& o) {
  static_assert(int(DType::f32) == dev::kF32 && int(DType::f16) == dev::kF16 &&
                    int(DType::bf16) == dev::kBF16 && int(DType::f8_e4m3) == dev::kF8 &&
                    int(DType::q8_0) == dev::kQ8_0 && int(DType::q5_0) == dev::kQ5_0 &&
                    int(DType::q4_k) == dev::kQ4_K && int(DType::q6_k) == dev::kQ6_K,
                "kernel dtype codes follow engine::DType");
  // No driver, no device, a driver older than the runtime: Errc::backend, so `auto` moves on.
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    cudaGetLastError();
    fail(Errc::backend, std::string("CUDA backend: no usable CUDA device (") + cudaGetErrorString(err) + ")");
  }
  if (count == 0) fail(Errc::backend, "CUDA backend: no CUDA device found");
  if (o.device_index < 0 || o.device_index >= count)
    fail(Errc::backend, "CUDA backend: device index " + std::to_string(o.device_index) + " is out of range (" +
                            std::to_string(count) + " CUDA device" + (count == 1 ? "" : "s") + ")");
  device_ = o.device_index;
  budget_ = o.memory_budget;

  if (const char* p = env("SIBYL_CUDA_PRECISION")) {
    const std::string v = p;
    if (v == "f32" || v == "fp32" || v == "float32")
      precision_ = Precision::f32;
    else if (v == "tf32")
      precision_ = Precision::tf32;
    else
      fail(Errc::invalid_argument, "SIBYL_CUDA_PRECISION must be f32 or tf32 (the bf16 path is not implemented yet), not \"" + v + "\"");
  }
  if (const char* g = env("SIBYL_CUDA_GRAPHS")) graphs_ = std::string(g) != "0";
  if (const char* g = env("SIBYL_CUDA_POISON")) poison_ = std::string(g) != "0";

  check(cudaSetDevice(device_), "cudaSetDevice");
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, device_), "cudaGetDeviceProperties");
  exec_.sm_count = prop.multiProcessorCount;
  max_smem_ = int(prop.sharedMemPerBlockOptin) - 1024;  // room for the kernels' static shared memory
  err = init_kernels(max_smem_);
  if (err == cudaErrorNoKernelImageForDevice || err == cudaErrorInvalidDeviceFunction) {
    cudaGetLastError();
    fail(Errc::backend, "CUDA backend: this build has no kernels for " + std::string(prop.name) + " (compute capability " +
                            std::to_string(prop.major) + "." + std::to_string(prop.minor) +
                            "); rebuild with -DCMAKE_CUDA_ARCHITECTURES=" + std::to_string(prop.major * 10 + prop.minor));
  }
  check(err, "kernel setup");

  check(cudaStreamCreateWithFlags(&exec_.stream, cudaStreamNonBlocking), "cudaStreamCreate");
  check_blas(cublas().create(&exec_.blas), "cublasCreate");
  check_blas(cublas().set_stream(exec_.blas, exec_.stream), "cublasSetStream");
  // float32 path: no TF32 unless asked for; tf32 lets cuBLAS use the tensor cores for prefill GEMMs.
  check_blas(cublas().set_math_mode(exec_.blas, precision_ == Precision::tf32 ? CUBLAS_TF32_TENSOR_OP_MATH
                                                                         : CUBLAS_DEFAULT_MATH),
             "cublasSetMathMode");
  // A fixed workspace keeps cuBLAS from allocating inside a graph capture.
  workspace_bytes_ = size_t(32) << 20;
  reserve_budget_locked(workspace_bytes_, "the cuBLAS workspace");
  check(cudaMalloc(&workspace_, workspace_bytes_), "cudaMalloc (cuBLAS workspace)");
  persistent_bytes_ += workspace_bytes_;
  check_blas(cublas().set_workspace(exec_.blas, workspace_, workspace_bytes_), "cublasSetWorkspace");

  check(cudaHostAlloc(reinterpret_cast<void**>(&staging_), 2 * kStagingHalf, cudaHostAllocDefault), "cudaHostAlloc");
  check(cudaMalloc(reinterpret_cast<void**>(&fault_), sizeof(int32_t)), "cudaMalloc (fault word)");
  check(cudaMemset(fault_, 0, sizeof(int32_t)), "cudaMemset (fault word)");
  check(cudaHostAlloc(reinterpret_cast<void**>(&fault_host_), sizeof(int32_t), cudaHostAllocDefault), "cudaHostAlloc");
  *fault_host_ = 0;
  for (cudaEvent_t& e : half_done_) check(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "cudaEventCreate");

  // Activation chunks: 64 MiB, or less under a small budget.
  size_t chunk = size_t(64) << 20;
  if (budget_ && budget_ / 8 < chunk) chunk = std::max<size_t>(size_t(2) << 20, size_t(budget_ / 8));
  // A chunk given back may be what a recorded graph points at: those graphs go first.
  arena_ = std::make_unique<Arena>([this](size_t bytes) { return device_malloc_locked(bytes, "activations"); },
                                   [this](void* p, size_t) {
                                     destroy_graphs_locked();
                                     cudaFree(p);
                                   },
                                   chunk);

  size_t free_b = 0, total_b = 0;
  cudaMemGetInfo(&free_b, &total_b);
  description_ = std::string(prop.name) + " (device " + std::to_string(device_) + ", sm_" + std::to_string(prop.major) +
                 std::to_string(prop.minor) + ", " + std::to_string(prop.multiProcessorCount) + " SMs, " +
                 mib(double(total_b)) + ", " + mib(double(free_b)) + " free), precision " +
                 (precision_ == Precision::f32 ? "f32" : "tf32") + ", graphs " + (graphs_ ? "on (keyed steps)" : "off") +
                 (budget_ ? ", budget " + mib(double(budget_)) : std::string());
  engine::log(engine::LogLevel::info, "CUDA backend: " + description_);
}

Context::~Context() {
  // Never throws: at process exit the CUDA runtime may already be gone; errors are ignored.
  cudaSetDevice(device_);
  if (exec_.stream) {
    try {
      std::lock_guard<std::recursive_mutex> g(mutex_);
      flush_locked(false);
    } catch (...) {
    }
    cudaStreamSynchronize(exec_.stream);
  }
  for (const Graph& g : graphs_cache_) cudaGraphExecDestroy(g.exec);
  graphs_cache_.clear();
  arena_.reset();
  if (fault_) cudaFree(fault_);
  if (fault_host_) cudaFreeHost(fault_host_);
  if (exec_.blas) cublas().destroy(exec_.blas);
  if (workspace_) cudaFree(workspace_);
  for (cudaEvent_t e : half_done_)
    if (e) cudaEventDestroy(e);
  if (staging_) cudaFreeHost(staging_);
  if (exec_.stream) cudaStreamDestroy(exec_.stream);
  cudaGetLastError();
}

// ---------------------------------------------------------------- memory

void Context::reserve_budget_locked(size_t bytes, const std::string& what) {
  if (!budget_) return;
  auto used = [&] { return persistent_bytes_ + (arena_ ? arena_->reserved() : 0); };
  if (used() + bytes <= budget_) return;
  trim_locked();
  if (used() + bytes <= budget_) return;
  fail(Errc::out_of_memory, "CUDA backend: " + what + " needs " + mib(double(bytes)) + " but only " +
                                mib(double(budget_ > used() ? budget_ - used() : 0)) + " of the memory budget of " +
                                mib(double(budget_)) + " is left");
}

void Context::trim_locked() {
  if (!arena_ || arena_->reserved() == arena_->live()) return;
  flush_locked(false);
  if (in_step_) clean_ = false;
  check(cudaStreamSynchronize(exec_.stream), "synchronize");
  arena_->trim();
}

void* Context::device_malloc_locked(size_t bytes, const std::string& what) {
  reserve_budget_locked(bytes, what);
  void* p = nullptr;
  cudaError_t err = cudaMalloc(&p, bytes);
  if (err == cudaErrorMemoryAllocation) {  // idle activation chunks may be what is missing
    cudaGetLastError();
    trim_locked();
    err = cudaMalloc(&p, bytes);
  }
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    fail(Errc::out_of_memory, "CUDA backend: out of device memory allocating " + mib(double(bytes)) + " for " + what +
                                  " (" + mib(double(free_b)) + " free of " + mib(double(total_b)) + ")");
  }
  check(err, "cudaMalloc");
  return p;
}

void* Context::alloc_persistent(size_t bytes, const std::string& what) {
  Lock lock(*this);
  bytes = bytes ? bytes : 1;
  void* p = device_malloc_locked(bytes, what);
  persistent_bytes_ += bytes;
  return p;
}

void Context::free_persistent(void* p, size_t bytes) {
  if (!p) return;
  try {
    Lock lock(*this);
    flush_locked(false);  // recorded ops may still read it
    if (in_step_) clean_ = false;
    cudaStreamSynchronize(exec_.stream);
  } catch (...) {  // a destructor path: the memory is released regardless
  }
  cudaFree(p);
  std::lock_guard<std::recursive_mutex> g(mutex_);
  persistent_bytes_ -= bytes ? bytes : 1;
}

void* Context::alloc_temp(size_t bytes, const std::string& what) {
  Lock lock(*this);
  (void)what;
  return arena_->alloc(bytes);
}

void Context::free_temp(void* p) {
  std::lock_guard<std::recursive_mutex> g(mutex_);
  arena_->free(p);  // no wait: every later use is ordered after the earlier ones on the stream
}

void Context::upload(void* dst, const void* src, size_t bytes) {
  Lock lock(*this);
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, exec_.stream), "upload");
  check(cudaStreamSynchronize(exec_.stream), "upload");
}

// ---------------------------------------------------------------- ops

void Context::enqueue_raw(Invoke inv, Generic launcher, const void* params, size_t size, const char* name) {
  Lock lock(*this);
  // Key layout per op: invoke and launcher pointers, then the parameter bytes (8-aligned).
  const size_t at = key_.size();
  key_.resize(at + 2 * sizeof(void*) + size);
  std::memcpy(key_.data() + at, &inv, sizeof(void*));
  std::memcpy(key_.data() + at + sizeof(void*), &launcher, sizeof(void*));
  std::memcpy(key_.data() + at + 2 * sizeof(void*), params, size);
  ops_.push_back(Op{inv, launcher, at + 2 * sizeof(void*), name});
  if (!in_step_) {
    flush_locked(false);  // outside a step: run now
  } else if (owner_ != std::this_thread::get_id()) {
    clean_ = false;
  }
}

void Context::run_ops_locked() {
  for (const Op& op : ops_) op.invoke(op.launcher, key_.data() + op.offset, exec_);
}

void Context::flush_locked(bool graph_ok) {
  if (ops_.empty()) return;
  struct Clear {
    Context& c;
    ~Clear() {
      c.ops_.clear();
      c.key_.clear();
    }
  } clear{*this};
  ++counters_.flushes;
  if (!(graphs_ && graph_ok && replay_key_ != 0 && run_graph_locked())) run_ops_locked();
  if (staging_off_) {  // the staged inputs of this half are read by now-submitted work
    check(cudaEventRecord(half_done_[half_], exec_.stream), "cudaEventRecord");
    half_recorded_[half_] = true;
  }
}

namespace {
uint64_t fnv1a(const std::vector<uint8_t>& v) {
  uint64_t h = 1469598103934665603ull;
  for (uint8_t b : v) h = (h ^ b) * 1099511628211ull;
  return h;
}
}  // namespace

bool Context::run_graph_locked() {
  const uint64_t h = fnv1a(key_);
  for (Graph& g : graphs_cache_) {
    if (g.replay_key != replay_key_ || g.hash != h || g.key != key_) continue;
    check(cudaGraphLaunch(g.exec, exec_.stream), "cudaGraphLaunch");
    g.last_use = ++use_clock_;
    ++counters_.graph_launches;
    return true;
  }
  for (const auto& [k, failures] : capture_failures_)
    if (k == replay_key_ && failures >= kCaptureTries) return false;
  // Capture: nothing runs while capturing, so any failure falls back to launching op by op.
  if (cudaStreamBeginCapture(exec_.stream, cudaStreamCaptureModeRelaxed) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  bool ok = true;
  try {
    run_ops_locked();
  } catch (...) {
    ok = false;
  }
  cudaGraph_t graph = nullptr;
  const cudaError_t end = cudaStreamEndCapture(exec_.stream, &graph);
  cudaGraphExec_t exec = nullptr;
  if (ok && end == cudaSuccess && graph) ok = cudaGraphInstantiate(&exec, graph, 0) == cudaSuccess;
  else ok = false;
  if (graph) cudaGraphDestroy(graph);
  if (!ok) {
    cudaGetLastError();
    // A few tries (a first use may do one-time setup that capture refuses), then op by op for good.
    auto it = std::find_if(capture_failures_.begin(), capture_failures_.end(),
                           [&](const auto& f) { return f.first == replay_key_; });
    if (it != capture_failures_.end())
      ++it->second;
    else if (capture_failures_.size() < 64)
      capture_failures_.emplace_back(replay_key_, 1);
    return false;
  }
  // Room: a key keeps its two latest variants (one per staging half), the cache its latest graphs.
  constexpr size_t kMaxGraphs = 16, kVariantsPerKey = 2;
  auto evict_lru = [&](bool same_key_only) {
    size_t lru = graphs_cache_.size();
    for (size_t i = 0; i < graphs_cache_.size(); ++i) {
      if (same_key_only && graphs_cache_[i].replay_key != replay_key_) continue;
      if (lru == graphs_cache_.size() || graphs_cache_[i].last_use < graphs_cache_[lru].last_use) lru = i;
    }
    if (lru == graphs_cache_.size()) return;
    cudaStreamSynchronize(exec_.stream);  // it may still be running
    cudaGraphExecDestroy(graphs_cache_[lru].exec);
    graphs_cache_.erase(graphs_cache_.begin() + std::ptrdiff_t(lru));
  };
  size_t variants = 0;
  for (const Graph& g : graphs_cache_) variants += g.replay_key == replay_key_;
  if (variants >= kVariantsPerKey) evict_lru(true);
  else if (graphs_cache_.size() >= kMaxGraphs) evict_lru(false);
  graphs_cache_.push_back(Graph{replay_key_, h, key_, exec, ++use_clock_});
  ++counters_.graph_captures;
  check(cudaGraphLaunch(exec, exec_.stream), "cudaGraphLaunch");
  ++counters_.graph_launches;
  return true;
}

void Context::destroy_graphs_locked() {
  if (graphs_cache_.empty()) return;
  cudaStreamSynchronize(exec_.stream);  // a graph may still be running
  for (const Graph& g : graphs_cache_) cudaGraphExecDestroy(g.exec);
  graphs_cache_.clear();
  ++counters_.graph_invalidations;
}

void Context::invalidate_graphs() {
  Lock lock(*this);
  destroy_graphs_locked();
}

void Context::begin_step(uint64_t replay_key) {
  Lock lock(*this);
  flush_locked(false);  // leftovers: an aborted step, or another thread's step in progress
  const auto me = std::this_thread::get_id();
  clean_ = !in_step_ || owner_ == me;
  in_step_ = true;
  owner_ = me;
  replay_key_ = replay_key;
  // The staging half this step writes into was last read by the step before the previous one.
  half_ ^= 1;
  if (half_recorded_[half_]) check(cudaEventSynchronize(half_done_[half_]), "staging wait");
  staging_off_ = 0;
}

void Context::end_step() {
  Lock lock(*this);
  const bool mine = in_step_ && owner_ == std::this_thread::get_id();
  flush_locked(mine && clean_);
  if (mine) {
    in_step_ = false;
    replay_key_ = 0;
  }
}

void Context::write(void* dst, const void* src, size_t bytes) {
  Lock lock(*this);
  const size_t need = (bytes + 15) / 16 * 16;
  if (in_step_ && staging_off_ + need <= kStagingHalf) {
    uint8_t* s = staging_ + size_t(half_) * kStagingHalf + staging_off_;
    std::memcpy(s, src, bytes);
    staging_off_ += need;
    const CopyParams p{dst, s, int64_t(bytes), int32_t(cudaMemcpyHostToDevice), 0};
    enqueue(launch_copy, p, "write");
    return;
  }
  flush_locked(false);
  if (in_step_) clean_ = false;
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, exec_.stream), "write");
  check(cudaStreamSynchronize(exec_.stream), "write");
}

void Context::write_sync(void* dst, const void* src, size_t bytes) {
  Lock lock(*this);
  flush_locked(false);
  if (in_step_) clean_ = false;
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, exec_.stream), "write");
  wait_locked("write");
}

void Context::read(const void* src, void* dst, size_t bytes) {
  Lock lock(*this);
  flush_locked(false);
  if (in_step_) clean_ = false;
  check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, exec_.stream), "read");
  wait_locked("synchronize (a kernel of this step may have failed)");
}

void Context::synchronize() {
  Lock lock(*this);
  flush_locked(false);
  if (in_step_) clean_ = false;
  wait_locked("synchronize");
}

namespace {
std::string fault_names(int32_t bits) {
  static const std::pair<int32_t, const char*> names[] = {
      {kFaultStoreRow, "mla_store got a row whose sequence, position or page is outside the batch or the pool"},
      {kFaultRowInput, "mla_attention got a row whose sequence or position is out of range (a sequence outside "
                       "the batch or not the row's own, a negative position, or one past the page table or the "
                       "sequence's expanded_context)"},
      {kFaultMissingPage, "mla_attention attended a position without a page in its page table"},
      {kFaultPageId, "a page table entry is outside [-1, n_pages)"},
      {kFaultGatherRow, "gather_rows got a row index outside its source"},
  };
  std::string out;
  for (const auto& [bit, text] : names)
    if (bits & bit) out += std::string(out.empty() ? "" : "; ") + text;
  return out.empty() ? "unknown fault bits " + std::to_string(bits) : out;
}
}  // namespace

void Context::wait_locked(const char* what) {
  check(cudaMemcpyAsync(fault_host_, fault_, sizeof(int32_t), cudaMemcpyDeviceToHost, exec_.stream), "fault word");
  check(cudaStreamSynchronize(exec_.stream), what);
  const int32_t bits = *fault_host_;
  if (!bits) return;
  *fault_host_ = 0;  // reported once
  check(cudaMemsetAsync(fault_, 0, sizeof(int32_t), exec_.stream), "fault word");
  check(cudaStreamSynchronize(exec_.stream), "fault word");
  fail(Errc::internal, "CUDA backend: invalid step inputs caught on the device: " + fault_names(bits));
}

Stats Context::stats() {
  std::lock_guard<std::recursive_mutex> g(mutex_);
  Stats s = counters_;
  s.persistent_bytes = persistent_bytes_;
  s.arena_reserved = arena_->reserved();
  s.arena_live = arena_->live();
  s.graphs_cached = graphs_cache_.size();
  return s;
}

}  // namespace sibyl::backend::cuda
