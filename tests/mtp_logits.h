// The MTP layer's logits for every position of a token sequence (shared by the CPU and
// Vulkan suites): the main model over all of them, then the MTP layer over rows p = 1 … T-1
// (token t_p with the main model's hidden h_{p-1}) in chunks of `chunk` rows. Row j of the
// result predicts token j + 2, as mtp.reference.safetensors does.
#pragma once
#include <algorithm>
#include <cmath>
#include <memory>
#include <mutex>
#include <vector>

#include "engine/model/session.h"

namespace sibyl::engine::test {

inline std::vector<float> mtp_logits_of(const std::shared_ptr<Model>& m, const std::vector<int32_t>& tokens,
                                        int64_t chunk) {
  Session s(m, {});
  const auto T = static_cast<int64_t>(tokens.size());
  const int64_t H = m->config().hidden_size;
  std::lock_guard lock(m->step_mutex());
  std::vector<PageCopy> copies;
  if (!s.reserve(*m, T, copies)) return {};
  std::vector<float> logits, hidden, out;
  m->forward({s.step_for(tokens.data(), T, LogitsMode::none, AttentionPath::automatic)}, logits, nullptr, &hidden);
  s.commit(*m, tokens.data(), T, logits.data(), 0);
  for (int64_t p = 1; p < T; p += chunk) {
    SeqStep q = s.step_for(tokens.data() + p, std::min(chunk, T - p), LogitsMode::all, AttentionPath::automatic);
    q.pos0 = p;
    q.hidden = hidden.data() + (p - 1) * H;
    m->forward_mtp({q}, logits);
    out.insert(out.end(), logits.begin(), logits.end());
  }
  return out;
}

inline double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return INFINITY;
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(static_cast<double>(a[i]) - b[i]));
  return m;
}

}  // namespace sibyl::engine::test
