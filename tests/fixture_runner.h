// One fixture runner for the model tests of every backend (CPU, Vulkan, CUDA): a fixture's model
// and its Hugging Face reference, the ways to feed a sequence through a session (all must give
// the same logits), and the parameterised test cases over fixtures × feeds.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "engine/formats/safetensors.h"
#include "engine/model/session.h"
#include "fixture_util.h"

namespace sibyl::engine::test {

// A fixture's model on some backend and the reference logits of its sequences.
struct Fixture {
  std::shared_ptr<Model> model;
  std::unique_ptr<SafetensorsFile> ref;
  std::vector<int32_t> tokens(int seq) const { return i32_of(ref->at("seq" + std::to_string(seq) + ".tokens")); }
  std::vector<float> logits(int seq) const { return tensor("seq" + std::to_string(seq) + ".logits"); }
  std::vector<float> tensor(const std::string& name) const { return f32_of(ref->at(name)); }
};

// The reference of fixture `name` (relative to the test data): a fixture directory holds
// reference.safetensors; a GGUF file has <name>.reference.safetensors beside it (the exact logits
// of its dequantized weights).
inline std::string reference_of(const std::string& name) {
  return name.ends_with(".gguf") ? name.substr(0, name.size() - 5) + ".reference.safetensors"
                                 : name + "/reference.safetensors";
}

// Fixtures loaded once per process, by the key their loader gives (backend and name).
inline std::map<std::string, Fixture>& fixture_cache() {
  static std::map<std::string, Fixture> cache;
  return cache;
}

// `name` with the model `load(path)` makes of data_dir()/name and the reference `ref_name` (default:
// reference_of(name)); cached under `key`.
inline const Fixture& cached_fixture(const std::string& key, const std::string& name,
                                     const std::function<std::shared_ptr<Model>()>& load,
                                     const std::string& ref_name = "") {
  auto& cache = fixture_cache();
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  Fixture f;
  f.model = load();
  f.ref = std::make_unique<SafetensorsFile>(data_dir() + "/" + (ref_name.empty() ? reference_of(name) : ref_name));
  return cache.emplace(key, std::move(f)).first->second;
}

// Ways to feed a sequence through a session.
enum class Feed { prefill_expanded, prefill_absorbed, decode_absorbed, decode_expanded, chunks };
inline constexpr Feed kAllFeeds[] = {Feed::prefill_expanded, Feed::prefill_absorbed, Feed::decode_absorbed,
                                     Feed::decode_expanded, Feed::chunks};

// The logits of every position of `toks`, fed as `feed` says.
inline std::vector<float> run_feed(const Fixture& f, const std::vector<int32_t>& toks, Feed feed) {
  Session s(f.model, {});
  const int64_t n = static_cast<int64_t>(toks.size());
  std::vector<float> all;
  auto step = [&](int64_t begin, int64_t count, AttentionPath path) {
    s.append(toks.data() + begin, count, LogitsMode::all, path);
    all.insert(all.end(), s.logits().begin(), s.logits().end());
  };
  switch (feed) {
    case Feed::prefill_expanded: step(0, n, AttentionPath::expanded); break;
    case Feed::prefill_absorbed: step(0, n, AttentionPath::absorbed); break;
    case Feed::decode_absorbed:
      for (int64_t i = 0; i < n; ++i) step(i, 1, AttentionPath::absorbed);
      break;
    case Feed::decode_expanded:
      for (int64_t i = 0; i < n; ++i) step(i, 1, AttentionPath::expanded);
      break;
    case Feed::chunks:  // uneven chunks exercise prefill on top of a filled cache
      for (int64_t i = 0, c = 1; i < n; i += c, c = c * 2 + 1) step(i, std::min(c, n - i), AttentionPath::automatic);
      break;
  }
  return all;
}

// A parameterised case: one fixture fed one way.
struct FixtureCase {
  std::string fixture;
  Feed feed;
};

inline void PrintTo(const FixtureCase& c, std::ostream* os) { *os << c.fixture << " feed " << static_cast<int>(c.feed); }

// Every fixture × every feed.
inline std::vector<FixtureCase> fixture_cases(std::initializer_list<const char*> fixtures) {
  std::vector<FixtureCase> cases;
  for (const char* fx : fixtures)
    for (Feed feed : kAllFeeds) cases.push_back({fx, feed});
  return cases;
}

// The fixture and feed as a test name ("tiny_v3_PrefillExpanded").
inline std::string fixture_case_name(const ::testing::TestParamInfo<FixtureCase>& info) {
  static const char* feeds[] = {"PrefillExpanded", "PrefillAbsorbed", "DecodeAbsorbed", "DecodeExpanded", "Chunks"};
  std::string n = info.param.fixture + "_" + feeds[static_cast<int>(info.param.feed)];
  for (char& ch : n)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return n;
}

// The fixtures every backend is checked on (the CPU adds packs of them).
#define SIBYL_BACKEND_FIXTURES                                                                      \
  "tiny-v3", "tiny-v2-lite", "tiny-v2", "tiny-v3-fp8", "gguf/tiny-v3-q8_0.gguf", "gguf/tiny-v3-q6_k.gguf", \
      "gguf/tiny-v3-q4_k_m.gguf"

}  // namespace sibyl::engine::test
