#include "cli_model.h"

namespace sibyl::cli {

sibyl_model_options model_options(const Args& args, sibyl_precision precision) {
  sibyl_model_options mo;
  sibyl_model_options_init(&mo);
  mo.n_threads = static_cast<int32_t>(args.get_int("--threads", 0));
  const std::string backend = args.get("--backend", "auto");
  if (backend == "auto")
    mo.backend = SIBYL_BACKEND_AUTO;
  else if (backend == "cpu")
    mo.backend = SIBYL_BACKEND_CPU;
  else if (backend == "cuda")
    mo.backend = SIBYL_BACKEND_CUDA;
  else if (backend == "vulkan")
    mo.backend = SIBYL_BACKEND_VULKAN;
  else
    args.die("--backend must be auto, cpu, cuda or vulkan");
  const long long device = args.get_int("--device", 0), budget = args.get_int("--vram-budget", 0);
  if (device < 0 || budget < 0) args.die("--device and --vram-budget must not be negative");
  mo.device_index = static_cast<int32_t>(device);
  mo.memory_budget = static_cast<uint64_t>(budget) << 20;
  const std::string p = args.get("--precision", precision == SIBYL_PRECISION_EXACT ? "exact" : "fast");
  if (p != "fast" && p != "exact") args.die("--precision must be fast or exact");
  mo.precision = p == "exact" ? SIBYL_PRECISION_EXACT : SIBYL_PRECISION_FAST;
  if (args.has("--mtp") && args.has("--no-mtp")) args.die("--mtp and --no-mtp exclude each other");
  mo.mtp = args.has("--mtp") ? 1 : 0;
  const long long max_batch = args.get_int("--mtp-max-batch", 0);
  if (max_batch < 0 || max_batch > 1 << 20) args.die("--mtp-max-batch must be in [0, 1048576]");
  mo.mtp_max_batch = static_cast<uint32_t>(max_batch);
  return mo;
}

std::vector<std::string> with_model_flags(std::vector<std::string> flags) {
  flags.insert(flags.end(), kModelFlags.begin(), kModelFlags.end());
  return flags;
}

std::vector<std::string> with_model_switches(std::vector<std::string> switches) {
  switches.insert(switches.end(), {"--mtp", "--no-mtp"});
  return switches;
}

}  // namespace sibyl::cli
