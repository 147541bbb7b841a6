// The backend interface: what the engine asks of a compute device.
//
// Nouns: a Backend (one device, owning its memory), Tensors (weights uploaded
// once, activations, step inputs) and one KvPool per model (the paged latent
// cache every session of the model shares). Ops are *enqueued* between
// begin_step() and end_step(): a device backend may record them into a CUDA graph
// or a Vulkan command buffer and submit the whole step at once. Only read() (and
// read_kv_rows) bring data back to the host, and they wait for the step to finish.
//
// A step is a batch: its rows come from several sequences (sessions). Everything
// that changes from one decode step to the next — token ids, positions, which
// sequence a row belongs to, the sequences' page tables — lives in device tensors
// written with write() before the step (see StepBatch). So a decode step with the
// same shape enqueues the same ops on the same tensors, and begin_step()'s replay
// key lets a device backend record it once and replay it with new inputs.
//
// The ops are coarse and fitted to the DeepSeek V2/V3 family (MLA + MoE), not a
// general graph: every op here has one obvious kernel on every backend.
// Every tensor is 2-D: rows (tokens, or a weight's output features) × cols.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/core/dtype.h"

namespace sibyl::backend {

using engine::DType;
using engine::dtype_size;

class Tensor {
 public:
  Tensor(DType dtype, int64_t rows, int64_t cols) : dtype_(dtype), rows_(rows), cols_(cols) {}
  virtual ~Tensor() = default;
  DType dtype() const { return dtype_; }
  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  size_t nbytes() const { return static_cast<size_t>(rows_) * engine::row_bytes(dtype_, cols_); }

 private:
  DType dtype_;
  int64_t rows_, cols_;
};

// Host data to upload as a weight: `rows × cols` elements of `dtype` at `data`.
// `data` stays valid for the backend's lifetime (it is the model's memory map), so
// a host backend may use it in place instead of copying.
struct HostWeight {
  std::string name;
  DType dtype;
  int64_t rows, cols;
  const void* data;
  // f8_e4m3 only: float32 scales [ceil(rows / block_rows), ceil(cols / block_cols)], row-major;
  // element (i, j) is fp8 value × scale[i / block_rows][j / block_cols]. Copied on upload.
  const void* block_scale = nullptr;
  int64_t block_rows = 0, block_cols = 0;
};

// The latent MLA cache of a model, shared by all its sessions: fixed-size pages of
// `page_tokens` rows, per layer. A row is [c_kv (kv_lora_rank, RMS-normed) | k_pe
// (qk_rope_head_dim, after RoPE)] in float32. On the GPU backends layer l's rows are one
// array [n_pages · page_tokens, width]: row r of page p is row p · page_tokens + r (the
// CPU backend keeps one block per page). Which pages hold a sequence is the engine's
// business (its page table, a step input).
class KvPool {
 public:
  virtual ~KvPool() = default;
  // Makes pages [0, n_pages) usable, keeping the contents of the existing ones.
  // Throws Errc::out_of_memory. Never called inside a step.
  virtual void grow(int64_t n_pages) = 0;
  virtual int64_t n_pages() const = 0;
  virtual int64_t page_tokens() const = 0;
};

// How attention reads the latent cache. Both give the same result (not bitwise).
enum class MlaPath {
  absorbed,  // fold W_UK into q, attend in latent space, then W_UV (decode)
  expanded,  // expand k_nope, v for every cached token, plain causal attention (prefill)
};

// The rows of one sequence in a step: rows [first_row, first_row + n_rows) of every
// activation, contiguous, sequences in order. This is host-side *shape* (what a
// recorded step is keyed on); the contents that vary live in StepBatch's tensors.
struct SeqRows {
  int64_t first_row = 0, n_rows = 0;
  MlaPath path = MlaPath::absorbed;
  // expanded only: an upper bound of the positions of these rows + 1 (sizes the expansion).
  int64_t expanded_context = 0;
};

// The batch of one step. Row i is token tokens[i] of sequence row_seq[i] at position
// positions[i]; it attends causally to that sequence's positions [first_position, positions[i]],
// whose latent rows are found through the sequence's page table:
// position p is row p % page_tokens of page page_table[row_seq[i]][p / page_tokens].
struct StepBatch {
  const Tensor* positions = nullptr;   // i32 [n, 1]
  const Tensor* row_seq = nullptr;     // i32 [n, 1]: index of row i's sequence (a page_table row)
  const Tensor* page_table = nullptr;  // i32 [n_seqs, max_pages]; unused entries are -1
  std::vector<SeqRows> seqs;           // n_seqs entries
  // Rows attend to positions [first_position, positions[i]]: 0 for the model's layers, 1 for
  // a multi-token-prediction layer, whose cache has no row at position 0.
  int64_t first_position = 0;
  int64_t rows() const { return seqs.empty() ? 0 : seqs.back().first_row + seqs.back().n_rows; }
};

struct RopeParams {
  const Tensor* inv_freq = nullptr;  // f32 [1, rope_dim/2]: per-pair frequency (YaRN blended)
  float attention_factor = 1.0f;     // cos/sin multiplier
  bool interleaved = true;           // pairs (2i, 2i+1); false: (i, i + rope_dim/2)
};

struct MlaShape {
  int64_t n_heads, kv_lora_rank, qk_nope_head_dim, qk_rope_head_dim, v_head_dim;
  float softmax_scale;  // 1/sqrt(qk_head_dim) · mscale²
};

// The up-projections from the latent: either kv_b [heads·(nope+v), kv_lora_rank] (Hugging Face
// layout: per head, nope rows of W_UK then v rows of W_UV), or split (GGUF and .sibyl layout):
// k_b [heads·kv_lora_rank, nope] (W_UK transposed per head, what absorbed attention reads
// row by row) and v_b [heads·v, kv_lora_rank].
struct MlaWeights {
  const Tensor* kv_b = nullptr;
  const Tensor* k_b = nullptr;
  const Tensor* v_b = nullptr;
};

enum class ScoreFunc { softmax, sigmoid };
enum class ExpertSelect { greedy, group_limited, noaux_tc };

struct RouterParams {
  ScoreFunc score;
  ExpertSelect select;
  int64_t n_experts, top_k, n_group, topk_group;
  bool normalize;  // divide the chosen weights by their sum
  float scaling;   // routed_scaling_factor
};

// One MoE layer's routed experts: weights [moe_intermediate, hidden] (gate, up)
// and [hidden, moe_intermediate] (down), one tensor each per expert.
struct ExpertWeights {
  std::vector<const Tensor*> gate, up, down;
};

// How matmuls compute. fast: on the stored blocks against activations rounded to the
// kernel's form (8-bit blocks, bf16) — within a stated tolerance of exact. exact: float32 on
// exactly decoded weights, matching the references. Only the CPU backend has a fast path
// today; the GPU backends compute as `exact` either way.
enum class Precision { fast, exact };

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;
  // How its matmuls compute (a backend without a fast path computes as exact).
  virtual Precision precision() const { return Precision::exact; }
  // CPU: the widest instruction set its kernels use ("avx512_bf16", …, "portable"); "" elsewhere.
  virtual const char* cpu_simd() const { return ""; }
  // True when every op computes each row exactly as it would alone: a row's result is then
  // bitwise independent of the other rows of the step, their count and the thread count.
  // The engine relies on it for batch-invariant (deterministic) results (CPU: yes).
  virtual bool batch_invariant() const { return false; }
  // How many steps may run side by side inside run_lanes(), each on its own thread with its
  // own plan and sequences (its ops then run on that thread alone). A large decode batch
  // split in lanes skips a synchronisation per op; 1: one step at a time (device backends).
  virtual int step_lanes() const { return 1; }
  // Calls lane(0) … lane(n - 1): side by side when n <= step_lanes(), else one by one.
  virtual void run_lanes(int n, const std::function<void(int)>& lane) {
    for (int i = 0; i < n; ++i) lane(i);
  }

