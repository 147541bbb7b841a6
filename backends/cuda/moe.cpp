// Mixture of experts: router (GEMV/GEMM for the logits + moe_route.cu), and the routed experts.
// Decode-sized steps run every chosen expert straight from a device table of expert weights
// (no host round trip: graph-friendly); larger steps read the choices back, gather each expert's
// tokens and run its FFN as ordinary matmuls (cuBLAS), adding the weighted results in expert order.
#include <algorithm>
#include <mutex>

#include "backends/cuda/cuda_backend.h"

namespace sibyl::backend::cuda {
namespace {

// The device table of one layer's experts: gate [0, E), up [E, 2E), down [2E, 3E).
struct ExpertTable {
  std::shared_ptr<Context> ctx;
  std::vector<const Tensor*> tensors;  // what the table was built from
  WeightView* device = nullptr;
  size_t bytes = 0;
  int32_t dtype[3] = {-1, -1, -1};  // per projection; -1 when mixed
  ~ExpertTable() {
    if (device) ctx->free_persistent(device, bytes);
  }
};

const ExpertTable& expert_table(Context& ctx, const ExpertWeights& ex) {
  static std::mutex building;  // sessions on several threads may reach a layer's first MoE step together
  std::lock_guard<std::mutex> lock(building);
  const auto& head = dev_tensor(*ex.gate.front());
  std::vector<const Tensor*> all;
  for (const auto* list : {&ex.gate, &ex.up, &ex.down}) all.insert(all.end(), list->begin(), list->end());
  if (head.attachment) {
    const auto& t = *static_cast<const ExpertTable*>(head.attachment.get());
    if (t.tensors == all) return t;
  }
  // Built once per layer, at its first decode-sized MoE step.
  auto t = std::shared_ptr<ExpertTable>(new ExpertTable());
  t->tensors = all;
  const size_t E = ex.gate.size();
  std::vector<WeightView> host(3 * E);
  for (size_t k = 0; k < 3; ++k) {
    const auto& list = k == 0 ? ex.gate : k == 1 ? ex.up : ex.down;
    t->dtype[k] = int32_t(list.front()->dtype());
    for (size_t e = 0; e < E; ++e) {
      host[k * E + e] = dev_tensor(*list[e]).view();
      if (int32_t(list[e]->dtype()) != t->dtype[k]) t->dtype[k] = -1;
    }
  }
  t->bytes = host.size() * sizeof(WeightView);
  t->device = static_cast<WeightView*>(ctx.alloc_persistent(t->bytes, "the expert table"));
  ctx.upload(t->device, host.data(), t->bytes);
  t->ctx = ctx.shared_from_this();
  head.attachment = t;
  return *t;
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// n ≤ kMoeDeviceMaxTokens, every projection of one dtype, 16-byte friendly shapes.
bool device_path_ok(const CudaTensor& x, const ExpertWeights& ex, int64_t K) {
  if (x.rows() > kMoeDeviceMaxTokens || x.rows() * K > 65535) return false;
  const int64_t H = x.cols(), I = ex.gate.front()->rows();
  return H % 8 == 0 && I % 8 == 0 && aligned16(x.data()) && ex.down.front()->cols() == I;
}

void experts_on_device(Context& ctx, CudaTensor& dst, const CudaTensor& x, const CudaTensor& ids,
                       const CudaTensor& weights, const ExpertTable& table, int64_t E) {
  const int64_t n = x.rows(), K = ids.cols(), H = x.cols();
  const int64_t I = table.tensors.front()->rows();
  const WeightView* gate = table.device;
  const WeightView* up = table.device + E;
  const WeightView* down = table.device + 2 * E;
  Scratch h(ctx, size_t(n * K * I) * 4, "expert activations");
  MoeGemvParams p{};
  p.ids = ids.i32();
  p.weights = weights.f32();
  p.top_k = K;
  p.n_tokens = n;
  if (table.dtype[0] == table.dtype[1]) {  // gate and up in one pass over x
    p.table_a = gate;
    p.table_b = up;
    p.x = x.f32();
    p.y = h.f32();
    p.rows = I;
    p.k = H;
    p.ldx = H;
    p.ldy = I;
    p.mode = 1;
    p.dtype = table.dtype[0];
    ctx.enqueue(launch_moe_gemv, p, "moe_gate_up");
  } else {
    Scratch g(ctx, size_t(n * K * I) * 4, "expert gate");
    MoeGemvParams a = p;
    a.x = x.f32();
    a.rows = I;
    a.k = H;
    a.ldx = H;
    a.ldy = I;
    a.mode = 0;
    a.table_a = gate;
    a.y = g.f32();
    a.dtype = table.dtype[0];
    ctx.enqueue(launch_moe_gemv, a, "moe_gate");
    a.table_a = up;
    a.y = h.f32();
    a.dtype = table.dtype[1];
    ctx.enqueue(launch_moe_gemv, a, "moe_up");
    ctx.enqueue(launch_swiglu, SwigluParams{h.f32(), g.f32(), h.f32(), n * K * I}, "swiglu");
  }
  MoeGemvParams d = p;  // down projection and the weighted sum over the chosen experts
  d.table_a = down;
  d.table_b = nullptr;
  d.x = h.f32();
  d.y = dst.f32();
  d.rows = H;
  d.k = I;
  d.ldx = I;
  d.ldy = dst.cols();
  d.mode = 2;
  d.dtype = table.dtype[2];
  ctx.enqueue(launch_moe_gemv, d, "moe_down");
}

// Any size: the host reads the choices, then per expert gather → FFN → weighted scatter-add.
void experts_grouped(Context& ctx, CudaTensor& dst, const CudaTensor& x, const CudaTensor& ids,
                     const CudaTensor& weights, const ExpertWeights& ex) {
  const int64_t n = x.rows(), K = ids.cols(), H = x.cols(), E = int64_t(ex.gate.size());
  std::vector<int32_t> chosen(static_cast<size_t>(n * K));
  ctx.read(ids.data(), chosen.data(), chosen.size() * 4);
  // Index lists, expert by expert: token rows, then their slots (token·K + k) for the weights.
  std::vector<int64_t> begin(static_cast<size_t>(E + 1), 0);
  for (int32_t e : chosen) {
    if (e < 0 || e >= E) fail(Errc::internal, "CUDA backend: router chose a nonexistent expert");
    ++begin[static_cast<size_t>(e) + 1];
  }
  for (int64_t e = 0; e < E; ++e) begin[e + 1] += begin[e];
  std::vector<int32_t> lists(static_cast<size_t>(2 * n * K));
  std::vector<int64_t> fill(begin.begin(), begin.end() - 1);
  for (int64_t s = 0; s < n * K; ++s) {
    const int64_t at = fill[chosen[s]]++;
    lists[at] = int32_t(s / K);
    lists[n * K + at] = int32_t(s);
  }
  Scratch idx(ctx, lists.size() * 4, "expert index lists");
  ctx.write(idx.i32(), lists.data(), lists.size() * 4);
  ctx.enqueue(launch_memset, MemsetParams{dst.f32(), int64_t(dst.nbytes())}, "moe_zero");

  for (int64_t e = 0; e < E; ++e) {
    const int64_t m = begin[e + 1] - begin[e];
    if (m == 0) continue;
    const int32_t* rows = idx.i32() + begin[e];
    const int32_t* slots = idx.i32() + n * K + begin[e];
    const CudaTensor& wg = dev_tensor(*ex.gate[e]);
    const CudaTensor& wu = dev_tensor(*ex.up[e]);
    const CudaTensor& wd = dev_tensor(*ex.down[e]);
    const int64_t I = wg.rows();
    Scratch xs(ctx, size_t(m * H) * 4, "expert inputs");
    Scratch g(ctx, size_t(m * I) * 4, "expert gate");
    Scratch u(ctx, size_t(m * I) * 4, "expert up");
    Scratch d(ctx, size_t(m * H) * 4, "expert outputs");
    ctx.enqueue(launch_gather, GatherParams{xs.f32(), x.f32(), rows, m, H, x.cols(), x.rows(), ctx.fault_word()}, "moe_gather");
    Linear a{};
    a.x = xs.f32();
    a.ldx = H;
    a.n = m;
    a.rows = I;
    a.ldy = I;
    a.w = &wg;
    a.y = g.f32();
    linear(ctx, a);
    a.w = &wu;
    a.y = u.f32();
    linear(ctx, a);
    ctx.enqueue(launch_swiglu, SwigluParams{g.f32(), g.f32(), u.f32(), m * I}, "swiglu");
    Linear b{};
    b.w = &wd;
    b.rows = H;
    b.x = g.f32();
    b.ldx = I;
    b.y = d.f32();
    b.ldy = H;
    b.n = m;
    linear(ctx, b);
    ctx.enqueue(launch_scatter_add, ScatterAddParams{dst.f32(), d.f32(), rows, slots, weights.f32(), m, H, dst.cols()},
                "moe_scatter");
  }
}

}  // namespace

void moe_route(Context& ctx, CudaTensor& ids, CudaTensor& weights, CudaTensor* raw_logits, const CudaTensor& x,
               const CudaTensor& gate, const CudaTensor* score_bias, const RouterParams& params) {
  const int64_t n = x.rows(), E = params.n_experts;
  if (gate.rows() != E || params.top_k > E || params.top_k <= 0)
    fail(Errc::internal, "CUDA backend: router shapes do not match");
  std::unique_ptr<Scratch> scratch;
  float* logits = raw_logits ? raw_logits->f32() : nullptr;
  if (!logits) {
    scratch = std::make_unique<Scratch>(ctx, size_t(n * E) * 4, "router logits");
    logits = scratch->f32();
  }
  Linear a{};
  a.w = &gate;
  a.rows = E;
  a.x = x.f32();
  a.ldx = x.cols();
  a.y = logits;
  a.ldy = E;
  a.n = n;
  linear(ctx, a);
  RouteParams p{};
  if (score_bias) p.bias = score_bias->view();
  p.logits = logits;
  p.ids = ids.i32();
  p.weights = weights.f32();
  p.n_tokens = n;
  p.n_experts = E;
  p.top_k = params.top_k;
  p.n_group = std::max<int64_t>(params.n_group, 1);
  p.topk_group = params.topk_group;
  p.scaling = params.scaling;
  p.score = params.score == ScoreFunc::softmax ? 0 : 1;
  p.select = params.select == ExpertSelect::greedy ? 0 : params.select == ExpertSelect::group_limited ? 1 : 2;
  p.normalize = params.normalize ? 1 : 0;
  ctx.enqueue(launch_moe_route, p, "moe_route");
}

void moe_experts(Context& ctx, CudaTensor& dst, const CudaTensor& x, const CudaTensor& ids, const CudaTensor& weights,
                 const ExpertWeights& experts) {
  if (x.rows() == 0) return;
  if (experts.gate.empty() || experts.up.size() != experts.gate.size() || experts.down.size() != experts.gate.size())
    fail(Errc::internal, "CUDA backend: incomplete expert weights");
  const int64_t K = ids.cols();
  if (device_path_ok(x, experts, K)) {
    const ExpertTable& t = expert_table(ctx, experts);
    if (t.dtype[0] >= 0 && t.dtype[1] >= 0 && t.dtype[2] >= 0) {
      experts_on_device(ctx, dst, x, ids, weights, t, int64_t(experts.gate.size()));
      return;
    }
  }
  experts_grouped(ctx, dst, x, ids, weights, experts);
}

}  // namespace sibyl::backend::cuda
