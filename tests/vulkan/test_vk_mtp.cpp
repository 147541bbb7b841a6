// The tiny-reasoner's MTP layer on the Vulkan backend: its logits against the reference
// (tests/data/tiny-reasoner-mtp), decode rows and one prefill (the expanded attention path).
#include "../mtp_logits.h"
#include "../fixture_util.h"
#include "vk_test_util.h"

namespace sibyl::vktest {
namespace {

TEST(VkMtp, LogitsMatchTheReference) {
  SIBYL_REQUIRE_VULKAN();
  engine::ModelLoadOptions o;
  o.backend = backend::BackendKind::vulkan;
  auto m = engine::Model::load(data_dir() + "/../../models/tiny-reasoner", o);
  ASSERT_TRUE(m->has_mtp());
  engine::SafetensorsFile ref(data_dir() + "/tiny-reasoner-mtp/mtp.reference.safetensors");
  for (int i : {0, 7, 15}) {
    const std::vector<float> want = engine::test::f32_of(ref.at("seq" + std::to_string(i) + ".mtp_logits"));
    const std::vector<int32_t> t = engine::test::i32_of(ref.at("seq" + std::to_string(i) + ".tokens"));
    for (int64_t chunk : {int64_t{1}, int64_t{1000}})
      EXPECT_LT(engine::test::max_abs_diff(engine::test::mtp_logits_of(m, t, chunk), want), 1e-4)
          << "seq" << i << " chunk " << chunk;
  }
}

}  // namespace
}  // namespace sibyl::vktest
