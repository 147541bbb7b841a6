// A session's state as bytes: enough to continue it in another process without
// re-running its prompt. Layout (little-endian), version 1:
//   header  "SIBYLSES" | u32 version | u32 header bytes | u64 model fingerprint
//           u64 tokens | u32 layers | u32 row width | u32 logits rows | u32 vocab
//           u64 rng[4] | u64 seed | u64 max_context
//   tokens  i32 × tokens
//   logits  f32 × rows × vocab
//   latent  f32 × layers × tokens × width   (only the rows in use)
//   u64 XXH3-64 of everything before it
// Anything truncated, corrupt or from another model is Errc::format, before the
// session changes.
#include <xxhash.h>

#include <algorithm>
#include <cstring>

#include "engine/core/failure.h"
#include "engine/model/session.h"

namespace sibyl::engine {
namespace {

constexpr char kMagic[8] = {'S', 'I', 'B', 'Y', 'L', 'S', 'E', 'S'};
constexpr uint32_t kVersion = 1;

struct Header {
  char magic[8];
  uint32_t version, header_bytes;
  uint64_t fingerprint, tokens;
  uint32_t layers, width, logits_rows, vocab;
  uint64_t rng[4], seed, max_context;
};
static_assert(sizeof(Header) == 96, "the state header is packed by construction");

template <class T>
void put(std::vector<uint8_t>& out, const T* data, size_t n) {
  const size_t at = out.size(), bytes = n * sizeof(T);
  out.resize(at + bytes);
  if (bytes) std::memcpy(out.data() + at, data, bytes);
}

}  // namespace

std::vector<uint8_t> Session::save_state() {
  std::shared_ptr<Model> model = lock_model();
  const ModelConfig& c = model->config();
  std::lock_guard lock(model->step_mutex());
  mtp_catch_up(*model);  // the MTP rows of the last step that ran, so that the state carries them
  KvPages& kv = model->kv_pages();
  Header h{};
  std::memcpy(h.magic, kMagic, 8);
  h.version = kVersion;
  h.header_bytes = sizeof(Header);
  h.fingerprint = model->fingerprint();
  h.tokens = static_cast<uint64_t>(tokens_.size());
  // With MTP the layer's rows follow the model's (when they are level with the history).
  const int64_t layers = c.n_layers + (mtp_on_ && !tokens_.empty() && mtp_rows_ >= position() - 1 ? 1 : 0);
  h.layers = static_cast<uint32_t>(layers);
  h.width = static_cast<uint32_t>(c.kv_width());
  h.logits_rows = static_cast<uint32_t>(logits_rows_);
  h.vocab = static_cast<uint32_t>(vocab_);
  rng_.state(h.rng);
  h.seed = seed_;
  h.max_context = static_cast<uint64_t>(max_context_);

  std::vector<uint8_t> out;
  const size_t rows = tokens_.size();
  out.reserve(sizeof h + rows * 4 + logits_.size() * 4 + rows * layers * c.kv_width() * 4 + 8);
  put(out, &h, 1);
  put(out, tokens_.data(), rows);
  put(out, logits_.data(), logits_.size());
  const int64_t P = kv.page_tokens();
  std::vector<float> page(static_cast<size_t>(P * c.kv_width()));
  for (int64_t l = 0; l < layers; ++l)
    for (size_t slot = 0; slot * P < rows; ++slot) {
      const int64_t n = std::min<int64_t>(P, static_cast<int64_t>(rows - slot * P));
      model->backend()->read_kv_rows(kv.pool(), l, pages_.pages()[slot], n, page.data());
      if (l == c.n_layers && slot == 0)  // the MTP cache has no row at position 0
        std::fill_n(page.begin(), c.kv_width(), 0.0f);
      put(out, page.data(), static_cast<size_t>(n * c.kv_width()));
    }
  const uint64_t sum = XXH3_64bits(out.data(), out.size());
  put(out, &sum, 1);
  return out;
}

void Session::load_state(const uint8_t* data, size_t size) {
  std::shared_ptr<Model> model = lock_model();
  const ModelConfig& c = model->config();
  if (!data && size) fail(Errc::invalid_argument, "state data is NULL");
  Header h{};
  if (size < sizeof h + 8) fail(Errc::format, "session state: " + std::to_string(size) + " bytes is too short");
  std::memcpy(&h, data, sizeof h);
  if (std::memcmp(h.magic, kMagic, 8) != 0) fail(Errc::format, "session state: not a Sibyl session state");
  if (h.version != kVersion || h.header_bytes != sizeof h)
    fail(Errc::format, "session state: version " + std::to_string(h.version) +
                           " is not supported (this library "
                           "reads version 1)");
  uint64_t sum;
  std::memcpy(&sum, data + size - 8, 8);
  if (XXH3_64bits(data, size - 8) != sum) fail(Errc::format, "session state: checksum mismatch (corrupt or truncated)");
  // A state may carry the MTP layer's rows after the model's; a model without MTP skips them.
  const bool saved_mtp = h.layers == c.n_layers + 1, mtp_rows = saved_mtp && model->has_mtp();
  if (h.fingerprint != model->fingerprint() || (h.layers != c.n_layers && !saved_mtp) || h.width != c.kv_width() ||
      h.vocab != vocab_)
    fail(Errc::format, "session state: it belongs to a different model (fingerprint or shapes differ)");
  const uint64_t width = h.width, layers = h.layers;
  if (h.tokens > static_cast<uint64_t>(max_context_) || h.logits_rows > h.tokens)
    fail(Errc::format, "session state: " + std::to_string(h.tokens) +
                           " tokens do not fit this session's max_context of " + std::to_string(max_context_));
  const uint64_t expected =
      sizeof h + h.tokens * 4 + uint64_t{h.logits_rows} * h.vocab * 4 + layers * h.tokens * width * 4 + 8;
  if (expected != size)
    fail(Errc::format, "session state: " + std::to_string(size) + " bytes, expected " + std::to_string(expected));
  const uint8_t* p = data + sizeof h;
  std::vector<int32_t> tokens(h.tokens);
  std::memcpy(tokens.data(), p, tokens.size() * 4);
  p += tokens.size() * 4;
  for (size_t i = 0; i < tokens.size(); ++i)
    if (tokens[i] < 0 || tokens[i] >= vocab_)
      fail(Errc::format, "session state: token " + std::to_string(i) + " is invalid");
  std::vector<float> logits(uint64_t{h.logits_rows} * h.vocab);
  std::memcpy(logits.data(), p, logits.size() * 4);
  p += logits.size() * 4;

  // Everything checks out: take pages, fill them, then switch the session over.
  std::lock_guard lock(model->step_mutex());
  KvPages& kv = model->kv_pages();
  SeqPages fresh;
  std::vector<PageCopy> unused;
  if (!fresh.prepare_write(kv, 0, static_cast<int64_t>(h.tokens), unused)) {
    fail(Errc::out_of_memory, "session state: " + std::to_string(h.tokens) +
                                  " tokens need more pages than the pool has free (" + kv.describe() + ", " +
                                  std::to_string(kv.pages_in_use()) + " in use)");
  }
  const int64_t P = kv.page_tokens();
  try {
    for (uint64_t l = 0; l < layers; ++l)
      for (size_t slot = 0; slot * P < h.tokens; ++slot) {
        const int64_t n = std::min<int64_t>(P, static_cast<int64_t>(h.tokens - slot * P));
        std::vector<float> rows(static_cast<size_t>(n) * width);
        std::memcpy(rows.data(), p, rows.size() * 4);
        p += rows.size() * 4;
        if (l == static_cast<uint64_t>(c.n_layers) && !mtp_rows) continue;
        model->backend()->write_kv_rows(kv.pool(), static_cast<int64_t>(l), fresh.pages()[slot], n, rows.data());
      }
  } catch (...) {
    fresh.release(kv);
    throw;
  }
  pages_.release(kv);
  pages_ = std::move(fresh);
  tokens_ = std::move(tokens);
  logits_ = std::move(logits);
  logits_rows_ = h.logits_rows;
  rng_.set_state(h.rng);
  seed_ = h.seed;
  shareable_ = false;
  // The MTP rows came with the state (or, without them, MTP stays idle for this history);
  // h_{position-1} is recomputed by the next feed.
  mtp_rows_ = mtp_rows && !tokens_.empty() ? position() - 1 : 0;
  draft_ = -1;
  holding_ = false;
  hidden_.clear();
  hidden_pos_ = 0;
}

}  // namespace sibyl::engine
