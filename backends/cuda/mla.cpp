// Multi-head latent attention: storing latent rows, and the two attention paths over them.
//   absorbed: q_lat = q_nope·W_UK per head (GEMV / cuBLAS), latent attention split over the
//             sequence (mla_decode.cu) + merge, then W_UV (GEMV / cuBLAS);
//   expanded: k_nope and v expanded from the cache for every position (cuBLAS for long contexts),
//             then tiled causal attention (mla_prefill.cu).
// Both MlaWeights layouts: kv_b [H·(dn+dv), R], or split k_b [H·R, dn] + v_b [H·dv, R].
#include <algorithm>

#include "cuda_backend.h"

namespace sibyl::backend::cuda {
namespace {

// Largest position of the step + 1, from the host copy of the positions when there is one.
int64_t context_length(Context& ctx, const CudaTensor& positions) {
  std::vector<int32_t> pos = positions.shadow;
  if (static_cast<int64_t>(pos.size()) < positions.rows()) {
    pos.resize(static_cast<size_t>(positions.rows()));
    ctx.read(positions.data(), pos.data(), pos.size() * 4);
  }
  int32_t mx = -1;
  for (int64_t i = 0; i < positions.rows(); ++i) mx = std::max(mx, pos[static_cast<size_t>(i)]);
  return int64_t(mx) + 1;
}

void check_shapes(const CudaTensor& q, const MlaWeights& up, const MlaShape& sh, int64_t width) {
  if (!up.kv_b && (!up.k_b || !up.v_b)) fail(Errc::internal, "mla_attention without up-projection weights");
  if (sh.qk_rope_head_dim % 2 != 0) fail(Errc::unsupported, "CUDA backend: odd qk_rope_head_dim");
  if (sh.kv_lora_rank > 1024) fail(Errc::unsupported, "CUDA backend: kv_lora_rank above 1024");
  if (sh.v_head_dim > 256) fail(Errc::unsupported, "CUDA backend: v_head_dim above 256");
  if (q.cols() < sh.n_heads * (sh.qk_nope_head_dim + sh.qk_rope_head_dim) ||
      width != sh.kv_lora_rank + sh.qk_rope_head_dim)
    fail(Errc::internal, "CUDA backend: mla_attention shapes do not match");
}

void absorbed(Context& ctx, CudaTensor& dst, const CudaTensor& q, const CudaKvCache& cache, int64_t layer,
              const CudaTensor& positions, const MlaWeights& up, const MlaShape& sh, const RopeParams& rope) {
  const int64_t n = q.rows(), H = sh.n_heads, R = sh.kv_lora_rank, dn = sh.qk_nope_head_dim,
                dr = sh.qk_rope_head_dim, dv = sh.v_head_dim, W = cache.width();
  // q_lat [n, H·R] = q_nope · W_UK per head.
  Scratch q_lat(ctx, size_t(n * H * R) * 4, "q_lat");
  if (up.kv_b) {
    LinearT a{};
    a.w = &dev_tensor(*up.kv_b);
    a.depth = dn;
    a.groups = H;
    a.w_group_stride = dn + dv;
    a.x = q.f32();
    a.ldx = q.cols();
    a.x_group_stride = dn + dr;
    a.y = q_lat.f32();
    a.ldy = H * R;
    a.y_group_stride = R;
    a.n = n;
    linear_t(ctx, a);
  } else {
    Linear a{};
    a.w = &dev_tensor(*up.k_b);
    a.rows = R;
    a.groups = H;
    a.w_group_stride = R;
    a.x = q.f32();
    a.ldx = q.cols();
    a.x_group_stride = dn + dr;
    a.y = q_lat.f32();
    a.ldy = H * R;
    a.y_group_stride = R;
    a.n = n;
    linear(ctx, a);
  }

  // Split the sequence until the GPU has ~2 blocks per SM, keeping ≥ 256 rows per split; the
  // count depends on the shape and cache capacity only, so a decode step replays as a graph.
  const int64_t HB = std::min<int64_t>(8, H);
  const int64_t blocks = n * ((H + HB - 1) / HB);
  int64_t splits = 1;
  if (blocks < 2 * ctx.sm_count())
    splits = std::clamp<int64_t>(std::min((2 * ctx.sm_count() + blocks - 1) / blocks, (cache.capacity() + 255) / 256),
                                 1, 64);
  if (mla_decode_smem_bytes(HB, W) > size_t(ctx.max_smem()))
    fail(Errc::unsupported, "CUDA backend: latent rows too wide for shared memory");

  MlaDecodeParams p{};
  p.q = q.f32();
  p.q_lat = q_lat.f32();
  p.cache = cache.layer(layer);
  p.positions = positions.i32();
  p.rope = rope_args(rope);
  p.n_tokens = n;
  p.n_heads = H;
  p.R = R;
  p.dn = dn;
  p.dr = dr;
  p.W = W;
  p.q_ld = q.cols();
  p.n_splits = splits;
  p.scale = sh.softmax_scale;
  p.heads_per_block = int32_t(HB);
  Scratch o_lat(ctx, size_t(n * H * R) * 4, "o_lat");
  if (splits == 1) {
    p.out = o_lat.f32();
    ctx.enqueue(launch_mla_decode, p, "mla_decode");
  } else {
    Scratch part(ctx, size_t(n * splits * H * R) * 4, "attention partials");
    Scratch ml(ctx, size_t(n * splits * H * 2) * 4, "attention maxima");
    p.out = part.f32();
    p.ml = ml.f32();
    ctx.enqueue(launch_mla_decode, p, "mla_decode");
    ctx.enqueue(launch_mla_merge, MlaMergeParams{part.f32(), ml.f32(), o_lat.f32(), n, H, R, splits}, "mla_merge");
  }

  // dst [n, H·dv] = o_lat · W_UVᵀ per head.
  Linear a{};
  a.rows = dv;
  a.groups = H;
  a.x = o_lat.f32();
  a.ldx = H * R;
  a.x_group_stride = R;
  a.y = dst.f32();
  a.ldy = dst.cols();
  a.y_group_stride = dv;
  a.n = n;
  if (up.kv_b) {
    a.w = &dev_tensor(*up.kv_b);
    a.w_group_stride = dn + dv;
    a.w_offset = dn;
  } else {
    a.w = &dev_tensor(*up.v_b);
    a.w_group_stride = dv;
  }
  linear(ctx, a);
}

void expanded(Context& ctx, CudaTensor& dst, const CudaTensor& q, const CudaKvCache& cache, int64_t layer,
              const CudaTensor& positions, const MlaWeights& up, const MlaShape& sh, const RopeParams& rope) {
  const int64_t n = q.rows(), H = sh.n_heads, R = sh.kv_lora_rank, dn = sh.qk_nope_head_dim,
                dr = sh.qk_rope_head_dim, dv = sh.v_head_dim, W = cache.width();
  const int64_t L = context_length(ctx, positions);
  if (L > cache.capacity()) fail(Errc::internal, "CUDA backend: attention beyond the KV cache");
  if (mla_prefill_smem_bytes(dn + dr, dv) > size_t(ctx.max_smem()))
    fail(Errc::unsupported, "CUDA backend: attention heads too wide for shared memory");
  MlaPrefillParams p{};
  std::unique_ptr<Scratch> kv, k, v;
  if (up.kv_b) {  // [L, H·(dn+dv)]: per head k_nope then v
    kv = std::make_unique<Scratch>(ctx, size_t(L * H * (dn + dv)) * 4, "expanded k/v");
    Linear a{};
    a.w = &dev_tensor(*up.kv_b);
    a.rows = H * (dn + dv);
    a.x = cache.layer(layer);
    a.ldx = W;
    a.y = kv->f32();
    a.ldy = H * (dn + dv);
    a.n = L;
    linear(ctx, a);
    p.k_nope = kv->f32();
    p.v = kv->f32() + dn;
    p.k_ld = p.v_ld = H * (dn + dv);
    p.k_hs = p.v_hs = dn + dv;
  } else {
    v = std::make_unique<Scratch>(ctx, size_t(L * H * dv) * 4, "expanded v");
    Linear a{};
    a.w = &dev_tensor(*up.v_b);
    a.rows = H * dv;
    a.x = cache.layer(layer);
    a.ldx = W;
    a.y = v->f32();
    a.ldy = H * dv;
    a.n = L;
    linear(ctx, a);
    k = std::make_unique<Scratch>(ctx, size_t(L * H * dn) * 4, "expanded k");
    LinearT b{};
    b.w = &dev_tensor(*up.k_b);
    b.depth = R;
    b.groups = H;
    b.w_group_stride = R;
    b.x = cache.layer(layer);
    b.ldx = W;
    b.y = k->f32();
    b.ldy = H * dn;
    b.y_group_stride = dn;
    b.n = L;
    linear_t(ctx, b);
    p.k_nope = k->f32();
    p.v = v->f32();
    p.k_ld = H * dn;
    p.k_hs = dn;
    p.v_ld = H * dv;
    p.v_hs = dv;
  }
  p.q = q.f32();
  p.cache = cache.layer(layer);
  p.positions = positions.i32();
  p.out = dst.f32();
  p.rope = rope_args(rope);
  p.n_tokens = n;
  p.n_heads = H;
  p.dn = dn;
  p.dr = dr;
  p.dv = dv;
  p.R = R;
  p.W = W;
  p.q_ld = q.cols();
  p.out_ld = dst.cols();
  p.scale = sh.softmax_scale;
  ctx.enqueue(launch_mla_prefill, p, "mla_prefill");
}

}  // namespace

void mla_store(Context& ctx, CudaKvCache& cache, int64_t layer, const CudaTensor& kv_a, const CudaTensor& kv_norm,
               float eps, const CudaTensor& positions, const RopeParams& rope) {
  const int64_t R = kv_norm.cols(), dr = kv_a.cols() - R;
  if (R + dr != cache.width() || dr % 2 != 0) fail(Errc::internal, "CUDA backend: mla_store shapes do not match");
  MlaStoreParams p{};
  p.norm = kv_norm.view();
  p.kv_a = kv_a.f32();
  p.cache = cache.layer(layer);
  p.positions = positions.i32();
  p.rope = rope_args(rope);
  p.n_tokens = kv_a.rows();
  p.ld_kv_a = kv_a.cols();
  p.width = cache.width();
  p.R = R;
  p.dr = dr;
  p.eps = eps;
  ctx.enqueue(launch_mla_store, p, "mla_store");
}

void mla_attention(Context& ctx, CudaTensor& dst, const CudaTensor& q, const CudaKvCache& cache, int64_t layer,
                   const CudaTensor& positions, const MlaWeights& up, const MlaShape& shape, const RopeParams& rope,
                   MlaPath path) {
  if (q.rows() == 0) return;
  check_shapes(q, up, shape, cache.width());
  if (path == MlaPath::absorbed)
    absorbed(ctx, dst, q, cache, layer, positions, up, shape, rope);
  else
    expanded(ctx, dst, q, cache, layer, positions, up, shape, rope);
}

}  // namespace sibyl::backend::cuda
