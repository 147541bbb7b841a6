// libFuzzer target: the GGUF parser must turn any bytes into metadata and tensor views that
// lie inside the input, or into a Failure — never a crash, hang, overread or huge allocation.
// Inputs that parse also go through the deepseek2 import (metadata → config, tensor names,
// tokenizer.json synthesis and the tokenizer built from it).
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "engine/core/failure.h"
#include "engine/formats/gguf.h"
#include "engine/formats/model_source.h"
#include "engine/text/tokenizer.h"

namespace {

bool inside(const uint8_t* data, size_t size, const char* p, size_t n) {
  auto* q = reinterpret_cast<const uint8_t*>(p);
  return n == 0 || (q >= data && n <= size && q <= data + size - n);
}

// Reads every element through the accessors, so a view that escaped the input is caught.
void walk(const sibyl::engine::GgufValue& v, const uint8_t* data, size_t size) {
  if (auto s = v.as_string(); s && !inside(data, size, s->data(), s->size())) __builtin_trap();
  for (auto s : v.strings())
    if (!inside(data, size, s.data(), s.size())) __builtin_trap();
  for (const auto& a : v.arrays()) walk(a, data, size);
  for (size_t i = 0; i < v.size(); ++i) (void)v.float_at(i);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto c = sibyl::engine::parse_gguf(data, size, "fuzz");
    for (const auto& [key, v] : c.metadata) walk(v, data, size);
    for (const auto& t : c.tensors) {
      if (!inside(data, size, reinterpret_cast<const char*>(t.data), t.nbytes)) __builtin_trap();
      if (t.nbytes == 0 || c.tensor(t.name) != &t) __builtin_trap();
    }
  } catch (const sibyl::engine::Failure&) {
    return 0;
  }
  // The import reads a file: write the input to a per-process temp file.
  static const std::string path = "/tmp/sibyl-fuzz-gguf-" + std::to_string(getpid()) + ".gguf";
  if (FILE* f = std::fopen(path.c_str(), "wb")) {
    const bool ok = std::fwrite(data, 1, size, f) == size;
    std::fclose(f);
    if (!ok) return 0;
  }
  try {
    auto src = sibyl::engine::open_gguf(path);
    if (!src->tokenizer_json.empty()) (void)sibyl::engine::Tokenizer::from_json(src->tokenizer_json, "fuzz");
  } catch (const sibyl::engine::Failure&) {
  }
  return 0;
}
