// Multi-head latent attention over the paged pool: storing latent rows, and the two attention
// paths, chosen per sequence of the step batch (SeqRows::path).
//   absorbed: q_lat = q_nope·W_UK per head (GEMV / cuBLAS), latent attention split over the
//             sequence (mla_decode.cu, page table read on the device) + merge, then W_UV;
//             consecutive absorbed sequences share one launch of each;
//   expanded: per sequence, its latent rows [0, expanded_context) gathered through its page table
//             (kv_gather.cu), k_nope and v expanded from them (cuBLAS for long contexts), then tiled
//             causal attention (mla_prefill.cu).
// Both MlaWeights layouts: kv_b [H·(dn+dv), R], or split k_b [H·R, dn] + v_b [H·dv, R].
#include <algorithm>

#include "backends/cuda/cuda_backend.h"

namespace sibyl::backend::cuda {
namespace {

void check_shapes(const CudaTensor& dst, const CudaTensor& q, const MlaWeights& up, const MlaShape& sh, int64_t width) {
  if (!up.kv_b && (!up.k_b || !up.v_b)) fail(Errc::internal, "mla_attention without up-projection weights");
  if (sh.qk_rope_head_dim % 2 != 0) fail(Errc::unsupported, "CUDA backend: odd qk_rope_head_dim");
  if (sh.kv_lora_rank > 1024) fail(Errc::unsupported, "CUDA backend: kv_lora_rank above 1024");
  if (sh.v_head_dim > 256) fail(Errc::unsupported, "CUDA backend: v_head_dim above 256");
  if (q.cols() < sh.n_heads * (sh.qk_nope_head_dim + sh.qk_rope_head_dim) || dst.rows() != q.rows() ||
      dst.cols() < sh.n_heads * sh.v_head_dim || width != sh.kv_lora_rank + sh.qk_rope_head_dim)
    fail(Errc::internal, "CUDA backend: mla_attention shapes do not match");
}

// Rows [r0, r0 + n) of the step, sequences [k0, k1) all on the absorbed path.
struct Run {
  int64_t r0, n, k0, k1;
};

void absorbed(Context& ctx, CudaTensor& dst, const CudaTensor& q, const CudaKvPool& pool, int64_t layer,
              const CheckedBatch& cb, const Run& run, const MlaWeights& up, const MlaShape& sh, const RopeParams& rope) {
  const int64_t n = run.n, H = sh.n_heads, R = sh.kv_lora_rank, dn = sh.qk_nope_head_dim, dr = sh.qk_rope_head_dim,
                dv = sh.v_head_dim, W = pool.width();
  const float* qr = q.f32() + run.r0 * q.cols();
  // q_lat [n, H·R] = q_nope · W_UK per head.
  Scratch q_lat(ctx, size_t(n * H * R) * 4, "q_lat");
  if (up.kv_b) {
    LinearT a{};
    a.w = &dev_tensor(*up.kv_b);
    a.depth = dn;
    a.groups = H;
    a.w_group_stride = dn + dv;
    a.x = qr;
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
    a.x = qr;
    a.ldx = q.cols();
    a.x_group_stride = dn + dr;
    a.y = q_lat.f32();
    a.ldy = H * R;
    a.y_group_stride = R;
    a.n = n;
    linear(ctx, a);
  }

  // Split the sequence until the GPU has ~2 blocks per SM, keeping ≥ 256 positions per split. The
  // count depends on the shape and the pool's capacity only (never on the positions, which live on
  // the device), so a decode step replays as a graph; splits past a row's length exit early.
  const int64_t HB = std::min<int64_t>(8, H);
  const int64_t blocks = n * ((H + HB - 1) / HB);
  const int64_t capacity = std::min(cb.max_pages, pool.n_pages()) * pool.page_tokens();
  int64_t splits = 1;
  if (blocks < 2 * ctx.sm_count())
    splits = std::clamp<int64_t>(std::min((2 * ctx.sm_count() + blocks - 1) / blocks, (capacity + 255) / 256), 1, 64);
  if (mla_decode_smem_bytes(HB, W) > size_t(ctx.max_smem()))
    fail(Errc::unsupported, "CUDA backend: latent rows too wide for shared memory");

  MlaDecodeParams p{};
  p.q = qr;
  p.q_lat = q_lat.f32();
  p.kv = cb.layer_view(pool, layer, "mla_attention");
  p.rows = cb.rows(run.r0, run.k0, run.k1);
  p.fault = ctx.fault_word();
  p.rope = rope_args(rope);
  p.n_tokens = n;
  p.n_heads = H;
  p.R = R;
  p.dn = dn;
  p.dr = dr;
  p.q_ld = q.cols();
  p.n_splits = splits;
  p.scale = sh.softmax_scale;
  p.first_position = cb.batch->first_position;
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
  a.y = dst.f32() + run.r0 * dst.cols();
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

// Sequence k on the expanded path: its latent rows [0, L) gathered, expanded, attended.
void expanded(Context& ctx, CudaTensor& dst, const CudaTensor& q, const CudaKvPool& pool, int64_t layer,
              const CheckedBatch& cb, int64_t k, const MlaWeights& up, const MlaShape& sh, const RopeParams& rope) {
  const SeqRows& seq = cb.batch->seqs[static_cast<size_t>(k)];
  const int64_t H = sh.n_heads, R = sh.kv_lora_rank, dn = sh.qk_nope_head_dim, dr = sh.qk_rope_head_dim,
                dv = sh.v_head_dim, W = pool.width(), L = seq.expanded_context;
  if (mla_prefill_smem_bytes(dn + dr, dv) > size_t(ctx.max_smem()))
    fail(Errc::unsupported, "CUDA backend: attention heads too wide for shared memory");
  const PagedKv kv = cb.layer_view(pool, layer, "mla_attention");
  Scratch latent(ctx, size_t(L * W) * 4, "gathered latent rows");
  ctx.enqueue(launch_kv_gather, KvGatherParams{kv, k, L, latent.f32(), ctx.fault_word()}, "kv_gather");

  MlaPrefillParams p{};
  std::unique_ptr<Scratch> kvx, kx, vx;
  if (up.kv_b) {  // [L, H·(dn+dv)]: per head k_nope then v
    kvx = std::make_unique<Scratch>(ctx, size_t(L * H * (dn + dv)) * 4, "expanded k/v");
    Linear a{};
    a.w = &dev_tensor(*up.kv_b);
    a.rows = H * (dn + dv);
    a.x = latent.f32();
    a.ldx = W;
    a.y = kvx->f32();
    a.ldy = H * (dn + dv);
    a.n = L;
    linear(ctx, a);
    p.k_nope = kvx->f32();
    p.v = kvx->f32() + dn;
    p.k_ld = p.v_ld = H * (dn + dv);
    p.k_hs = p.v_hs = dn + dv;
  } else {
    vx = std::make_unique<Scratch>(ctx, size_t(L * H * dv) * 4, "expanded v");
    Linear a{};
    a.w = &dev_tensor(*up.v_b);
    a.rows = H * dv;
    a.x = latent.f32();
    a.ldx = W;
    a.y = vx->f32();
    a.ldy = H * dv;
    a.n = L;
    linear(ctx, a);
    kx = std::make_unique<Scratch>(ctx, size_t(L * H * dn) * 4, "expanded k");
    LinearT b{};
    b.w = &dev_tensor(*up.k_b);
    b.depth = R;
    b.groups = H;
    b.w_group_stride = R;
    b.x = latent.f32();
    b.ldx = W;
    b.y = kx->f32();
    b.ldy = H * dn;
    b.y_group_stride = dn;
    b.n = L;
    linear_t(ctx, b);
    p.k_nope = kx->f32();
    p.v = vx->f32();
    p.k_ld = H * dn;
    p.k_hs = dn;
    p.v_ld = H * dv;
    p.v_hs = dv;
  }
  p.q = q.f32() + seq.first_row * q.cols();
  p.latent = latent.f32();
  p.positions = cb.positions->i32() + seq.first_row;
  p.row_seq = cb.row_seq->i32() + seq.first_row;
  p.page_row = kv.page_table + k * kv.max_pages;
  p.out = dst.f32() + seq.first_row * dst.cols();
  p.fault = ctx.fault_word();
  p.rope = rope_args(rope);
  p.n_tokens = seq.n_rows;
  p.n_keys = L;
  p.seq = k;
  p.n_pages = kv.n_pages;
  p.page_tokens = kv.page_tokens;
  p.n_heads = H;
  p.dn = dn;
  p.dr = dr;
  p.dv = dv;
  p.R = R;
  p.W = W;
  p.q_ld = q.cols();
  p.out_ld = dst.cols();
  p.scale = sh.softmax_scale;
  p.first_position = cb.batch->first_position;
  ctx.enqueue(launch_mla_prefill, p, "mla_prefill");
}

}  // namespace

void mla_store(Context& ctx, CudaKvPool& pool, int64_t layer, const CudaTensor& kv_a, const CudaTensor& kv_norm,
               float eps, const StepBatch& batch, const RopeParams& rope) {
  const CheckedBatch cb = check_batch(batch, pool, kv_a.rows(), "mla_store");
  const int64_t R = kv_norm.cols(), dr = kv_a.cols() - R;
  if (R + dr != pool.width() || dr % 2 != 0)
    fail(Errc::internal, "CUDA backend: mla_store shapes do not match");
  MlaStoreParams p{};
  p.norm = kv_norm.view();
  p.kv_a = kv_a.f32();
  p.kv = cb.layer_view(pool, layer, "mla_store");
  p.rows = cb.rows(0, 0, cb.n_seqs);
  p.rope = rope_args(rope);
  p.n_tokens = cb.n;
  p.ld_kv_a = kv_a.cols();
  p.R = R;
  p.dr = dr;
  p.fault = ctx.fault_word();
  p.eps = eps;
  if (cb.n > 0) ctx.enqueue(launch_mla_store, p, "mla_store");
}

void mla_attention(Context& ctx, CudaTensor& dst, const CudaTensor& q, const CudaKvPool& pool, int64_t layer,
                   const StepBatch& batch, const MlaWeights& up, const MlaShape& shape, const RopeParams& rope) {
  const CheckedBatch cb = check_batch(batch, pool, q.rows(), "mla_attention");
  check_shapes(dst, q, up, shape, pool.width());
  pool.layer(layer, "mla_attention");  // a bad layer fails before anything is recorded
  // Consecutive absorbed sequences form one run (a decode step is a single run: one launch per op).
  Run run{0, 0, 0, 0};
  auto flush_run = [&] {
    if (run.n > 0) absorbed(ctx, dst, q, pool, layer, cb, run, up, shape, rope);
    run = Run{0, 0, 0, 0};
  };
  for (int64_t k = 0; k < cb.n_seqs; ++k) {
    const SeqRows& s = batch.seqs[static_cast<size_t>(k)];
    if (s.n_rows == 0) continue;
    if (s.path == MlaPath::expanded) {
      flush_run();
      expanded(ctx, dst, q, pool, layer, cb, k, up, shape, rope);
      continue;
    }
    if (run.n == 0) run = Run{s.first_row, 0, k, k};
    run.n += s.n_rows;
    run.k1 = k + 1;
  }
  flush_run();
}

}  // namespace sibyl::backend::cuda
