// MLA, absorbed path: attention in latent space over the pool rows [c_kv | k_pe] (MQA over a
// (R + dr)-wide key, e.g. 576 for V3), split over the sequence with a log-sum-exp merge.
//
// A block takes `heads_per_block` heads (one warp each) of one token and one split of its
// sequence. It stages 32 positions at a time in shared memory, each row found through the
// sequence's page table (paging.cuh), so every row is read from memory once per block and used by
// all its heads. Lane r scores row r (a 16-byte-load dot product over the padded width; the odd
// number of float4 per row keeps lanes on distinct banks), the warp does the online softmax, and
// each lane accumulates its float4 columns of Σ p·c_kv. Positions without a page are masked and
// reported (kernels.h FaultBits).
#include <cmath>

#include "backends/cuda/device.cuh"
#include "backends/cuda/paging.cuh"

namespace sibyl::backend::cuda {
namespace {

constexpr int kTile = 32;
constexpr int kMaxR4 = 8;  // latent rank ≤ 32 lanes × 8 float4 = 1024

__host__ __device__ inline int64_t padded_width(int64_t w) {
  int64_t p = (w + 3) / 4 * 4;
  if ((p / 4) % 2 == 0) p += 4;
  return p;
}

__global__ void __launch_bounds__(256) mla_decode_kernel(const MlaDecodeParams p) {
  extern __shared__ float4 smem4[];
  __shared__ int64_t tile_row[kTile];  // pool row of each staged position, -1: no page
  float* smem = reinterpret_cast<float*>(smem4);
  const int HB = p.heads_per_block;
  const int64_t W = p.kv.width, Wp = padded_width(W);
  const int Wp4 = int(Wp / 4);
  float* qs = smem;              // [HB][Wp]
  float* tile = smem + HB * Wp;  // [kTile][Wp]
  const int64_t s = blockIdx.x, hg = blockIdx.y, i = blockIdx.z;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t h = hg * HB + warp;
  const bool head_ok = warp < HB && h < p.n_heads;
  const bool whole = p.n_splits == 1;
  int64_t seq = 0, pos = 0;
  const bool ok = dev::row_ok(p.rows, p.kv, i, seq, pos);
  const int64_t len = ok ? pos + 1 : 0;
  // Tile-aligned shares of [first, len): the grid is sized for the pool's capacity, so splits
  // past this row's length exit at once (block-uniform, before any barrier).
  const int64_t first = p.first_position < len ? p.first_position : len, span = len - first;
  const int64_t share = ((span + p.n_splits - 1) / p.n_splits + kTile - 1) / kTile * kTile;
  const int64_t t_begin = first + (s * share < span ? s * share : span);
  const int64_t t_end = t_begin + share < len ? t_begin + share : len;
  if (t_begin >= t_end) {
    if (!ok && s == 0 && threadIdx.x == 0) dev::report(p.fault, kFaultRowInput);
    if (!head_ok) return;
    if (whole) {  // only a rejected row gets here: NaN marks its output
      float* o = p.out + (i * p.n_heads + h) * p.R;
      for (int64_t c = lane; c < p.R; c += 32) o[c] = __int_as_float(0x7fc00000);
    } else if (lane == 0) {  // an empty split: the merge skips it
      float* ml = p.ml + ((i * p.n_splits + s) * p.n_heads + h) * 2;
      ml[0] = -INFINITY;
      ml[1] = 0.0f;
    }
    return;
  }

  // The block's queries: [q_lat | rotated q_pe | zero padding].
  const int64_t qk = p.dn + p.dr;
  for (int64_t idx = threadIdx.x; idx < HB * Wp; idx += blockDim.x) {
    const int64_t hl = idx / Wp, c = idx - hl * Wp, hh = hg * HB + hl;
    float v = 0.0f;
    if (hh < p.n_heads) {
      if (c < p.R)
        v = p.q_lat[(i * p.n_heads + hh) * p.R + c];
      else if (c < W)
        v = dev::rope_element(p.rope, p.q + i * p.q_ld + hh * qk + p.dn, int(c - p.R), int(p.dr), int32_t(pos));
    }
    qs[idx] = v;
  }
  // The tile's padding columns are never loaded: zero them once (0 · garbage could be NaN).
  const int64_t pad = Wp - W;
  for (int64_t idx = threadIdx.x; idx < kTile * pad; idx += blockDim.x) tile[(idx / pad) * Wp + W + idx % pad] = 0.0f;

  float m = -INFINITY, l = 0.0f;
  float4 acc[kMaxR4];
#pragma unroll
  for (int u = 0; u < kMaxR4; ++u) acc[u] = make_float4(0.f, 0.f, 0.f, 0.f);
  const int n4 = int((p.R + 3) / 4);
  const float4* q4 = reinterpret_cast<const float4*>(qs + (head_ok ? warp : 0) * Wp);

  for (int64_t t0 = t_begin; t0 < t_end; t0 += kTile) {
    const int rows = int(t_end - t0 < kTile ? t_end - t0 : kTile);
    __syncthreads();  // the previous tile is consumed (and the queries are written)
    if (threadIdx.x < rows) tile_row[threadIdx.x] = dev::row_of(p.kv, seq, t0 + threadIdx.x, p.fault);
    __syncthreads();
    // Rows without a page load as zeros and are masked below.
    if (W % 4 == 0) {
      const float4* src4 = reinterpret_cast<const float4*>(p.kv.rows);
      const int64_t w4 = W / 4;
      for (int64_t idx = threadIdx.x; idx < rows * w4; idx += blockDim.x) {
        const int64_t r = idx / w4, c = idx - r * w4, at = tile_row[r];
        reinterpret_cast<float4*>(tile + r * Wp)[c] = at < 0 ? make_float4(0.f, 0.f, 0.f, 0.f) : src4[at * w4 + c];
      }
    } else {
      for (int64_t idx = threadIdx.x; idx < rows * W; idx += blockDim.x) {
        const int64_t r = idx / W, c = idx - r * W, at = tile_row[r];
        tile[r * Wp + c] = at < 0 ? 0.0f : p.kv.rows[at * W + c];
      }
    }
    __syncthreads();
    if (!head_ok) continue;
    const bool key_ok = lane < rows && tile_row[lane] >= 0;
    if (lane < rows && !key_ok) dev::report(p.fault, kFaultMissingPage);
    float score = -INFINITY;
    if (key_ok) {
      const float4* k4 = reinterpret_cast<const float4*>(tile + lane * Wp);
      float a0 = 0.f, a1 = 0.f, a2 = 0.f, a3 = 0.f;
      for (int c = 0; c < Wp4; ++c) {
        const float4 a = q4[c], b = k4[c];
        a0 += a.x * b.x;
        a1 += a.y * b.y;
        a2 += a.z * b.z;
        a3 += a.w * b.w;
      }
      score = ((a0 + a1) + (a2 + a3)) * p.scale;
    }
    const float tile_m = dev::warp_max(score);
    if (tile_m == -INFINITY) continue;  // warp-uniform: no usable key in this tile
    const float new_m = fmaxf(m, tile_m);
    const float corr = expf(m - new_m);  // 0 on the first tile (m = −inf)
    const float pr = key_ok ? expf(score - new_m) : 0.0f;
    l = l * corr + dev::warp_sum(pr);
#pragma unroll
    for (int u = 0; u < kMaxR4; ++u) acc[u] = make_float4(acc[u].x * corr, acc[u].y * corr, acc[u].z * corr, acc[u].w * corr);
    for (int r = 0; r < rows; ++r) {
      const float pb = __shfl_sync(dev::kFull, pr, r);
      const float4* v4 = reinterpret_cast<const float4*>(tile + r * Wp);
#pragma unroll
      for (int u = 0; u < kMaxR4; ++u) {
        const int j = lane + 32 * u;
        if (j < n4) {
          const float4 v = v4[j];
          acc[u].x += pb * v.x;
          acc[u].y += pb * v.y;
          acc[u].z += pb * v.z;
          acc[u].w += pb * v.w;
        }
      }
    }
    m = new_m;
  }
  if (!head_ok) return;

  const float inv = whole ? 1.0f / l : 1.0f;
  float* o = whole ? p.out + (i * p.n_heads + h) * p.R : p.out + ((i * p.n_splits + s) * p.n_heads + h) * p.R;
#pragma unroll
  for (int u = 0; u < kMaxR4; ++u) {
    const int j = lane + 32 * u;
    if (j >= n4) continue;
    const float v[4] = {acc[u].x, acc[u].y, acc[u].z, acc[u].w};
#pragma unroll
    for (int k = 0; k < 4; ++k)
      if (4 * j + k < p.R) o[4 * j + k] = whole ? v[k] * inv : v[k];
  }
  if (!whole && lane == 0) {
    float* ml = p.ml + ((i * p.n_splits + s) * p.n_heads + h) * 2;
    ml[0] = m;
    ml[1] = l;
  }
}

// One block per (head, token): combine the splits' partial sums by their maxima.
__global__ void mla_merge_kernel(const MlaMergeParams p) {
  const int64_t h = blockIdx.x, i = blockIdx.y, S = p.n_splits, H = p.n_heads;
  float M = -INFINITY;
  for (int64_t s = 0; s < S; ++s) M = fmaxf(M, p.ml[((i * S + s) * H + h) * 2]);
  float L = 0.0f;
  for (int64_t s = 0; s < S; ++s) {
    const float ms = p.ml[((i * S + s) * H + h) * 2];
    if (ms != -INFINITY) L += expf(ms - M) * p.ml[((i * S + s) * H + h) * 2 + 1];
  }
  for (int64_t c = threadIdx.x; c < p.R; c += blockDim.x) {
    float o = 0.0f;
    for (int64_t s = 0; s < S; ++s) {
      const float ms = p.ml[((i * S + s) * H + h) * 2];
      if (ms != -INFINITY) o += expf(ms - M) * p.part[((i * S + s) * H + h) * p.R + c];
    }
    p.out[(i * H + h) * p.R + c] = o / L;
  }
}

}  // namespace

size_t mla_decode_smem_bytes(int64_t heads_per_block, int64_t W) {
  return size_t(heads_per_block + kTile) * size_t(padded_width(W)) * sizeof(float);
}

void launch_mla_decode(const MlaDecodeParams& p, const Exec& ex) {
  if (p.R > 4 * 32 * kMaxR4) throw_cuda(cudaErrorInvalidValue, "mla_decode: kv_lora_rank above 1024");
  if (p.n_splits < 1 || p.heads_per_block < 1 || p.heads_per_block > 8)
    throw_cuda(cudaErrorInvalidValue, "mla_decode: bad split or head grouping");
  const int HB = p.heads_per_block;
  const size_t smem = mla_decode_smem_bytes(HB, p.kv.width);
  for (int64_t i0 = 0; i0 < p.n_tokens; i0 += 65535) {  // gridDim.z limit
    MlaDecodeParams c = p;
    c.n_tokens = p.n_tokens - i0 < 65535 ? p.n_tokens - i0 : 65535;
    c.q = p.q + i0 * p.q_ld;
    c.q_lat = p.q_lat + i0 * p.n_heads * p.R;
    c.rows.positions = p.rows.positions + i0;
    c.rows.row_seq = p.rows.row_seq + i0;
    c.out = p.out + i0 * p.n_splits * p.n_heads * p.R;
    if (p.ml) c.ml = p.ml + i0 * p.n_splits * p.n_heads * 2;
    const dim3 grid(unsigned(p.n_splits), unsigned((p.n_heads + HB - 1) / HB), unsigned(c.n_tokens));
    mla_decode_kernel<<<grid, 32 * HB, smem, ex.stream>>>(c);
    check_launch("mla_decode");
  }
}

void launch_mla_merge(const MlaMergeParams& p, const Exec& ex) {
  for (int64_t i0 = 0; i0 < p.n_tokens; i0 += 65535) {
    MlaMergeParams c = p;
    c.n_tokens = p.n_tokens - i0 < 65535 ? p.n_tokens - i0 : 65535;
    c.part = p.part + i0 * p.n_splits * p.n_heads * p.R;
    c.ml = p.ml + i0 * p.n_splits * p.n_heads * 2;
    c.out = p.out + i0 * p.n_heads * p.R;
    mla_merge_kernel<<<dim3(unsigned(p.n_heads), unsigned(c.n_tokens)), 128, 0, ex.stream>>>(c);
    check_launch("mla_merge");
  }
}

cudaError_t init_mla_prefill(int max_dynamic_smem);

cudaError_t init_kernels(int max_dynamic_smem) {
  cudaFuncAttributes attr;
  cudaError_t err = cudaFuncGetAttributes(&attr, mla_decode_kernel);  // no image for this GPU: fails here
  if (err != cudaSuccess) return err;
  err = cudaFuncSetAttribute(mla_decode_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, max_dynamic_smem);
  if (err != cudaSuccess) return err;
  return init_mla_prefill(max_dynamic_smem);
}

}  // namespace sibyl::backend::cuda
