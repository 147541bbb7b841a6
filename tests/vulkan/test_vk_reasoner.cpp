// The embedded tiny-reasoner on the Vulkan backend reproduces every output of its public eval
// greedily (exact token ids), sharded so CTest can run the shards side by side.
#include <nlohmann/json.hpp>

#include "engine/formats/file_util.h"
#include "engine/chat/reasoning.h"
#include "engine/model/session.h"
#include "vk_test_util.h"

namespace sibyl::vktest {
namespace {

constexpr int kShards = 8;

std::string model_dir() { return data_dir() + "/../../models/tiny-reasoner"; }

const std::shared_ptr<engine::Model>& reasoner() {
  static std::shared_ptr<engine::Model> m;
  if (!m) {
    engine::ModelLoadOptions o;
    o.backend = backend::BackendKind::vulkan;
    m = engine::Model::load(model_dir(), o);
    at_teardown([] { m.reset(); });
  }
  return m;
}

class VkEvalShard : public ::testing::TestWithParam<int> {};

TEST_P(VkEvalShard, GreedyReplyEqualsReferenceIds) {
  SIBYL_REQUIRE_VULKAN();
  const auto& model = reasoner();
  const nlohmann::json results =
      nlohmann::json::parse(engine::read_text_file(model_dir() + "/eval.public.json"))["results"];
  for (size_t i = static_cast<size_t>(GetParam()); i < results.size(); i += kShards) {
    const nlohmann::json& r = results[i];
    const std::vector<engine::ChatMessage> messages = {{"user", r["question"].get<std::string>(), {}}};
    engine::Session s(model, {});
    std::string answer;
    const engine::ChatResult res =
        engine::run_chat(s, model->tokenizer(), model->chat_format(), messages, {},
                         [&](engine::Channel c, std::string_view piece) {
                           if (c == engine::Channel::answer) answer.append(piece);
                           return false;
                         });
    const std::vector<int32_t> generated(s.tokens().begin() + res.reused_tokens + res.prompt_tokens, s.tokens().end());
    ASSERT_EQ(generated, r["output_ids"].get<std::vector<int32_t>>()) << r["question"];
    EXPECT_NE(answer.find(r["key"].get<std::string>()), std::string::npos) << answer;
  }
}

INSTANTIATE_TEST_SUITE_P(TinyReasoner, VkEvalShard, ::testing::Range(0, kShards));

}  // namespace
}  // namespace sibyl::vktest
