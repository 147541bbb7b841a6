// Model-loading flags shared by the tools that load through the C ABI.
#pragma once
#include <sibyl/sibyl.h>

#include <string>
#include <vector>

#include "cli_args.h"

namespace sibyl::cli {

// The model-loading flags every tool shares: --threads N, --backend auto|cpu|cuda|vulkan,
// --device N, --vram-budget MiB, --precision fast|exact.
inline const std::vector<std::string> kModelFlags = {"--threads", "--backend", "--device", "--vram-budget",
                                                     "--precision", "--mtp-max-batch"};
#define SIBYL_CLI_MODEL_FLAGS_HELP                                                          \
  "  --threads N          CPU threads (default: all)\n"                                     \
  "  --backend B          auto (default: CUDA, then Vulkan, then CPU) | cpu | cuda | vulkan\n" \
  "  --device N           GPU index (default 0)\n"                                          \
  "  --vram-budget MIB    GPU memory Sibyl may use (default: no limit)\n"                  \
  "  --precision P        fast (matmuls on the stored blocks) | exact (float32, as the references)\n" \
  "  --mtp | --no-mtp     speculative decoding with the model's MTP layer (default: off)\n"          \
  "  --mtp-max-batch N    with --mtp: draft while at most N requests decode (default 1)\n"
// Model options from those flags (dies with a message on a bad value). `precision` is the
// tool's default for --precision (sibyl-logits: exact; the others: fast).
sibyl_model_options model_options(const Args& args, sibyl_precision precision = SIBYL_PRECISION_FAST);
// Flags plus the shared model flags.
std::vector<std::string> with_model_flags(std::vector<std::string> flags);
// Switches plus the shared model switches (--mtp, --no-mtp).
std::vector<std::string> with_model_switches(std::vector<std::string> switches);

}  // namespace sibyl::cli
