// Multi-head latent attention over the paged latent pool: storing latent rows, and both paths.
// Absorbed (runs of consecutive absorbed sequences): q̂ = [q_nope·W_UK | rope(q_pe)], attention
// over the pool's latent rows read through the page table on the device, split along the
// sequence (each split an online softmax, merged by log-sum-exp), then ·W_UVᵀ per head. The
// grid is sized from the page table's capacity, never from host copies of the positions, so a
// recorded step stays valid when the positions change.
// Expanded (one sequence at a time): its latent rows gathered into a contiguous array, k_nope
// and v expanded from it, then the same attention kernel.
#include "backends/vulkan/vk_backend.h"

namespace sibyl::backend::vulkan {

using engine::Errc;
using engine::fail;

namespace {

constexpr uint32_t kQMax = 1024;         // attention.comp's QMAX: D1 + dr
constexpr uint32_t kMinChunk = 64;       // keys per split at least
constexpr uint32_t kTargetGroups = 512;  // splits until this many workgroups

void check_batch(const StepBatch& b, int64_t rows, const VkKvPool& pool, int64_t layer, const char* what) {
  if (!b.positions || !b.row_seq || !b.page_table || b.rows() != rows || b.positions->rows() < rows ||
      b.row_seq->rows() < rows)
    fail(Errc::internal, std::string("vulkan: ") + what + ": the step batch does not match the rows");
  if (layer < 0 || layer >= pool.n_layers() || pool.n_pages() == 0)
    fail(Errc::internal, std::string("vulkan: ") + what + " on layer " + std::to_string(layer) +
                             " of a pool of " + std::to_string(pool.n_pages()) + " pages");
}

}  // namespace

void VulkanBackend::mla_store(KvPool& pool, int64_t layer, const Tensor& kv_a, const Tensor& kv_norm, float eps,
                              const StepBatch& batch, const RopeParams& rope) {
  op("mla_store", [&] {
    const VkKvPool& c = vk(pool);
    if (kv_a.rows() == 0) return;
    check_batch(batch, kv_a.rows(), c, layer, "mla_store");
    const int64_t R = kv_norm.cols(), dr = kv_a.cols() - R;
    struct {
      uint32_t R, dr, kv_ld, width;
      float eps, factor;
      uint32_t interleaved;
      uint32_t P, max_pages, n_pages;
      WeightDesc w;
    } push{u32(R), u32(dr), u32(kv_a.cols()), u32(c.width()), eps, rope.attention_factor, rope.interleaved,
           u32(c.page_tokens()), u32(batch.page_table->cols()), u32(c.n_pages()), vk(kv_norm).desc()};
    const Arg args[] = {{vk(kv_a).range(), Arg::in},
                        {vk(kv_norm).range(), Arg::weight},
                        {vk(*batch.positions).range(), Arg::in},
                        {vk(*batch.row_seq).range(), Arg::in},
                        {vk(*batch.page_table).range(), Arg::in},
                        {vk(*rope.inv_freq).range(), Arg::in},
                        {c.layer(layer), Arg::out}};
    rec().dispatch(kernels_.get(Shader::mla_store, {wg_}), args, &push, sizeof push, u32(kv_a.rows()));
  });
}

void VulkanBackend::mla_attention(Tensor& dst, const Tensor& q, const KvPool& pool, int64_t layer,
                                  const StepBatch& batch, const MlaWeights& up, const MlaShape& sh,
                                  const RopeParams& rope) {
  op("mla_attention", [&] {
    if (q.rows() == 0) return;
    if (!up.kv_b && (!up.k_b || !up.v_b)) fail(Errc::internal, "mla_attention without up-projection weights");
    const VkKvPool& c = vk(pool);
    check_batch(batch, q.rows(), c, layer, "mla_attention");
    // Consecutive absorbed sequences attend as one run; each expanded sequence on its own.
    const std::vector<SeqRows>& seqs = batch.seqs;
    for (size_t k = 0; k < seqs.size();) {
      if (seqs[k].path == MlaPath::expanded) {
        if (seqs[k].n_rows) mla_rows(dst, q, c, layer, batch, up, sh, rope, seqs[k].first_row, seqs[k].n_rows, &seqs[k]);
        ++k;
        continue;
      }
      const int64_t first = seqs[k].first_row;
      int64_t end = first;
      for (; k < seqs.size() && seqs[k].path == MlaPath::absorbed; ++k) end = seqs[k].first_row + seqs[k].n_rows;
      if (end > first) mla_rows(dst, q, c, layer, batch, up, sh, rope, first, end - first, nullptr);
    }
  });
}

void VulkanBackend::mla_rows(Tensor& dst, const Tensor& q, const VkKvPool& c, int64_t layer, const StepBatch& batch,
                             const MlaWeights& up, const MlaShape& sh, const RopeParams& rope, int64_t row0,
                             int64_t rows, const SeqRows* expanded) {
  const uint32_t n = u32(rows), H = u32(sh.n_heads), R = u32(sh.kv_lora_rank), dn = u32(sh.qk_nope_head_dim),
                 dr = u32(sh.qk_rope_head_dim), dv = u32(sh.v_head_dim), qk = dn + dr, width = u32(c.width());
  const bool absorbed = expanded == nullptr;
  const uint32_t D1 = absorbed ? R : dn, Dv = absorbed ? R : dv;
  if (D1 + dr > kQMax) fail(Errc::unsupported, "vulkan: MLA query width " + std::to_string(D1 + dr) + " > 1024");
  const uint32_t P = u32(c.page_tokens()), max_pages = u32(batch.page_table->cols()), n_pages = u32(c.n_pages());
  // Keys a row may have: the page table's reach (absorbed) or the gathered rows (expanded).
  const uint32_t L = absorbed ? max_pages * P : u32(expanded->expanded_context);
  const uint32_t L_real = absorbed ? std::min(max_pages, n_pages) * P : L;  // sizes the splits
  if (L == 0) fail(Errc::internal, "vulkan: an expanded sequence without expanded_context");
  const Range& layer_rows = c.layer(layer);
  const Range& positions = vk(*batch.positions).range();
  const Range& row_seq = vk(*batch.row_seq).range();
  const Range& page_table = vk(*batch.page_table).range();

  std::vector<Alloc> temps;
  auto tmp = [&](uint64_t floats, const char* what) {
    temps.push_back(scratch(floats * 4, what));
    return temps.back().range;
  };
  try {
    // The latent rows attention reads: the pool itself, or the sequence's rows gathered.
    Range latent = layer_rows;
    if (!absorbed) {
      latent = tmp(static_cast<uint64_t>(L) * width, "the gathered latent rows");
      const uint32_t gpush[5] = {width, P, max_pages, n_pages, u32(row0)};
      const Arg gargs[] = {{latent, Arg::out}, {layer_rows, Arg::in}, {row_seq, Arg::in}, {page_table, Arg::in}};
      rec().dispatch(kernels_.get(Shader::kv_gather, {wg_}), gargs, gpush, sizeof gpush, ceil_div(width, wg_), L);
    }

    // q̂ [n, H, D1 + dr]
    const Range qhat = tmp(static_cast<uint64_t>(n) * H * (D1 + dr), "the attention queries");
    if (absorbed) {  // q_nope · W_UK per head into q̂[:, :, :R]
      Matmul m{n, R, dn, H};
      m.x_off = u32(row0 * q.cols());
      m.x_ld = u32(q.cols());
      m.x_bs = qk;
      m.y_ld = H * (R + dr);
      m.y_bs = R + dr;
      if (up.kv_b) {
        m.w_bs = dn + dv;
        record_matmul(vk(q).range(), vk(*up.kv_b), qhat, m, true);
      } else {
        m.w_bs = R;
        record_matmul(vk(q).range(), vk(*up.k_b), qhat, m);
      }
    }
    struct {
      uint32_t H, dn, dr, q_ld, qk, D1, copy_nope;
      float factor;
      uint32_t interleaved, row0;
    } qpush{H, dn, dr, u32(q.cols()), qk, D1, absorbed ? 0u : 1u, rope.attention_factor, rope.interleaved, u32(row0)};
    const Arg qargs[] = {{vk(q).range(), Arg::in},
                         {positions, Arg::in},
                         {vk(*rope.inv_freq).range(), Arg::in},
                         {qhat, Arg::out}};
    rec().dispatch(kernels_.get(Shader::mla_query, {wg_}), qargs, &qpush, sizeof qpush, ceil_div(D1 + dr, wg_), H, n);

    // Keys and values
    struct {
      uint32_t H, D1, dr, Dv;
      uint32_t k1_off, k1_ld, k1_hs;
      uint32_t k2_off, k2_ld;
      uint32_t v_off, v_ld, v_hs;
      uint32_t S, min_chunk;
      float scale;
      uint32_t row0, paged, P, max_pages, n_pages, L, first;
    } apush{H,         D1,       dr, Dv,        0,       width, 0, R, width, 0, width, 0, 1, kMinChunk, sh.softmax_scale,
            u32(row0), absorbed, P,  max_pages, n_pages, L,     u32(batch.first_position)};
    static_assert(sizeof apush <= kPushBytes);
    Range k1 = latent, v = latent;
    if (!absorbed && up.kv_b) {  // [L, H·(dn + dv)] = c_kv · kv_bᵀ
      const Range e = tmp(static_cast<uint64_t>(L) * H * (dn + dv), "the expanded keys and values");
      Matmul m{L, H * (dn + dv), R};
      m.x_ld = width;
      m.y_ld = H * (dn + dv);
      record_matmul(latent, vk(*up.kv_b), e, m);
      k1 = v = e;
      apush.k1_ld = apush.v_ld = H * (dn + dv);
      apush.k1_hs = apush.v_hs = dn + dv;
      apush.v_off = dn;
    } else if (!absorbed) {  // k [L, H, dn] = c_kv · W_UK per head;  v [L, H·dv] = c_kv · v_bᵀ
      k1 = tmp(static_cast<uint64_t>(L) * H * dn, "the expanded keys");
      v = tmp(static_cast<uint64_t>(L) * H * dv, "the expanded values");
      Matmul mk{L, dn, R, H};
      mk.x_ld = width;
      mk.y_ld = H * dn;
      mk.y_bs = dn;
      mk.w_bs = R;
      record_matmul(latent, vk(*up.k_b), k1, mk, true);
      Matmul mv{L, H * dv, R};
      mv.x_ld = width;
      mv.y_ld = H * dv;
      record_matmul(latent, vk(*up.v_b), v, mv);
      apush.k1_ld = H * dn;
      apush.k1_hs = dn;
      apush.v_ld = H * dv;
      apush.v_hs = dv;
    }

    // Splits along the sequence, enough to fill the device; merged by log-sum-exp. Each row
    // uses as many as its length needs (attention.comp).
    const uint32_t per_split = std::max<uint32_t>(1, kTargetGroups / std::max<uint32_t>(1, n * H));
    const uint32_t S = std::max<uint32_t>(1, std::min(ceil_div(L_real, kMinChunk), per_split));
    apush.S = S;
    const Range part = tmp(static_cast<uint64_t>(n) * H * S * (Dv + 2), "the attention partial sums");
    const uint32_t vpt = ceil_div(Dv, wg_);
    const Arg aargs[] = {{qhat, Arg::in},      {k1, Arg::in},      {latent, Arg::in},     {v, Arg::in},
                         {positions, Arg::in}, {row_seq, Arg::in}, {page_table, Arg::in}, {part, Arg::out}};
    rec().dispatch(kernels_.get(Shader::attention, {wg_, vpt}), aargs, &apush, sizeof apush, H, n, S);

    const Range o = absorbed ? tmp(static_cast<uint64_t>(n) * H * R, "the latent attention output") : vk(dst).range();
    const uint32_t mpush[6] = {H, S, Dv, absorbed ? 0u : u32(row0 * dst.cols()), absorbed ? H * R : u32(dst.cols()),
                               absorbed ? R : dv};
    const Arg margs[] = {{part, Arg::in}, {o, Arg::out}};
    rec().dispatch(kernels_.get(Shader::attn_merge, {wg_}), margs, mpush, sizeof mpush, H, n);

    if (absorbed) {  // out[row0 + i, h·dv + j] = W_UV(h)[j] · õ(h)
      Matmul m{n, dv, R, H};
      m.x_ld = H * R;
      m.x_bs = R;
      m.y_off = u32(row0 * dst.cols());
      m.y_ld = u32(dst.cols());
      m.y_bs = dv;
      m.w_row0 = up.kv_b ? dn : 0;
      m.w_bs = up.kv_b ? dn + dv : dv;
      record_matmul(o, vk(up.kv_b ? *up.kv_b : *up.v_b), vk(dst).range(), m);
    }
  } catch (...) {
    for (const Alloc& a : temps) free_scratch(a);
    throw;
  }
  for (const Alloc& a : temps) free_scratch(a);
}

}  // namespace sibyl::backend::vulkan
