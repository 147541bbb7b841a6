// libFuzzer target: the safetensors header parser must turn any bytes into views that
// lie inside the input, or into a Failure — never a crash, hang or overread.
#include <cstddef>
#include <cstdint>

#include "engine/core/failure.h"
#include "engine/formats/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto tensors = sibyl::engine::parse_safetensors(data, size, "fuzz");
    for (const auto& [name, t] : tensors)
      if (t.data < data || t.data + t.nbytes > data + size) __builtin_trap();
  } catch (const sibyl::engine::Failure&) {
  }
  return 0;
}