  // ---- memory
  virtual std::unique_ptr<Tensor> upload(const HostWeight& w) = 0;
  virtual std::unique_ptr<Tensor> alloc(DType dtype, int64_t rows, int64_t cols) = 0;
  virtual void write(Tensor& dst, const void* src, size_t bytes) = 0;
  virtual void read(const Tensor& src, void* dst, size_t bytes) = 0;  // waits for the step
  // An empty pool (grow() adds pages). Throws Errc::out_of_memory.
  virtual std::unique_ptr<KvPool> create_kv_pool(int64_t n_layers, int64_t row_width, int64_t page_tokens) = 0;
  // Host copies of the first `n_rows` rows of `page` in `layer` ([n_rows, width] float32);
  // they wait for the step (save/load of a session's state).
  virtual void read_kv_rows(const KvPool& pool, int64_t layer, int64_t page, int64_t n_rows, float* dst) = 0;
  virtual void write_kv_rows(KvPool& pool, int64_t layer, int64_t page, int64_t n_rows, const float* src) = 0;

  // ---- step boundaries
  // replay_key != 0 promises: every step begun with this key enqueues the same ops, with the
  // same arguments, on the same tensors; only the contents written with write() before the
  // ops differ. A device backend may record the first such step and replay it (CUDA graph,
  // Vulkan command buffer). 0: no promise (record nothing).
  virtual void begin_step(uint64_t replay_key = 0) = 0;
  virtual void end_step() = 0;  // submit; results are ready for read()

