// libFuzzer target: the .sibyl pack reader must turn any bytes into metadata and tensor views
// that lie inside the input, or into a Failure — never a crash, hang, overread or huge
// allocation. The manifest checksum would stop nearly every mutation of the manifest before
// the FlatBuffers verifier sees it, so each input is parsed twice: as it is, and with the
// header's manifest checksum recomputed.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "engine/core/failure.h"
#include "engine/formats/pack.h"

namespace {

using namespace sibyl::engine;

void check(const uint8_t* data, size_t size) {
  try {
    PackContents c = parse_pack(data, size, "fuzz");
    if (c.data_offset > size || c.data_size > size - c.data_offset) __builtin_trap();
    const uint8_t* begin = data + c.data_offset;
    const uint8_t* end = begin + c.data_size;
    for (const auto& [name, t] : c.tensors) {
      if (name.empty() || name != t.name || t.nbytes == 0) __builtin_trap();
      if (t.data < begin || t.data > end || t.nbytes > static_cast<size_t>(end - t.data)) __builtin_trap();
      if (t.shape.empty() || t.shape.size() > 4) __builtin_trap();
    }
    verify_pack_checksum(data, size, c, "fuzz");
  } catch (const Failure&) {
  }
}

uint64_t get_u64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);  // x86: little-endian already
  return v;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  check(data, size);
  if (size < kPackHeaderSize) return 0;
  const uint64_t offset = get_u64(data + 16), length = get_u64(data + 24);
  if (offset > size || length > size - offset || length > kPackMaxManifest) return 0;
  const uint64_t sum = pack_checksum(data + offset, static_cast<size_t>(length));
  if (sum == get_u64(data + 56)) return 0;  // already checked as it is
  std::vector<uint8_t> fixed(data, data + size);
  std::memcpy(fixed.data() + 56, &sum, 8);
  check(fixed.data(), fixed.size());
  return 0;
}
