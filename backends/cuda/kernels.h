// Parameters and launchers of the CUDA backend's kernels. Host code fills a parameter struct and
// enqueues `launcher(params, exec)` (see context.h); the launcher runs later, on the stream, maybe
// inside a CUDA graph capture. Every struct is plain data with no padding, because its bytes are
// the op's key for graph replay: equal bytes must mean an equal launch.
#pragma once
#include <cstdint>

#include "backends/cuda/cuda_common.h"

namespace sibyl::backend::cuda {

namespace dev {
// engine::DType values, for code that cannot include dtype.h (checked in context.cpp).
enum : int { kF32 = 0, kF16 = 1, kBF16 = 2, kI32 = 3, kI64 = 4, kF8 = 5, kQ8_0 = 6, kQ5_0 = 7, kQ4_K = 8, kQ6_K = 9 };
}  // namespace dev

// A weight matrix in device memory, in its stored dtype (engine::DType values).
struct WeightView {
  const uint8_t* data;
  const float* scale;  // f8_e4m3: block scales [ceil(rows / block_rows), scale_cols]; else nullptr
  int64_t rows, cols;
  int64_t row_bytes;
  int32_t dtype;
  int32_t block_rows, block_cols, scale_cols;
};

struct RopeArgs {
  const float* inv_freq;  // [rope_dim / 2]
  float attention_factor;
  int32_t interleaved;
};

// ---- matrix-vector products for a few tokens (decode), reading the weight's blocks directly.
// Output row j (of n_rows = groups · group_rows) belongs to group g = j / group_rows and reads weight
// row g·w_group_stride + w_offset + j % group_rows; its input is x + g·x_group_stride (per token
// + i·ldx) and it writes y[i·ldy + g·y_group_stride + j % group_rows]. One group: a plain matmul.
struct GemvParams {
  WeightView w;
  const float* x;
  float* y;
  int64_t n_rows, k;
  int64_t ldx, ldy;
  int64_t group_rows, w_group_stride, w_offset, x_group_stride, y_group_stride;
  int32_t n_tokens;
  int32_t rows_per_block;  // 1, 2 or 4 (threads per row: 128 / rows_per_block)
};
void launch_gemv(const GemvParams& p, const Exec& ex);  // any dtype, any n_tokens
void launch_gemv_plain(const GemvParams& p, const Exec& ex, bool vec);  // f32, f16, bf16, f8
void launch_gemv_quant(const GemvParams& p, const Exec& ex, bool vec);  // q8_0, q5_0, q4_k, q6_k

// y[i, g·y_group_stride + c] = Σ_d x[i·ldx + g·x_group_stride + d] · W[g·w_group_stride + w_offset + d, c]
// for c < w.cols, d < depth: the weight used untransposed (W_UK of the kv_b layout, k_b expansion).
struct GemvTParams {
  WeightView w;
  const float* x;
  float* y;
  int64_t depth, n_groups;
  int64_t w_group_stride, w_offset;
  int64_t ldx, x_group_stride, ldy, y_group_stride;
  int32_t n_tokens, pad;
};
void launch_gemv_t(const GemvTParams& p, const Exec& ex);

// Dequantize weight rows to float32: out[r·ldo + c] = W[src_row(r), c], src_row(r) = row_ids[r]
// when row_ids is set (embedding lookup), else (r / group_rows)·w_group_stride + w_offset + r % group_rows.
struct DequantParams {
  WeightView w;
  float* out;
  const int32_t* row_ids;
  int64_t n_rows, ldo;
  int64_t group_rows, w_group_stride, w_offset;
};
void launch_dequant(const DequantParams& p, const Exec& ex);

// cuBLAS SGEMM (column-major, as cuBLAS sees it): C_b = op(A_b)·op(B_b) for b < batch.
struct GemmParams {
  const float* a;
  const float* b;
  float* c;
  int64_t m, n, k, lda, ldb, ldc;
  int64_t stride_a, stride_b, stride_c, batch;
  int32_t trans_a, trans_b;
};
void launch_gemm(const GemmParams& p, const Exec& ex);

// ---- elementwise and row ops
struct AddParams {
  float* acc;
  const float* x;
  int64_t n;
};
void launch_add(const AddParams& p, const Exec& ex);

struct SwigluParams {
  float* out;
  const float* gate;
  const float* up;
  int64_t n;
};
void launch_swiglu(const SwigluParams& p, const Exec& ex);

struct RmsnormParams {
  WeightView weight;  // one row
  const float* src;
  float* dst;
  int64_t n_rows, cols, ld_src, ld_dst;
  float eps;
  int32_t pad;
};
void launch_rmsnorm(const RmsnormParams& p, const Exec& ex);

struct CopyParams {  // a device or host-to-device copy on the stream (host side pinned)
  void* dst;
  const void* src;
  int64_t bytes;
  int32_t kind;  // cudaMemcpyKind
  int32_t pad;
};
void launch_copy(const CopyParams& p, const Exec& ex);

struct MemsetParams {
  void* dst;
  int64_t bytes;
};
void launch_memset(const MemsetParams& p, const Exec& ex);
void launch_poison(const MemsetParams& p, const Exec& ex);  // 0xff bytes: NaN floats

// out[r, :] = x[rows[r], :] (gather_rows, MoE grouped path). A row index outside [0, n_src) sets
// kFaultGatherRow and fills the output row with NaN.
struct GatherParams {
  float* out;
  const float* x;
  const int32_t* rows;
  int64_t n, cols, ldx, n_src;
  int32_t* fault;
};
void launch_gather(const GatherParams& p, const Exec& ex);

// MoE, grouped path: acc[rows[r]] += weights[slots[r]] · src[r].
struct ScatterAddParams {
  float* acc;
  const float* src;
  const int32_t* rows;
  const int32_t* slots;
  const float* weights;
  int64_t n, cols, ld_acc;
};
void launch_scatter_add(const ScatterAddParams& p, const Exec& ex);

// ---- The paged latent cache as kernels see it
// Invalid step inputs cannot throw inside a kernel: the kernel skips the offending work, ORs one of
// these bits into the context's fault word and the host reports them at the next read (context.h).
enum FaultBits : int32_t {
  kFaultStoreRow = 1,    // mla_store: a row's sequence, position or page is outside the batch or pool
  kFaultRowInput = 2,    // attention: a row's sequence or position is out of range
  kFaultMissingPage = 4, // attention: an attended position has no valid page in its sequence's table
  kFaultPageId = 8,      // a page table entry outside [-1, n_pages)
  kFaultGatherRow = 16,  // gather_rows: a row index outside the source
};

// One layer of the pool through a step's page tables: position t of sequence s is row
// page_table[s·max_pages + t / page_tokens] · page_tokens + t % page_tokens of `rows`.
struct PagedKv {
  float* rows;                // the layer [n_pages · page_tokens, width]
  const int32_t* page_table;  // [n_seqs, max_pages]; -1: no page
  int64_t n_pages, page_tokens, max_pages, width;
};

// A run of step rows: row i of the run is sequence row_seq[i] (one of [seq_lo, seq_hi)) at
// position positions[i].
struct BatchRows {
  const int32_t* positions;
  const int32_t* row_seq;
  int64_t seq_lo, seq_hi;
};

// ---- MLA
// Per row i: the pool row of (row_seq[i], positions[i]) = [RMSNorm(kv_a[i, :R]) | RoPE(kv_a[i, R:R+dr])].
struct MlaStoreParams {
  WeightView norm;
  const float* kv_a;
  PagedKv kv;
  BatchRows rows;
  RopeArgs rope;
  int64_t n_tokens, ld_kv_a, R, dr;
  int32_t* fault;
  float eps;
  int32_t pad;
};
void launch_mla_store(const MlaStoreParams& p, const Exec& ex);

// Absorbed attention over the paged latent cache, split over the sequence in n_splits pieces (split
// s of row i covers its share of [0, positions[i]]; the count comes from the pool's capacity, never
// from the positions, so a decode step replays as a graph; empty splits exit early). n_splits == 1
// writes the normalised latent output o_lat [n, H·R]; otherwise unnormalised partials
// [n, S, H, R] and (max, sum) [n, S, H, 2], merged by launch_mla_merge.
struct MlaDecodeParams {
  const float* q;      // [n, H·(dn+dr)], rope part not yet rotated
  const float* q_lat;  // [n, H·R]: q_nope absorbed through W_UK
  PagedKv kv;          // width W = R + dr
  BatchRows rows;
  float* out;
  float* ml;
  int32_t* fault;
  RopeArgs rope;
  int64_t n_tokens, n_heads, R, dn, dr, q_ld, n_splits;
  int64_t first_position;  // keys before it are not attended (an MTP layer's cache)
  float scale;
  int32_t heads_per_block;
};
void launch_mla_decode(const MlaDecodeParams& p, const Exec& ex);
size_t mla_decode_smem_bytes(int64_t heads_per_block, int64_t W);

struct MlaMergeParams {
  const float* part;
  const float* ml;
  float* out;  // [n, H·R]
  int64_t n_tokens, n_heads, R, n_splits;
};
void launch_mla_merge(const MlaMergeParams& p, const Exec& ex);

// One sequence's latent rows [0, n) gathered through its page table into a contiguous [n, width]
// (the expanded path's input). A position without a page (-1) gives a zero row: it lies past the
// sequence's end, and the attention kernel checks that no attended position is one.
struct KvGatherParams {
  PagedKv kv;
  int64_t seq, n;
  float* out;
  int32_t* fault;
};
void launch_kv_gather(const KvGatherParams& p, const Exec& ex);

// Expanded (prefill) causal attention of one sequence's rows: k_nope and v already expanded for
// its positions [0, n_keys), k_pe in its gathered latent rows.
struct MlaPrefillParams {
  const float* q;       // [n, H·(dn+dr)]
  const float* k_nope;  // k_nope of position t, head h: k_nope + t·k_ld + h·k_hs
  const float* v;       // v + t·v_ld + h·v_hs
  const float* latent;  // the gathered rows [n_keys, W]: k_pe of position t at latent + t·W + R
  const int32_t* positions;
  const int32_t* row_seq;     // every row must be sequence `seq`
  const int32_t* page_row;    // the sequence's page table row [max_pages]: attended positions need a page
  float* out;  // [n, out_ld], head h at h·dv
  int32_t* fault;
  RopeArgs rope;
  int64_t n_tokens, n_keys, seq, n_pages, page_tokens;
  int64_t n_heads, dn, dr, dv, R, W, q_ld, k_ld, k_hs, v_ld, v_hs, out_ld;
  int64_t first_position;  // keys before it are not attended (an MTP layer's cache)
  float scale;
  int32_t pad;
};
void launch_mla_prefill(const MlaPrefillParams& p, const Exec& ex);
size_t mla_prefill_smem_bytes(int64_t qk, int64_t dv);

// ---- MoE
struct RouteParams {
  WeightView bias;  // data == nullptr: none
  const float* logits;  // [n, E]
  int32_t* ids;         // [n, top_k]
  float* weights;       // [n, top_k]
  int64_t n_tokens, n_experts, top_k, n_group, topk_group;
  float scaling;
  int32_t score;      // 0 softmax, 1 sigmoid
  int32_t select;     // 0 greedy, 1 group_limited, 2 noaux_tc
  int32_t normalize;
};
void launch_moe_route(const RouteParams& p, const Exec& ex);

// Decode-sized MoE straight from a device table of expert weights (no host round trip):
//   mode 0: y[s, j] = A_e[j]·x[s / top_k]                (s = token·top_k + k, e = ids[s])
//   mode 1: y[s, j] = silu(A_e[j]·x) · (B_e[j]·x)        (gate and up fused)
//   mode 2: y[i, j] = Σ_k weights[i, k] · A_e[j]·x[i·top_k + k]   (down projection + combine)
// All experts of a table have the kernel's dtype; k % 8 == 0 and x rows 16-byte aligned.
struct MoeGemvParams {
  const WeightView* table_a;
  const WeightView* table_b;
  const int32_t* ids;
  const float* weights;
  const float* x;
  float* y;
  int64_t rows, k, top_k, n_tokens, ldx, ldy;
  int32_t mode, dtype;
};
void launch_moe_gemv(const MoeGemvParams& p, const Exec& ex);
void launch_moe_gemv_plain(const MoeGemvParams& p, const Exec& ex);
void launch_moe_gemv_quant(const MoeGemvParams& p, const Exec& ex);

// One-time setup: raises the dynamic shared-memory limit of the kernels that may need it, and
// fails (returns the error) when this build has no kernel image for the current device.
cudaError_t init_kernels(int max_dynamic_smem);

}  // namespace sibyl::backend::cuda
