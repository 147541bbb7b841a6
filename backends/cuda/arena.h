// The step arena: a first-fit allocator over large device chunks, for activations.
//
// Why not cudaMallocAsync: ops are recorded and submitted at end_step (context.h), after the engine
// has already destroyed most temporaries, and a replayed CUDA graph needs the same addresses every
// step. Here the free blocks are always exactly the complement of the live ones (frees coalesce),
// so the same sequence of requests from the same live set gets the same addresses, step after step.
// Reuse is safe without waiting: every use of the memory is ordered on the backend's one stream.
// Plain C++ (chunks come from callbacks), so the bookkeeping does not depend on a device.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <unordered_map>
#include <vector>

namespace sibyl::backend::cuda {

class Arena {
 public:
  using ChunkAlloc = std::function<void*(size_t bytes)>;  // throws on failure
  using ChunkFree = std::function<void(void* p, size_t bytes)>;
  static constexpr size_t kAlign = 256;

  Arena(ChunkAlloc alloc, ChunkFree free, size_t chunk_bytes)
      : alloc_(std::move(alloc)), free_(std::move(free)), chunk_bytes_(chunk_bytes) {}
  ~Arena() { release_all(); }
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  void* alloc(size_t bytes);
  void free(void* p);
  size_t trim();         // gives back chunks with nothing live; returns the bytes released
  void release_all();    // every chunk, live blocks or not (shutdown)
  size_t reserved() const { return reserved_; }
  size_t live() const { return live_bytes_; }
  size_t chunks() const { return chunks_.size(); }

 private:
  struct Chunk {
    uintptr_t base;
    size_t size;
    std::map<size_t, size_t> free;  // offset → size, coalesced
  };
  bool carve(Chunk& c, size_t size, void*& out);

  ChunkAlloc alloc_;
  ChunkFree free_;
  size_t chunk_bytes_;
  std::vector<Chunk> chunks_;
  std::unordered_map<uintptr_t, size_t> live_;  // address → size
  size_t reserved_ = 0, live_bytes_ = 0;
};

}  // namespace sibyl::backend::cuda
