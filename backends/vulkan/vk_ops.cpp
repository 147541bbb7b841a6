// Dense ops: embed, rmsnorm, matmul, add, swiglu, gather_rows; copying KV pages.
#include <cstring>

#include "backends/vulkan/vk_backend.h"

namespace sibyl::backend::vulkan {

using engine::Errc;
using engine::fail;

void grid_1d(uint64_t count, uint32_t wg, uint32_t& gx, uint32_t& gy) {
  const uint64_t groups = (count + wg - 1) / wg;
  gx = static_cast<uint32_t>(std::min<uint64_t>(groups, 65535));
  gy = gx ? static_cast<uint32_t>((groups + gx - 1) / gx) : 0;
}

namespace {

void check_weight_dtype(const Tensor& w, const char* what) {
  if (w.dtype() == DType::i32 || w.dtype() == DType::i64)
    fail(Errc::unsupported, std::string("vulkan: ") + what + " of an integer tensor");
}

}  // namespace

void VulkanBackend::record_matmul(const Range& x, const VkTensor& w, const Range& y, const Matmul& m, bool nn) {
  static_assert(sizeof(Matmul) == 48 && sizeof(WeightDesc) == 24, "push constants must match the shaders");
  check_weight_dtype(w, "matmul");
  struct {
    Matmul m;
    WeightDesc w;
  } push{m, w.desc()};
  const Arg args[] = {{x, Arg::in}, {w.range(), Arg::weight}, {y, Arg::out}};
  const uint32_t dtype = static_cast<uint32_t>(w.dtype());
  if (!nn) {
    const uint32_t tok = m.n == 1 ? 1 : 8;
    const Pipeline& p = kernels_.get(Shader::matmul, {wg_, lanes_, tok, dtype});
    rec().dispatch(p, args, &push, sizeof push, ceil_div(m.N, wg_ / lanes_), ceil_div(m.n, tok), m.batch);
  } else {
    const Pipeline& p = kernels_.get(Shader::matmul_nn, {wg_, dtype});
    rec().dispatch(p, args, &push, sizeof push, ceil_div(m.N, wg_), m.n, m.batch);
  }
}

void VulkanBackend::embed(Tensor& dst, const Tensor& table, const Tensor& tokens) {
  op("embed", [&] {
    check_weight_dtype(table, "embed");
    struct {
      uint32_t cols, dst_ld;
      WeightDesc w;
    } push{u32(table.cols()), u32(dst.cols()), vk(table).desc()};
    const Arg args[] = {{vk(dst).range(), Arg::out}, {vk(table).range(), Arg::weight}, {vk(tokens).range(), Arg::in}};
    rec().dispatch(kernels_.get(Shader::embed, {wg_}), args, &push, sizeof push, ceil_div(table.cols(), wg_),
                   u32(dst.rows()));
  });
}

void VulkanBackend::rmsnorm(Tensor& dst, const Tensor& src, const Tensor& weight, float eps, int64_t cols) {
  op("rmsnorm", [&] {
    check_weight_dtype(weight, "rmsnorm");
    struct {
      uint32_t cols, src_ld, dst_ld;
      float eps;
      WeightDesc w;
    } push{u32(cols ? cols : src.cols()), u32(src.cols()), u32(dst.cols()), eps, vk(weight).desc()};
    const Arg args[] = {{vk(dst).range(), Arg::out}, {vk(src).range(), Arg::in}, {vk(weight).range(), Arg::weight}};
    rec().dispatch(kernels_.get(Shader::rmsnorm, {wg_}), args, &push, sizeof push, u32(src.rows()));
  });
}

void VulkanBackend::matmul(Tensor& dst, const Tensor& src, const Tensor& weight) {
  op("matmul", [&] {
    Matmul m{u32(src.rows()), u32(weight.rows()), u32(weight.cols())};
    m.x_ld = u32(src.cols());
    m.y_ld = u32(dst.cols());
    record_matmul(vk(src).range(), vk(weight), vk(dst).range(), m);
  });
}

void VulkanBackend::add(Tensor& acc, const Tensor& x) {
  op("add", [&] {
    const uint64_t count = static_cast<uint64_t>(acc.rows() * acc.cols());
    uint32_t gx, gy;
    grid_1d(count, wg_, gx, gy);
    const uint32_t push = static_cast<uint32_t>(count);
    const Arg args[] = {{vk(acc).range(), Arg::out}, {vk(x).range(), Arg::in}};
    rec().dispatch(kernels_.get(Shader::add, {wg_}), args, &push, sizeof push, gx, gy);
  });
}

void VulkanBackend::swiglu(Tensor& dst, const Tensor& gate, const Tensor& up) {
  op("swiglu", [&] {
    const uint64_t count = static_cast<uint64_t>(dst.rows() * dst.cols());
    uint32_t gx, gy;
    grid_1d(count, wg_, gx, gy);
    const uint32_t push = static_cast<uint32_t>(count);
    const Arg args[] = {{vk(dst).range(), Arg::out}, {vk(gate).range(), Arg::in}, {vk(up).range(), Arg::in}};
    rec().dispatch(kernels_.get(Shader::swiglu, {wg_}), args, &push, sizeof push, gx, gy);
  });
}

void VulkanBackend::gather_rows(Tensor& dst, const Tensor& src, const Tensor& rows) {
  op("gather_rows", [&] {
    const size_t row_bytes = engine::row_bytes(src.dtype(), src.cols());
    if (dst.dtype() != src.dtype() || dst.cols() != src.cols() || rows.dtype() != DType::i32 ||
        rows.rows() < dst.rows() || row_bytes % 4 != 0)
      fail(Errc::internal, "vulkan: gather_rows of mismatched tensors");
    const uint32_t push[2] = {u32(static_cast<int64_t>(row_bytes / 4)), u32(src.rows())};
    const Arg args[] = {{vk(dst).range(), Arg::out}, {vk(src).range(), Arg::in}, {vk(rows).range(), Arg::in}};
    rec().dispatch(kernels_.get(Shader::gather_rows, {wg_}), args, push, sizeof push, ceil_div(push[0], wg_),
                   u32(dst.rows()));
  });
}

void VulkanBackend::copy_kv_page(KvPool& pool, int64_t dst, int64_t src) {
  op("copy_kv_page", [&] {
    const VkKvPool& p = vk(pool);
    if (dst < 0 || src < 0 || dst >= p.n_pages() || src >= p.n_pages())
      fail(Errc::internal, "vulkan: copy_kv_page(" + std::to_string(dst) + ", " + std::to_string(src) + ") of a pool of " +
                               std::to_string(p.n_pages()) + " pages");
    if (dst == src) return;
    const VkDeviceSize bytes = p.page_bytes();
    for (int64_t l = 0; l < p.n_layers(); ++l)
      rec().copy(p.layer(l), static_cast<VkDeviceSize>(src) * bytes, p.layer(l), static_cast<VkDeviceSize>(dst) * bytes,
                 bytes);
  });
}

}  // namespace sibyl::backend::vulkan
