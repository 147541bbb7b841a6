// MLA, expanded path: causal attention of one sequence's rows once k_nope and v are expanded for
// each of its positions (from its latent rows gathered through the page table: kv_gather.cu). A
// block takes 8 consecutive queries (one warp each) of one head and walks the keys up to the last
// query's position in tiles of 32 staged in shared memory (shared by the 8 queries); lane r scores
// key r, the warp does the online softmax, lanes own columns of the value sum. A plain tiled
// version: the matmul units are left for the bf16 path.
#include <cmath>

#include "backends/cuda/device.cuh"
#include "backends/cuda/paging.cuh"

namespace sibyl::backend::cuda {
namespace {

constexpr int kQ = 8;
constexpr int kTile = 32;
constexpr int kMaxV = 8;  // v_head_dim ≤ 256

__host__ __device__ inline int64_t padded_width(int64_t w) {
  int64_t p = (w + 3) / 4 * 4;
  if ((p / 4) % 2 == 0) p += 4;
  return p;
}

__global__ void __launch_bounds__(kQ * 32) mla_prefill_kernel(const MlaPrefillParams p) {
  extern __shared__ float4 smem4[];
  __shared__ int32_t max_pos;
  __shared__ int32_t key_ok[kTile];  // the staged position has a page: it may be attended
  float* smem = reinterpret_cast<float*>(smem4);
  const int64_t QK = p.dn + p.dr, QKp = padded_width(QK), dv = p.dv;
  const int QKp4 = int(QKp / 4);
  float* qs = smem;              // [kQ][QKp]
  float* kt = qs + kQ * QKp;     // [kTile][QKp]
  float* vt = kt + kTile * QKp;  // [kTile][dv]
  const int64_t h = blockIdx.y, i0 = int64_t(blockIdx.x) * kQ;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t i = i0 + warp;
  // A query is usable when it belongs to this sequence and its position has gathered keys.
  auto query_pos = [&](int64_t ii) -> int64_t {
    if (ii >= p.n_tokens) return -1;
    const int64_t pos = p.positions[ii];
    return p.row_seq[ii] == p.seq && pos >= 0 && pos < p.n_keys ? pos : -1;
  };
  const int64_t my_pos = query_pos(i);
  const bool q_ok = my_pos >= 0;
  const int64_t len = my_pos + 1;  // 0 for a rejected query
  if (i < p.n_tokens && !q_ok && h == 0 && lane == 0) dev::report(p.fault, kFaultRowInput);

  if (threadIdx.x == 0) {
    int64_t mp = -1;
    for (int q = 0; q < kQ; ++q) mp = query_pos(i0 + q) > mp ? query_pos(i0 + q) : mp;
    max_pos = int32_t(mp);
  }
  for (int64_t idx = threadIdx.x; idx < kQ * QKp; idx += blockDim.x) {
    const int64_t ql = idx / QKp, c = idx - ql * QKp, ii = i0 + ql;
    float v = 0.0f;
    if (ii < p.n_tokens && c < QK) {
      const float* qrow = p.q + ii * p.q_ld + h * QK;
      v = c < p.dn ? qrow[c] : dev::rope_element(p.rope, qrow + p.dn, int(c - p.dn), int(p.dr), p.positions[ii]);
    }
    qs[idx] = v;
  }
  const int64_t pad = QKp - QK;
  for (int64_t idx = threadIdx.x; idx < kTile * pad; idx += blockDim.x) kt[(idx / pad) * QKp + QK + idx % pad] = 0.0f;
  __syncthreads();
  const int64_t len_max = int64_t(max_pos) + 1;

  float m = -INFINITY, l = 0.0f, acc[kMaxV];
#pragma unroll
  for (int u = 0; u < kMaxV; ++u) acc[u] = 0.0f;
  const float4* q4 = reinterpret_cast<const float4*>(qs + warp * QKp);

  for (int64_t t0 = 0; t0 < len_max; t0 += kTile) {
    const int rows = int(len_max - t0 < kTile ? len_max - t0 : kTile);
    __syncthreads();  // the previous tile is consumed
    if (threadIdx.x < rows) {
      const int64_t t = t0 + threadIdx.x;
      const int32_t page = p.page_row[t / p.page_tokens];
      key_ok[threadIdx.x] = page >= 0 && page < p.n_pages;
    }
    for (int64_t idx = threadIdx.x; idx < rows * QK; idx += blockDim.x) {
      const int64_t r = idx / QK, c = idx - r * QK, t = t0 + r;
      kt[r * QKp + c] = c < p.dn ? p.k_nope[t * p.k_ld + h * p.k_hs + c] : p.latent[t * p.W + p.R + (c - p.dn)];
    }
    for (int64_t idx = threadIdx.x; idx < rows * dv; idx += blockDim.x) {
      const int64_t r = idx / dv, c = idx - r * dv;
      vt[idx] = p.v[(t0 + r) * p.v_ld + h * p.v_hs + c];
    }
    __syncthreads();
    const int64_t valid64 = len - t0 < rows ? len - t0 : rows;
    if (!q_ok || valid64 <= 0) continue;
    const int valid = int(valid64);
    const bool wanted = lane < valid && t0 + lane >= p.first_position;
    const bool attend = wanted && key_ok[lane];
    if (wanted && !attend) dev::report(p.fault, kFaultMissingPage);
    float score = -INFINITY;
    if (attend) {
      const float4* k4 = reinterpret_cast<const float4*>(kt + lane * QKp);
      float a0 = 0.f, a1 = 0.f, a2 = 0.f, a3 = 0.f;
      for (int c = 0; c < QKp4; ++c) {
        const float4 a = q4[c], b = k4[c];
        a0 += a.x * b.x;
        a1 += a.y * b.y;
        a2 += a.z * b.z;
        a3 += a.w * b.w;
      }
      score = ((a0 + a1) + (a2 + a3)) * p.scale;
    }
    const float tile_m = dev::warp_max(score);
    if (tile_m == -INFINITY) continue;  // warp-uniform: nothing to attend in this tile
    const float new_m = fmaxf(m, tile_m);
    const float corr = expf(m - new_m);
    const float pr = attend ? expf(score - new_m) : 0.0f;
    l = l * corr + dev::warp_sum(pr);
#pragma unroll
    for (int u = 0; u < kMaxV; ++u) acc[u] *= corr;
    for (int r = 0; r < valid; ++r) {
      const float pb = __shfl_sync(dev::kFull, pr, r);
#pragma unroll
      for (int u = 0; u < kMaxV; ++u) {
        const int64_t d = lane + 32 * u;
        if (d < dv) acc[u] += pb * vt[r * dv + d];
      }
    }
    m = new_m;
  }
  if (i >= p.n_tokens) return;
  float* out = p.out + i * p.out_ld + h * dv;
#pragma unroll
  for (int u = 0; u < kMaxV; ++u) {
    const int64_t d = lane + 32 * u;
    if (d < dv) out[d] = acc[u] / l;  // l == 0 only for a rejected query: NaN marks it
  }
}

}  // namespace

size_t mla_prefill_smem_bytes(int64_t qk, int64_t dv) {
  return size_t((kQ + kTile) * padded_width(qk) + kTile * dv) * sizeof(float);
}

void launch_mla_prefill(const MlaPrefillParams& p, const Exec& ex) {
  if (p.dv > 32 * kMaxV) throw_cuda(cudaErrorInvalidValue, "mla_prefill: v_head_dim above 256");
  if (p.n_tokens <= 0) return;
  if (p.n_keys > INT32_MAX || p.page_tokens <= 0) throw_cuda(cudaErrorInvalidValue, "mla_prefill: bad key range");
  const size_t smem = mla_prefill_smem_bytes(p.dn + p.dr, p.dv);
  const dim3 grid(unsigned((p.n_tokens + kQ - 1) / kQ), unsigned(p.n_heads));
  mla_prefill_kernel<<<grid, kQ * 32, smem, ex.stream>>>(p);
  check_launch("mla_prefill");
}

cudaError_t init_mla_prefill(int max_dynamic_smem) {
  return cudaFuncSetAttribute(mla_prefill_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, max_dynamic_smem);
}

}  // namespace sibyl::backend::cuda
