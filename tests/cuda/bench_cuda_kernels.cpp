// Micro-benchmarks of the CUDA backend's kernels, timed with CUDA events (median of 20 after 3
// warm-ups, inputs rotated over 4 copies so the 50 MB L2 does not serve them):
//   gemv       decode GEMV (1 token), GB/s of weight + vector traffic, per weight dtype
//   mla        absorbed MLA decode over the paged latent cache (576-wide rows, 64-token pages in
//              shuffled order), GB/s of cache read
//   gemm       cuBLAS SGEMM (float32 path, TF32 off unless SIBYL_CUDA_PRECISION=tf32), TFLOP/s
// Prints a clear message and exits 0 without a usable device. Usage: sibyl-bench-cuda-kernels [gemv|mla|gemm]...
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backends/cuda/cuda_backend.h"
#include "engine/core/quant.h"

using namespace sibyl;
using namespace sibyl::backend::cuda;

namespace {

struct Timer {
  const Exec& ex;
  cudaEvent_t a{}, b{};
  explicit Timer(const Exec& e) : ex(e) {
    check(cudaEventCreate(&a), "event");
    check(cudaEventCreate(&b), "event");
  }
  ~Timer() {
    cudaEventDestroy(a);
    cudaEventDestroy(b);
  }
  // Median milliseconds of f(rep) over `reps` timed runs after 3 warm-ups.
  template <class F>
  double median_ms(F&& f, int reps = 20) {
    for (int i = 0; i < 3; ++i) f(i);
    std::vector<double> t;
    for (int i = 0; i < reps; ++i) {
      check(cudaEventRecord(a, ex.stream), "record");
      f(i);
      check(cudaEventRecord(b, ex.stream), "record");
      check(cudaEventSynchronize(b), "sync");
      float ms = 0;
      check(cudaEventElapsedTime(&ms, a, b), "elapsed");
      t.push_back(ms);
    }
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
  }
};

std::shared_ptr<Context> g_ctx;

std::unique_ptr<CudaTensor> weight(engine::DType dtype, int64_t rows, int64_t cols, std::mt19937& rng) {
  auto t = std::make_unique<CudaTensor>(g_ctx, dtype, rows, cols, true, "bench weight");
  std::vector<uint8_t> host(t->nbytes());
  if (dtype == engine::DType::f8_e4m3) {
    for (auto& b : host) b = uint8_t(rng() % 0x7e);
    std::vector<float> scale(size_t(((rows + 127) / 128) * ((cols + 127) / 128)), 0.01f);
    t->set_block_scale(scale.data(), 128, 128);
  } else {
    std::normal_distribution<float> d(0.f, 0.1f);
    std::vector<float> row(static_cast<size_t>(cols));
    for (int64_t r = 0; r < rows; ++r) {
      for (float& x : row) x = d(rng);
      engine::quantize_row(dtype, row.data(), host.data() + size_t(r) * engine::row_bytes(dtype, cols), cols);
    }
  }
  g_ctx->upload(t->data(), host.data(), host.size());
  return t;
}

std::unique_ptr<CudaTensor> activations(int64_t rows, int64_t cols, std::mt19937& rng) {
  auto t = std::make_unique<CudaTensor>(g_ctx, engine::DType::f32, rows, cols, true, "bench activations");
  std::normal_distribution<float> d(0.f, 1.f);
  std::vector<float> v(size_t(rows * cols));
  for (float& x : v) x = d(rng);
  g_ctx->upload(t->data(), v.data(), v.size() * 4);
  return t;
}

void bench_gemv(Timer& timer, std::mt19937& rng) {
  std::printf("\n%-8s %8s %8s %10s %10s\n", "gemv", "rows", "cols", "us", "GB/s");
  const int64_t N = 8192, K = 8192;
  for (engine::DType t : {engine::DType::f32, engine::DType::bf16, engine::DType::f16, engine::DType::f8_e4m3,
                          engine::DType::q8_0, engine::DType::q6_k, engine::DType::q5_0, engine::DType::q4_k}) {
    std::vector<std::unique_ptr<CudaTensor>> ws;
    for (int c = 0; c < 4; ++c) ws.push_back(weight(t, N, K, rng));
    auto x = activations(1, K, rng), y = activations(1, N, rng);
    const double ms = timer.median_ms([&](int rep) {
      GemvParams p{};
      p.w = ws[size_t(rep % 4)]->view();
      p.x = x->f32();
      p.y = y->f32();
      p.n_rows = N;
      p.k = K;
      p.ldx = K;
      p.ldy = N;
      p.group_rows = N;
      p.n_tokens = 1;
      p.rows_per_block = 4;
      launch_gemv(p, g_ctx->exec());
    });
    const double bytes = double(ws[0]->nbytes()) + double(K + N) * 4;
    std::printf("%-8s %8lld %8lld %10.1f %10.1f\n", engine::dtype_name(t), (long long)N, (long long)K, ms * 1e3,
                bytes / (ms * 1e-3) / 1e9);
  }
}

void bench_mla(Timer& timer, std::mt19937& rng) {
  std::printf("\n%-8s %6s %8s %7s %10s %10s\n", "mla", "heads", "context", "splits", "us", "GB/s");
  const int64_t R = 512, dr = 64, dn = 128, W = R + dr;
  for (int64_t H : {16, 128}) {
    for (int64_t L : {1024, 4096, 16384, 32768}) {
      auto cache = activations(L, W, rng);
      auto q = activations(1, H * (dn + dr), rng), q_lat = activations(1, H * R, rng), o = activations(1, H * R, rng);
      std::vector<float> inv(size_t(dr / 2), 0.01f);
      auto freq = activations(1, dr / 2, rng);
      g_ctx->upload(freq->data(), inv.data(), inv.size() * 4);
      auto pos = std::make_unique<CudaTensor>(g_ctx, engine::DType::i32, 1, 1, true, "pos");
      const int32_t p0 = int32_t(L - 1);
      g_ctx->upload(pos->data(), &p0, 4);
      auto seq = std::make_unique<CudaTensor>(g_ctx, engine::DType::i32, 1, 1, true, "row_seq");
      const int32_t s0 = 0;
      g_ctx->upload(seq->data(), &s0, 4);
      const int64_t P = 64, n_pages = L / P;  // the page table: a shuffled permutation of the pool's pages
      std::vector<int32_t> pages(static_cast<size_t>(n_pages));
      for (int64_t k = 0; k < n_pages; ++k) pages[size_t(k)] = int32_t(k);
      std::shuffle(pages.begin(), pages.end(), rng);
      auto table = std::make_unique<CudaTensor>(g_ctx, engine::DType::i32, 1, n_pages, true, "page table");
      g_ctx->upload(table->data(), pages.data(), pages.size() * 4);
      const int64_t HB = std::min<int64_t>(8, H), blocks = (H + HB - 1) / HB;
      const int64_t splits = std::clamp<int64_t>(std::min((2 * g_ctx->sm_count() + blocks - 1) / blocks, (L + 255) / 256), 1, 64);
      auto part = activations(splits * H, R, rng), ml = activations(splits * H, 2, rng);
      const double ms = timer.median_ms([&](int) {
        MlaDecodeParams p{};
        p.q = q->f32();
        p.q_lat = q_lat->f32();
        p.kv = PagedKv{cache->f32(), table->i32(), n_pages, P, n_pages, W};
        p.rows = BatchRows{pos->i32(), seq->i32(), 0, 1};
        p.fault = g_ctx->fault_word();
        p.rope = RopeArgs{freq->f32(), 1.0f, 1};
        p.n_tokens = 1;
        p.n_heads = H;
        p.R = R;
        p.dn = dn;
        p.dr = dr;
        p.q_ld = H * (dn + dr);
        p.n_splits = splits;
        p.scale = 0.07f;
        p.heads_per_block = int32_t(HB);
        p.out = splits == 1 ? o->f32() : part->f32();
        p.ml = ml->f32();
        launch_mla_decode(p, g_ctx->exec());
        if (splits > 1) launch_mla_merge(MlaMergeParams{part->f32(), ml->f32(), o->f32(), 1, H, R, splits}, g_ctx->exec());
      });
      std::printf("%-8s %6lld %8lld %7lld %10.1f %10.1f\n", "decode", (long long)H, (long long)L, (long long)splits,
                  ms * 1e3, double(L * W * 4) / (ms * 1e-3) / 1e9);
    }
  }
}

void bench_gemm(Timer& timer, std::mt19937& rng) {
  std::printf("\n%-8s %6s %6s %6s %10s %10s\n", "gemm", "m", "n", "k", "ms", "TFLOP/s");
  for (int64_t s : {2048, 4096, 8192}) {
    auto a = activations(s, s, rng), b = activations(s, s, rng), c = activations(s, s, rng);
    const double ms = timer.median_ms([&](int) {
      GemmParams p{};
      p.a = a->f32();
      p.b = b->f32();
      p.c = c->f32();
      p.m = p.n = p.k = s;
      p.lda = p.ldb = p.ldc = s;
      p.batch = 1;
      p.trans_a = 1;
      launch_gemm(p, g_ctx->exec());
    }, 10);
    std::printf("%-8s %6lld %6lld %6lld %10.3f %10.1f\n", g_ctx->precision() == Precision::tf32 ? "tf32" : "f32",
                (long long)s, (long long)s, (long long)s, ms, 2.0 * double(s) * double(s) * double(s) / (ms * 1e-3) / 1e12);
  }
}

}  // namespace

int main(int argc, char** argv) {
  try {
    g_ctx = Context::create({});
  } catch (const std::exception& e) {
    std::printf("no CUDA device: %s\nnothing to benchmark.\n", e.what());
    return 0;
  }
  std::printf("%s\n", g_ctx->description().c_str());
  std::vector<std::string> what(argv + 1, argv + argc);
  if (what.empty()) what = {"gemv", "mla", "gemm"};
  std::mt19937 rng(12345);
  try {
    Timer timer(g_ctx->exec());
    for (const std::string& w : what) {
      if (w == "gemv") bench_gemv(timer, rng);
      else if (w == "mla") bench_mla(timer, rng);
      else if (w == "gemm") bench_gemm(timer, rng);
      else std::printf("unknown benchmark %s (gemv, mla, gemm)\n", w.c_str());
    }
  } catch (const std::exception& e) {
    std::printf("error: %s\n", e.what());
    return 1;
  }
  return 0;
}
