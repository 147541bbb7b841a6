// libFuzzer target: config.json parsing accepts a config or throws a Failure, never crashes.
#include <cstddef>
#include <cstdint>
#include <string>

#include "engine/model/config.h"
#include "engine/core/failure.h"
#include "engine/model/rope.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto config = sibyl::engine::parse_model_config(std::string(reinterpret_cast<const char*>(data), size), "fuzz");
    if (config.qk_rope_head_dim <= 4096) sibyl::engine::compute_rope(config);
  } catch (const sibyl::engine::Failure&) {
  }
  return 0;
}
