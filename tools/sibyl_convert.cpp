// sibyl-convert: a Hugging Face directory (bf16/fp16/fp32/FP8), a GGUF file or a pack → a .sibyl
// pack, with a type preset, per-tensor overrides, a progress bar and a size summary.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>

#include "cli_args.h"
#include "engine/formats/convert.h"
#include "engine/core/failure.h"
#include "engine/formats/pack.h"

static const char* kUsage =
    "usage: sibyl-convert INPUT OUTPUT.sibyl [--quant PRESET] [--type GLOB=TYPE[,GLOB=TYPE...]]\n"
    "                     [--threads N] [--verify] [--quiet]\n"
    "INPUT: a Hugging Face model directory, a GGUF file (deepseek2) or a .sibyl pack.\n"
    "--quant   keep | f32 | f16 | bf16 (default) | q8_0 | q6_k | q4_k\n"
    "          q4_k: routed experts Q4_K, the other matrices Q8_0. Norms and the router stay F32.\n"
    "          Rows that are not whole blocks fall back like llama.cpp (Q4_K->Q5_0, Q6_K->Q8_0).\n"
    "--type    per-tensor overrides on canonical names, applied after the preset, e.g.\n"
    "          --type '*.mlp.experts.*=Q4_K,lm_head.weight=Q6_K'\n"
    "--verify  re-open the written pack and check its content checksum\n";

namespace {

// A terminal gets a bar redrawn in place; a log file or pipe one line per quarter done.
void draw_progress(const sibyl::engine::ConvertProgress& p, std::chrono::steady_clock::time_point start) {
  static const bool tty = isatty(STDERR_FILENO) != 0;
  static int quarters_shown = 0;
  const double frac = p.total_params ? static_cast<double>(p.done_params) / static_cast<double>(p.total_params) : 1;
  const int width = 30, filled = static_cast<int>(frac * width);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (tty) {
    std::fprintf(stderr, "\r[%.*s%*s] %5.1f%% %6.1fs  %-60.60s", filled, "==============================",
                 width - filled, "", 100.0 * frac, secs, p.tensor.c_str());
  } else if (static_cast<int>(frac * 4) > quarters_shown) {
    quarters_shown = static_cast<int>(frac * 4);
    std::fprintf(stderr, "%5.1f%% %6.1fs  %s\n", 100.0 * frac, secs, p.tensor.c_str());
  }
  std::fflush(stderr);
}

void print_summary(const sibyl::engine::ConvertReport& r) {
  std::printf("%-16s %8s %14s %12s %7s  %s\n", "class", "tensors", "parameters", "MiB", "bits/w", "types");
  auto row = [](const std::string& name, const sibyl::engine::TensorClassStats& c) {
    std::string types;
    for (const auto& [t, n] : c.params_by_type)
      types += std::string(types.empty() ? "" : ", ") + sibyl::engine::dtype_name(t) + " " +
               std::to_string(static_cast<int>(100.0 * static_cast<double>(n) / static_cast<double>(c.params) + 0.5)) +
               "%";
    std::printf("%-16s %8llu %14llu %12.2f %7.3f  %s\n", name.c_str(), static_cast<unsigned long long>(c.tensors),
                static_cast<unsigned long long>(c.params), static_cast<double>(c.bytes) / (1 << 20),
                c.bits_per_weight(), types.c_str());
  };
  for (const auto& [name, c] : r.classes) row(name, c);
  row("total", r.total);
  std::printf("file: %.2f MiB\n", static_cast<double>(r.file_bytes) / (1 << 20));
}

}  // namespace

int main(int argc, char** argv) {
  // Positional INPUT and OUTPUT first, then flags.
  if (argc < 3 || argv[1][0] == '-' || argv[2][0] == '-') {
    std::fputs(kUsage, stderr);
    return 2;
  }
  sibyl::cli::Args args(argc - 2, argv + 2, {"--quant", "--type", "--threads"}, kUsage, {"--verify", "--quiet"});
  const std::string input = argv[1], output = argv[2];
  try {
    sibyl::engine::ConvertOptions o;
    o.preset = args.get("--quant", "bf16");
    if (args.has("--type")) o.overrides = sibyl::engine::parse_type_overrides(args.get("--type"));
    o.n_threads = static_cast<int>(args.get_int("--threads", 0));
    const auto start = std::chrono::steady_clock::now();
    if (!args.has("--quiet")) o.progress = [start](const auto& p) { draw_progress(p, start); };
    const auto report = sibyl::engine::convert_model(input, output, o);
    if (!args.has("--quiet") && isatty(STDERR_FILENO)) std::fputc('\n', stderr);
    print_summary(report);
    std::printf("wrote %s in %.1f s\n", output.c_str(),
                std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    if (args.has("--verify")) {
      sibyl::engine::PackFile(output).verify_checksum();
      std::printf("checksum verified\n");
    }
  } catch (const sibyl::engine::Failure& e) {
    std::fprintf(stderr, "\nerror: %s\n", e.what());
    return 1;
  }
  return 0;
}
