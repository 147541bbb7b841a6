// Multi-head latent attention: storing latent rows, and both attention paths over the cache.
// Absorbed: q̂ = [q_nope·W_UK | rope(q_pe)], attention over the latent rows split along the
// sequence (each split an online softmax, merged by log-sum-exp), then ·W_UVᵀ per head.
// Expanded: k_nope and v for every cached row from the latent, then the same attention kernel.
#include "vk_backend.h"

namespace sibyl::backend::vulkan {

using engine::Errc;
using engine::fail;

namespace {

constexpr uint32_t kQMax = 1024;         // attention.comp's QMAX: D1 + dr
constexpr uint32_t kMinChunk = 64;       // keys per split at least
constexpr uint32_t kTargetGroups = 512;  // splits until this many workgroups

}  // namespace

void VulkanBackend::mla_store(KvCache& cache, int64_t layer, const Tensor& kv_a, const Tensor& kv_norm, float eps,
                              const Tensor& positions, const RopeParams& rope) {
  op("mla_store", [&] {
    const VkKvCache& c = vk(cache);
    const int64_t R = kv_norm.cols(), dr = kv_a.cols() - R;
    struct {
      uint32_t R, dr, kv_ld, width;
      float eps, factor;
      uint32_t interleaved;
      WeightDesc w;
    } push{u32(R), u32(dr), u32(kv_a.cols()), u32(c.width()), eps, rope.attention_factor, rope.interleaved,
           vk(kv_norm).desc()};
    const Arg args[] = {{vk(kv_a).range(), Arg::in},
                        {vk(kv_norm).range(), Arg::weight},
                        {vk(positions).range(), Arg::in},
                        {vk(*rope.inv_freq).range(), Arg::in},
                        {c.layer(layer), Arg::out}};
    step_.dispatch(kernels_.get(Shader::mla_store, {wg_}), args, &push, sizeof push, u32(kv_a.rows()));
  });
}

void VulkanBackend::mla_attention(Tensor& dst, const Tensor& q, const KvCache& cache, int64_t layer,
                                  const Tensor& positions, const MlaWeights& up, const MlaShape& sh,
                                  const RopeParams& rope, MlaPath path) {
  op("mla_attention", [&] {
    const int64_t n = q.rows();
    if (n == 0) return;
    if (!up.kv_b && (!up.k_b || !up.v_b)) fail(Errc::internal, "mla_attention without up-projection weights");
    const VkKvCache& c = vk(cache);
    const uint32_t H = u32(sh.n_heads), R = u32(sh.kv_lora_rank), dn = u32(sh.qk_nope_head_dim),
                   dr = u32(sh.qk_rope_head_dim), dv = u32(sh.v_head_dim), qk = dn + dr, width = u32(c.width());
    const bool absorbed = path == MlaPath::absorbed;
    const uint32_t D1 = absorbed ? R : dn, Dv = absorbed ? R : dv;
    if (D1 + dr > kQMax) fail(Errc::unsupported, "vulkan: MLA query width " + std::to_string(D1 + dr) + " > 1024");
    // Cache rows read: up to the largest position (known from the host's write), else all.
    const int64_t pmax = vk(positions).host_max;
    const uint32_t L = u32(pmax >= 0 ? std::min<int64_t>(pmax + 1, c.capacity()) : c.capacity());
    const Range cache_rows = c.layer(layer);

    std::vector<Alloc> temps;
    auto tmp = [&](uint64_t floats, const char* what) {
      temps.push_back(temp(floats * 4, what));
      return temps.back().range;
    };
    try {
      // q̂ [n, H, D1 + dr]
      const Range qhat = tmp(static_cast<uint64_t>(n) * H * (D1 + dr), "the attention queries");
      if (absorbed) {  // q_nope · W_UK per head into q̂[:, :, :R]
        Matmul m{u32(n), R, dn, H};
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
        uint32_t interleaved;
      } qpush{H, dn, dr, u32(q.cols()), qk, D1, absorbed ? 0u : 1u, rope.attention_factor, rope.interleaved};
      const Arg qargs[] = {{vk(q).range(), Arg::in},
                           {vk(positions).range(), Arg::in},
                           {vk(*rope.inv_freq).range(), Arg::in},
                           {qhat, Arg::out}};
      step_.dispatch(kernels_.get(Shader::mla_query, {wg_}), qargs, &qpush, sizeof qpush, ceil_div(D1 + dr, wg_), H,
                     u32(n));

      // Keys and values
      struct {
        uint32_t H, D1, dr, Dv;
        uint32_t k1_off, k1_ld, k1_hs;
        uint32_t k2_off, k2_ld;
        uint32_t v_off, v_ld, v_hs;
        uint32_t chunk, S;
        float scale;
      } apush{H, D1, dr, Dv, 0, width, 0, R, width, 0, width, 0, 0, 1, sh.softmax_scale};
      Range k1 = cache_rows, v = cache_rows;
      if (!absorbed && up.kv_b) {  // [L, H·(dn + dv)] = c_kv · kv_bᵀ
        const Range e = tmp(static_cast<uint64_t>(L) * H * (dn + dv), "the expanded keys and values");
        Matmul m{L, H * (dn + dv), R};
        m.x_ld = width;
        m.y_ld = H * (dn + dv);
        record_matmul(cache_rows, vk(*up.kv_b), e, m);
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
        record_matmul(cache_rows, vk(*up.k_b), k1, mk, true);
        Matmul mv{L, H * dv, R};
        mv.x_ld = width;
        mv.y_ld = H * dv;
        record_matmul(cache_rows, vk(*up.v_b), v, mv);
        apush.k1_ld = H * dn;
        apush.k1_hs = dn;
        apush.v_ld = H * dv;
        apush.v_hs = dv;
      }

      // Splits along the sequence, enough to fill the device; merged by log-sum-exp.
      const uint32_t per_split = std::max<uint32_t>(1, kTargetGroups / std::max<uint32_t>(1, u32(n) * H));
      const uint32_t S = std::max<uint32_t>(1, std::min(ceil_div(L, kMinChunk), per_split));
      apush.chunk = ceil_div(L, S);
      apush.S = S;
      const Range part = tmp(static_cast<uint64_t>(n) * H * S * (Dv + 2), "the attention partial sums");
      const uint32_t vpt = ceil_div(Dv, wg_);
      const Arg aargs[] = {{qhat, Arg::in}, {k1, Arg::in},          {cache_rows, Arg::in},
                           {v, Arg::in},    {vk(positions).range(), Arg::in}, {part, Arg::out}};
      step_.dispatch(kernels_.get(Shader::attention, {wg_, vpt}), aargs, &apush, sizeof apush, H, u32(n), S);

      const Range o = absorbed ? tmp(static_cast<uint64_t>(n) * H * R, "the latent attention output")
                               : vk(dst).range();
      const uint32_t mpush[6] = {H, S, Dv, 0, absorbed ? H * R : u32(dst.cols()), absorbed ? R : dv};
      const Arg margs[] = {{part, Arg::in}, {o, Arg::out}};
      step_.dispatch(kernels_.get(Shader::attn_merge, {wg_}), margs, mpush, sizeof mpush, H, u32(n));

      if (absorbed) {  // out[:, h·dv + j] = W_UV(h)[j] · õ(h)
        Matmul m{u32(n), dv, R, H};
        m.x_ld = H * R;
        m.x_bs = R;
        m.y_ld = u32(dst.cols());
        m.y_bs = dv;
        m.w_row0 = up.kv_b ? dn : 0;
        m.w_bs = up.kv_b ? dn + dv : dv;
        record_matmul(o, vk(up.kv_b ? *up.kv_b : *up.v_b), vk(dst).range(), m);
      }
    } catch (...) {
      for (const Alloc& a : temps) free_temp(a);
      throw;
    }
    for (const Alloc& a : temps) free_temp(a);
  });
}

}  // namespace sibyl::backend::vulkan