  // ---- ops (dst may alias src where noted)
  // dst[i] = table[tokens[i]]; tokens i32 [n, 1].
  virtual void embed(Tensor& dst, const Tensor& table, const Tensor& tokens) = 0;
  // Row-wise RMSNorm over the first `cols` columns of src (all when cols == 0); dst may be src.
  virtual void rmsnorm(Tensor& dst, const Tensor& src, const Tensor& weight, float eps, int64_t cols = 0) = 0;
  // dst[n, N] = src[n, K] · weightᵀ, weight [N, K].
  virtual void matmul(Tensor& dst, const Tensor& src, const Tensor& weight) = 0;
  // Two matmuls of one input: dst_a = src · weight_aᵀ, dst_b = src · weight_bᵀ (a backend may
  // prepare src once and run both as one loop; the results are those of two matmul calls).
  virtual void matmul_pair(Tensor& dst_a, const Tensor& weight_a, Tensor& dst_b, const Tensor& weight_b,
                           const Tensor& src) {
    matmul(dst_a, src, weight_a);
    matmul(dst_b, src, weight_b);
  }
  // acc += x.
  virtual void add(Tensor& acc, const Tensor& x) = 0;
  // dst = silu(gate) * up.
  virtual void swiglu(Tensor& dst, const Tensor& gate, const Tensor& up) = 0;
  // dst[i, :] = src[rows[i], :]; rows i32 [dst.rows, 1] (the rows whose logits are kept).
  virtual void gather_rows(Tensor& dst, const Tensor& src, const Tensor& rows) = 0;
  // Copies page `src` to page `dst` in every layer (copy-on-write of a shared page).
  virtual void copy_kv_page(KvPool& pool, int64_t dst, int64_t src) = 0;

  // MLA, part 1: from kv_a = [c_kv | k_pe] rows, RMS-norm c_kv, rotate k_pe, and store
  // both into `layer` of the pool at each row's (sequence, position).
  virtual void mla_store(KvPool& pool, int64_t layer, const Tensor& kv_a, const Tensor& kv_norm, float eps,
                         const StepBatch& batch, const RopeParams& rope) = 0;
  // MLA, part 2: q [n, heads·(nope+rope)] (rope part not yet rotated); row i attends causally
  // to its sequence's positions [batch.first_position, positions[i]], each sequence by its SeqRows::path;
  // dst [n, heads·v_head_dim].
  virtual void mla_attention(Tensor& dst, const Tensor& q, const KvPool& pool, int64_t layer,
                             const StepBatch& batch, const MlaWeights& up, const MlaShape& shape,
                             const RopeParams& rope) = 0;

  // MoE router: logits = x · gateᵀ in float32, scores, group-limited top-k.
  // ids i32 [n, top_k], weights f32 [n, top_k]; raw_logits f32 [n, n_experts] if non-null.
  virtual void moe_route(Tensor& ids, Tensor& weights, Tensor* raw_logits, const Tensor& x, const Tensor& gate,
                         const Tensor* score_bias, const RouterParams& params) = 0;
  // dst = Σ_k weights[i,k] · Expert_{ids[i,k]}(x[i]), SwiGLU experts; only chosen experts run.
  virtual void moe_experts(Tensor& dst, const Tensor& x, const Tensor& ids, const Tensor& weights,
                           const ExpertWeights& experts) = 0;
};

enum class BackendKind { automatic, cpu, cuda, vulkan };

// A Vulkan device owned by the application, shared with Sibyl (see docs/VULKAN.md). The handles
// are the application's Vulkan handles; the application keeps them alive longer than the model.
struct VulkanDeviceImport {
  void* instance = nullptr;         // VkInstance
  void* physical_device = nullptr;  // VkPhysicalDevice
  void* device = nullptr;           // VkDevice
  void* queue = nullptr;            // VkQueue of a compute-capable family
  uint32_t queue_family_index = 0;
  void* get_instance_proc_addr = nullptr;  // PFN_vkGetInstanceProcAddr; nullptr: the loader's
  // Called around every Sibyl submission to `queue` (Vulkan requires external synchronisation
  // of a queue); nullptr when the application never submits to that queue from another thread.
  void (*lock_queue)(void* user_data) = nullptr;
  void (*unlock_queue)(void* user_data) = nullptr;
  void* queue_user_data = nullptr;
};

struct BackendOptions {
  int n_threads = 0;            // CPU: 0 = all hardware threads
  Precision precision = Precision::exact;  // the C ABI's default is fast; the engine's, exact
  int thread_nice = 0;          // CPU: Linux nice value of the backend's own threads (0: inherit)
  int device_index = 0;         // GPU backends: which device
  uint64_t memory_budget = 0;   // GPU backends: bytes of device memory Sibyl may use; 0 = no limit
  const VulkanDeviceImport* vulkan_import = nullptr;  // Vulkan: run on the application's device
};

// The CPU backend: float32 compute from the stored weights; the oracle for the others.
std::unique_ptr<Backend> create_cpu_backend(const BackendOptions& options);

// Which backends this build contains.
bool backend_built(BackendKind kind);
const char* backend_kind_name(BackendKind kind);  // "auto", "cpu", "cuda", "vulkan"

// A named backend (Errc::backend naming why when it is not built in or no device is usable), or
// for `automatic` the first that works of CUDA, Vulkan, CPU.
std::unique_ptr<Backend> create_backend(BackendKind kind, const BackendOptions& options);

}  // namespace sibyl::backend
