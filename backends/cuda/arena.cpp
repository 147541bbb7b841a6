#include "backends/cuda/arena.h"

#include <iterator>

#include "engine/core/failure.h"

namespace sibyl::backend::cuda {

namespace {
constexpr size_t round_up(size_t v, size_t a) { return (v + a - 1) / a * a; }
}  // namespace

bool Arena::carve(Chunk& c, size_t size, void*& out) {
  for (auto it = c.free.begin(); it != c.free.end(); ++it) {  // first fit, lowest address first
    if (it->second < size) continue;
    const size_t off = it->first, rest = it->second - size;
    c.free.erase(it);
    if (rest) c.free.emplace(off + size, rest);
    out = reinterpret_cast<void*>(c.base + off);
    live_.emplace(c.base + off, size);
    live_bytes_ += size;
    return true;
  }
  return false;
}

void* Arena::alloc(size_t bytes) {
  const size_t size = round_up(bytes ? bytes : 1, kAlign);
  void* out = nullptr;
  for (Chunk& c : chunks_)
    if (carve(c, size, out)) return out;
  const size_t chunk = size > chunk_bytes_ ? round_up(size, size_t(2) << 20) : chunk_bytes_;
  void* base = alloc_(chunk);
  chunks_.push_back(Chunk{reinterpret_cast<uintptr_t>(base), chunk, {{0, chunk}}});
  reserved_ += chunk;
  carve(chunks_.back(), size, out);
  return out;
}

void Arena::free(void* p) {
  if (!p) return;
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  auto lit = live_.find(a);
  if (lit == live_.end()) engine::fail(engine::Errc::internal, "CUDA backend: freeing memory the arena does not own");
  size_t size = lit->second;
  live_.erase(lit);
  live_bytes_ -= size;
  for (Chunk& c : chunks_) {
    if (a < c.base || a >= c.base + c.size) continue;
    size_t off = a - c.base;
    auto next = c.free.lower_bound(off);
    if (next != c.free.end() && next->first == off + size) {  // merge with the block after
      size += next->second;
      next = c.free.erase(next);
    }
    if (next != c.free.begin()) {  // and with the block before
      auto prev = std::prev(next);
      if (prev->first + prev->second == off) {
        off = prev->first;
        size += prev->second;
        c.free.erase(prev);
      }
    }
    c.free.emplace(off, size);
    return;
  }
}

size_t Arena::trim() {
  size_t released = 0;
  for (auto it = chunks_.begin(); it != chunks_.end();) {
    const bool empty = it->free.size() == 1 && it->free.begin()->first == 0 && it->free.begin()->second == it->size;
    if (!empty) {
      ++it;
      continue;
    }
    free_(reinterpret_cast<void*>(it->base), it->size);
    released += it->size;
    reserved_ -= it->size;
    it = chunks_.erase(it);
  }
  return released;
}

void Arena::release_all() {
  for (const Chunk& c : chunks_) free_(reinterpret_cast<void*>(c.base), c.size);
  chunks_.clear();
  live_.clear();
  reserved_ = live_bytes_ = 0;
}

}  // namespace sibyl::backend::cuda
