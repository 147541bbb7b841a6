// Little-endian fields read from any byte address (quantized blocks sit at 2-byte
// boundaries inside memory-mapped files), without undefined behaviour.
#pragma once
#include <cstdint>
#include <cstring>

namespace sibyl::engine {

inline uint16_t load_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

inline uint32_t load_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

}  // namespace sibyl::engine
