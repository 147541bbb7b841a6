// Recorded steps (begin_step's replay key): the first step with a key is recorded into its own
// reusable command buffer; later steps with the key only count their ops and resubmit it. Step
// inputs change through write() before the ops, which then goes ahead of the step (xfer_).
#include <algorithm>

#include "backends/vulkan/vk_backend.h"

namespace sibyl::backend::vulkan {

using engine::Errc;
using engine::fail;

namespace {

constexpr uint64_t kFnvBasis = 14695981039346656037ull, kFnvPrime = 1099511628211ull;

uint64_t fnv(uint64_t h, const char* s) {
  for (; *s; ++s) h = (h ^ static_cast<uint8_t>(*s)) * kFnvPrime;
  return (h ^ 0xff) * kFnvPrime;  // an op boundary
}

bool before(const Range& a, const Range& b) {
  return a.buffer != b.buffer ? a.buffer < b.buffer : a.offset < b.offset;
}

// Sorted, disjoint: what overlaps() searches.
void merge_ranges(std::vector<Range>& v) {
  std::sort(v.begin(), v.end(), before);
  std::vector<Range> out;
  for (const Range& r : v) {
    if (!out.empty() && out.back().buffer == r.buffer && r.offset <= out.back().offset + out.back().size) {
      out.back().size = std::max(out.back().offset + out.back().size, r.offset + r.size) - out.back().offset;
      continue;
    }
    out.push_back(r);
  }
  v = std::move(out);
}

bool overlaps(const std::vector<Range>& sorted, const Range& r) {
  // The last interval starting before r's end is the only candidate (they are disjoint).
  auto it = std::lower_bound(sorted.begin(), sorted.end(), Range{r.buffer, r.offset + r.size, 0}, before);
  if (it == sorted.begin()) return false;
  --it;
  return it->buffer == r.buffer && it->offset + it->size > r.offset;
}

}  // namespace

void VulkanBackend::start_step_locked(uint64_t key) {
  mode_ = Mode::plain;
  rec_ = &step_;
  replay_ = nullptr;
  key_ = key;
  ops_started_ = poisoned_ = false;
  op_hash_ = kFnvBasis;
  n_ops_ = 0;
  if (key) {
    auto [it, fresh] = replays_.try_emplace(key);
    Replay& r = it->second;
    if (r.recorded) {
      mode_ = Mode::replaying;
      replay_ = &r;
    } else if (fresh) {
      try {
        r.rec = std::make_unique<Recorder>(dev_);
      } catch (...) {
        replays_.erase(it);
        throw;
      }
      r.rec->set_log(&r.uses);
      mode_ = Mode::recording;
      replay_ = &r;
      rec_ = r.rec.get();
      track_releases_ = true;
    }  // else a key whose steps cannot be replayed (they read or write mid-step): unrecorded
  }
  if (mode_ != Mode::replaying) rec_->begin(mode_ == Mode::recording);
  in_step_ = true;
}

bool VulkanBackend::note_op_locked(const char* what) {
  ops_started_ = true;
  op_hash_ = fnv(op_hash_, what);
  ++n_ops_;
  return mode_ != Mode::replaying;
}

void VulkanBackend::poison_locked() {
  poisoned_ = true;
  rec_->make_one_shot();
}

void VulkanBackend::submit_step_locked() {
  if (xfer_.open()) xfer_.submit();  // the inputs, ahead of the step in queue order
  const Mode mode = mode_;
  Replay* r = replay_;
  mode_ = Mode::plain;
  rec_ = &step_;
  replay_ = nullptr;
  if (mode == Mode::plain) {
    step_.submit();
    last_ = &step_;
    return;
  }
  if (mode == Mode::replaying) {
    if (n_ops_ != r->n_ops || op_hash_ != r->op_hash) {
      drop_locked(key_);
      fail(Errc::internal, "vulkan: a step begun with replay key " + std::to_string(key_) +
                               " enqueued other ops than the step recorded with it");
    }
    r->rec->resubmit();
    last_ = r->rec.get();
    return;
  }
  r->rec->set_log(nullptr);
  r->rec->submit();
  last_ = r->rec.get();
  if (poisoned_) {  // ran once; the key stays, unrecorded
    r->rec->wait();
    last_ = nullptr;
    {
      std::lock_guard lock(mem_mu_);
      for (const Alloc& a : r->scratch) mem_.free(a);
    }
    r->scratch.clear();
    r->spare.clear();
    r->uses.clear();
    r->rec.reset();
    return;
  }
  merge_ranges(r->uses);
  r->n_ops = n_ops_;
  r->op_hash = op_hash_;
  r->recorded = true;
}

void VulkanBackend::drop_locked(uint64_t key) {
  auto it = replays_.find(key);
  if (it == replays_.end()) return;
  Replay& r = it->second;
  if (r.rec) {
    r.rec->make_one_shot();
    r.rec->finish();
    if (last_ == r.rec.get()) last_ = nullptr;
  }
  {
    std::lock_guard lock(mem_mu_);
    for (const Alloc& a : r.scratch) mem_.free(a);
  }
  replays_.erase(it);
}

void VulkanBackend::check_released_locked() {
  std::vector<Range> freed;
  {
    std::lock_guard lock(mem_mu_);
    freed.swap(released_);
  }
  std::vector<uint64_t> stale;
  bool any = false;
  for (auto& [key, r] : replays_) {
    if (!r.rec) continue;
    if (std::any_of(freed.begin(), freed.end(), [&](const Range& f) { return overlaps(r.uses, f); }))
      stale.push_back(key);
    else
      any = true;
  }
  for (uint64_t key : stale) drop_locked(key);  // recorded again by the key's next step
  track_releases_ = any;
}

Alloc VulkanBackend::scratch(VkDeviceSize bytes, const char* what) {
  if (mode_ != Mode::recording) return temp(bytes, what);
  // A recording keeps its temporaries, reusing freed ones within the step (each layer asks
  // for the same sizes), so it holds about one layer's worth.
  Replay& r = *replay_;
  const VkDeviceSize need = (bytes + 15) / 16 * 16 + 16;  // as DeviceMemory::alloc rounds
  size_t best = r.spare.size();
  for (size_t k = 0; k < r.spare.size(); ++k) {
    const VkDeviceSize size = r.scratch[r.spare[k]].range.size;
    if (size >= need && (best == r.spare.size() || size < r.scratch[r.spare[best]].range.size)) best = k;
  }
  if (best != r.spare.size()) {
    const size_t index = r.spare[best];
    r.spare.erase(r.spare.begin() + static_cast<std::ptrdiff_t>(best));
    return r.scratch[index];
  }
  r.scratch.push_back(temp(bytes, what));
  return r.scratch.back();
}

void VulkanBackend::free_scratch(const Alloc& a) {
  if (mode_ != Mode::recording) {
    std::lock_guard lock(mem_mu_);
    mem_.free(a);  // never referenced by a recording: not logged
    return;
  }
  Replay& r = *replay_;
  for (size_t k = 0; k < r.scratch.size(); ++k)
    if (r.scratch[k].range.buffer == a.range.buffer && r.scratch[k].range.offset == a.range.offset) {
      r.spare.push_back(k);
      return;
    }
}

}  // namespace sibyl::backend::vulkan
