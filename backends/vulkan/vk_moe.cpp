// Mixture of Experts: the router (logits by matmul, then one workgroup per token), and the
// routed experts over "slots" (token, choice): gate and up for every slot with its expert's
// weights, SwiGLU, down, and a weighted sum per token. Experts nobody chose cost only
// workgroups that return at once.
#include "backends/vulkan/vk_backend.h"

namespace sibyl::backend::vulkan {

using engine::Errc;
using engine::fail;

void VulkanBackend::moe_route(Tensor& ids, Tensor& weights, Tensor* raw_logits, const Tensor& x, const Tensor& gate,
                              const Tensor* score_bias, const RouterParams& rp) {
  op("moe_route", [&] {
    const int64_t n = x.rows();
    if (rp.n_experts > 1024 || rp.top_k > 16 || rp.top_k > rp.n_experts || rp.n_group > 64)
      fail(Errc::unsupported, "vulkan: router with " + std::to_string(rp.n_experts) + " experts, top " +
                                  std::to_string(rp.top_k) + ", " + std::to_string(rp.n_group) +
                                  " groups (at most 1024, 16, 64)");
    Alloc logit_tmp;
    Range logits;
    if (raw_logits) {
      logits = vk(*raw_logits).range();
    } else {
      logit_tmp = scratch(static_cast<VkDeviceSize>(n * rp.n_experts) * 4, "the router logits");
      logits = logit_tmp.range;
    }
    try {
      Matmul m{u32(n), u32(rp.n_experts), u32(gate.cols())};
      m.x_ld = u32(x.cols());
      m.y_ld = u32(rp.n_experts);
      record_matmul(vk(x).range(), vk(gate), logits, m);
      const uint32_t select = rp.select == ExpertSelect::greedy ? 0 : rp.select == ExpertSelect::group_limited ? 1 : 2;
      struct {
        uint32_t E, K, n_group, topk_group;
        uint32_t sigmoid, select, normalize, has_bias;
        float scaling;
        WeightDesc bias;
      } push{u32(rp.n_experts), u32(rp.top_k), u32(rp.n_group), u32(rp.topk_group),
             rp.score == ScoreFunc::sigmoid, select, rp.normalize, score_bias != nullptr, rp.scaling,
             score_bias ? vk(*score_bias).desc() : WeightDesc{}};
      const Arg args[] = {{logits, Arg::in},
                          {score_bias ? vk(*score_bias).range() : dummy(), Arg::weight},
                          {vk(ids).range(), Arg::out},
                          {vk(weights).range(), Arg::out}};
      rec().dispatch(kernels_.get(Shader::route, {wg_}), args, &push, sizeof push, u32(n));
    } catch (...) {
      if (!raw_logits) free_scratch(logit_tmp);
      throw;
    }
    if (!raw_logits) free_scratch(logit_tmp);
  });
}

void VulkanBackend::moe_experts(Tensor& dst, const Tensor& x, const Tensor& ids, const Tensor& weights,
                                const ExpertWeights& experts) {
  op("moe_experts", [&] {
    const int64_t n = x.rows(), H = x.cols(), K = ids.cols();
    const uint32_t E = u32(static_cast<int64_t>(experts.gate.size()));
    if (E == 0 || experts.up.size() != E || experts.down.size() != E) fail(Errc::internal, "moe_experts: no experts");
    const int64_t I = experts.gate[0]->rows();
    for (uint32_t e = 0; e < E; ++e) {  // one pipeline per projection: same dtype and shape everywhere
      const Tensor *g = experts.gate[e], *u = experts.up[e], *d = experts.down[e];
      if (g->dtype() != experts.gate[0]->dtype() || u->dtype() != experts.up[0]->dtype() ||
          d->dtype() != experts.down[0]->dtype() || g->rows() != I || u->rows() != I || g->cols() != H ||
          u->cols() != H || d->rows() != H || d->cols() != I)
        fail(Errc::unsupported, "vulkan: routed experts of one layer must share dtype and shape");
    }
    const uint32_t slots = u32(n * K);
    // Experts per dispatch: an array of bindings when the device can index it dynamically.
    const VkPhysicalDeviceLimits& lim = dev_.props.limits;
    const uint32_t max_array = std::min(lim.maxPerStageDescriptorStorageBuffers, lim.maxDescriptorSetStorageBuffers);
    const uint32_t NE = dev_.dynamic_indexing && max_array > 8 ? std::min<uint32_t>(64, max_array - 3) : 1;

    std::vector<Alloc> temps;
    auto tmp = [&](uint64_t floats, const char* what) {
      temps.push_back(scratch(floats * 4, what));
      return temps.back().range;
    };
    // y[slot] = x[row(slot)] · W_e for the slots' experts e.
    auto expert_matmul = [&](const std::vector<const Tensor*>& w, const Range& in, uint32_t in_ld, bool per_slot,
                             const Range& out, uint32_t N, uint32_t Kd) {
      const VkTensor& w0 = vk(*w[0]);
      const Pipeline& p = NE == 1 ? kernels_.get(Shader::moe_matmul, {wg_, lanes_, u32(int64_t(w0.dtype())), 1})
                                  : kernels_.get(Shader::moe_matmul_array, {wg_, lanes_, u32(int64_t(w0.dtype())), NE}, NE);
      for (uint32_t e0 = 0; e0 < E; e0 += NE) {
        struct {
          uint32_t slots, top_k, N, K;
          uint32_t x_ld, x_per_slot, y_ld, e0, e_count;
          WeightDesc w;
        } push{slots, u32(K), N, Kd, in_ld, per_slot, N, e0, std::min(NE, E - e0), w0.desc()};
        std::vector<Arg> args = {{in, Arg::in}, {vk(ids).range(), Arg::in}, {out, Arg::out}};
        for (uint32_t k = 0; k < NE; ++k)
          args.push_back({e0 + k < E ? vk(*w[e0 + k]).range() : dummy(), Arg::weight});
        rec().dispatch(p, args, &push, sizeof push, ceil_div(N, wg_ / lanes_), slots);
      }
    };
    try {
      const Range g = tmp(static_cast<uint64_t>(slots) * I, "the expert activations");
      const Range u = tmp(static_cast<uint64_t>(slots) * I, "the expert activations");
      const Range d = tmp(static_cast<uint64_t>(slots) * H, "the expert outputs");
      expert_matmul(experts.gate, vk(x).range(), u32(H), false, g, u32(I), u32(H));
      expert_matmul(experts.up, vk(x).range(), u32(H), false, u, u32(I), u32(H));
      uint32_t gx, gy;
      grid_1d(static_cast<uint64_t>(slots) * I, wg_, gx, gy);
      const uint32_t count = slots * u32(I);
      const Arg sargs[] = {{g, Arg::out}, {g, Arg::in}, {u, Arg::in}};
      rec().dispatch(kernels_.get(Shader::swiglu, {wg_}), sargs, &count, sizeof count, gx, gy);
      expert_matmul(experts.down, g, u32(I), true, d, u32(H), u32(I));
      const uint32_t cpush[2] = {u32(H), u32(K)};
      const Arg cargs[] = {{vk(dst).range(), Arg::out},
                           {d, Arg::in},
                           {vk(ids).range(), Arg::in},
                           {vk(weights).range(), Arg::in}};
      rec().dispatch(kernels_.get(Shader::moe_combine, {wg_}), cargs, cpush, sizeof cpush, ceil_div(H, wg_), u32(n));
    } catch (...) {
      for (const Alloc& a : temps) free_scratch(a);
      throw;
    }
    for (const Alloc& a : temps) free_scratch(a);
  });
}

}  // namespace sibyl::backend::vulkan
