// GGUF import: metadata → config equal to the Hugging Face config the file was made from,
// V2-style files (no q-LoRA, softmax and group-limited routing, the older attn_kv_b as well as
// the split attn_k_b/attn_v_b) written here from the fixtures match their references, the
// tokenizer stored in GGUF tokenizes like tokenizer.json, and unsupported files say why.
#include <gtest/gtest.h>

#include <cstring>
#include <nlohmann/json.hpp>

#include "engine/formats/file_util.h"
#include "fixture_util.h"
#include "engine/model/model.h"
#include "engine/formats/model_source.h"
#include "mtp_logits.h"
#include "engine/model/session.h"
#include "test_files.h"

namespace sibyl::engine::test {
namespace {

using nlohmann::json;
using sibyl_test::TempDir;

template <class T>
std::string le(T v) {
  std::string s(sizeof(T), '\0');
  std::memcpy(s.data(), &v, sizeof(T));
  return s;
}
std::string gstr(std::string_view s) { return le<uint64_t>(s.size()) + std::string(s); }

// A GGUF writer laid out the way llama.cpp's convert_hf_to_gguf.py writes deepseek2 files
// (F32 tensors, so the file computes exactly what the checkpoint does).
class GgufWriter {
 public:
  void u32(const std::string& k, uint32_t v) { kv(k, 4, le(v)); }
  void f32(const std::string& k, float v) { kv(k, 6, le(v)); }
  void boolean(const std::string& k, bool v) { kv(k, 7, le<uint8_t>(v)); }
  void str(const std::string& k, const std::string& v) { kv(k, 8, gstr(v)); }
  // dims in GGUF order (fastest first); float32 values.
  void tensor(const std::string& name, std::vector<int64_t> dims, const std::vector<float>& values, uint32_t type = 0) {
    while (data_.size() % 32) data_.push_back('\0');
    std::string info = gstr(name) + le<uint32_t>(static_cast<uint32_t>(dims.size()));
    for (int64_t d : dims) info += le(d);
    infos_.push_back(info + le(type) + le<uint64_t>(data_.size()));
    data_.append(reinterpret_cast<const char*>(values.data()), values.size() * 4);
  }
  std::string bytes() const {
    std::string s = "GGUF" + le<uint32_t>(3) + le<uint64_t>(infos_.size()) + le<uint64_t>(kvs_.size());
    for (const auto& k : kvs_) s += k;
    for (const auto& t : infos_) s += t;
    s.resize((s.size() + 31) / 32 * 32, '\0');
    return s + data_;
  }

 private:
  void kv(const std::string& k, uint32_t type, const std::string& payload) { kvs_.push_back(gstr(k) + le(type) + payload); }
  std::vector<std::string> kvs_, infos_;
  std::string data_;
};

std::vector<float> floats_of(const TensorView& t) {
  std::vector<float> v(static_cast<size_t>(t.numel()));
  for (size_t i = 0; i < v.size(); ++i) {
    if (t.dtype == DType::bf16) {
      uint16_t h;
      std::memcpy(&h, t.data + 2 * i, 2);
      v[i] = bf16_to_f32(h);
    } else {
      std::memcpy(&v[i], t.data + 4 * i, 4);
    }
  }
  return v;
}

// An HF fixture directory rewritten as a deepseek2 GGUF; `split_kv_b` picks the newer
// attn_k_b/attn_v_b form (else attn_kv_b).
std::string gguf_from_hf(const std::string& dir, bool split_kv_b) {
  auto src = open_hf_directory(dir);
  const ModelConfig& c = src->config;
  auto t = [&](const std::string& n) { return floats_of(src->tensors.at(n)); };
  GgufWriter w;
  w.str("general.architecture", "deepseek2");
  const int64_t nextn = c.num_nextn_predict_layers;  // MTP blocks follow, counted in block_count
  w.u32("deepseek2.block_count", static_cast<uint32_t>(c.n_layers + nextn));
  if (nextn) w.u32("deepseek2.nextn_predict_layers", static_cast<uint32_t>(nextn));
  w.u32("deepseek2.context_length", static_cast<uint32_t>(c.max_position_embeddings));
  w.u32("deepseek2.embedding_length", static_cast<uint32_t>(c.hidden_size));
  w.u32("deepseek2.feed_forward_length", static_cast<uint32_t>(c.intermediate_size));
  w.u32("deepseek2.attention.head_count", static_cast<uint32_t>(c.n_heads));
  w.u32("deepseek2.attention.head_count_kv", split_kv_b ? 1 : static_cast<uint32_t>(c.n_heads));
  w.f32("deepseek2.rope.freq_base", static_cast<float>(c.rope.theta));
  w.f32("deepseek2.attention.layer_norm_rms_epsilon", static_cast<float>(c.rms_norm_eps));
  w.u32("deepseek2.expert_count", static_cast<uint32_t>(c.n_routed_experts));
  w.u32("deepseek2.expert_used_count", static_cast<uint32_t>(c.n_experts_per_tok));
  w.u32("deepseek2.expert_group_count", static_cast<uint32_t>(c.n_group));
  w.u32("deepseek2.expert_group_used_count", static_cast<uint32_t>(c.topk_group));
  w.u32("deepseek2.expert_gating_func", c.scoring == ScoringFunc::sigmoid ? 2 : 1);
  w.u32("deepseek2.leading_dense_block_count", static_cast<uint32_t>(c.first_k_dense_replace));
  w.u32("deepseek2.vocab_size", static_cast<uint32_t>(c.vocab_size));
  if (c.q_lora_rank) w.u32("deepseek2.attention.q_lora_rank", static_cast<uint32_t>(c.q_lora_rank));
  w.u32("deepseek2.attention.kv_lora_rank", static_cast<uint32_t>(c.kv_lora_rank));
  const auto dn = c.qk_nope_head_dim, dr = c.qk_rope_head_dim, dv = c.v_head_dim, R = c.kv_lora_rank;
  if (split_kv_b) {
    w.u32("deepseek2.attention.key_length", static_cast<uint32_t>(R + dr));
    w.u32("deepseek2.attention.value_length", static_cast<uint32_t>(R));
    w.u32("deepseek2.attention.key_length_mla", static_cast<uint32_t>(dn + dr));
    w.u32("deepseek2.attention.value_length_mla", static_cast<uint32_t>(dv));
  } else {
    w.u32("deepseek2.attention.key_length", static_cast<uint32_t>(dn + dr));
    w.u32("deepseek2.attention.value_length", static_cast<uint32_t>(dv));
  }
  w.u32("deepseek2.expert_feed_forward_length", static_cast<uint32_t>(c.moe_intermediate_size));
  w.u32("deepseek2.expert_shared_count", static_cast<uint32_t>(c.n_shared_experts));
  w.f32("deepseek2.expert_weights_scale", static_cast<float>(c.routed_scaling_factor));
  w.boolean("deepseek2.expert_weights_norm", c.norm_topk_prob);
  w.u32("deepseek2.rope.dimension_count", static_cast<uint32_t>(dr));
  if (c.rope.yarn) {
    w.str("deepseek2.rope.scaling.type", "yarn");
    w.f32("deepseek2.rope.scaling.factor", static_cast<float>(c.rope.factor));
    w.u32("deepseek2.rope.scaling.original_context_length", static_cast<uint32_t>(c.rope.original_max_position_embeddings));
    w.f32("deepseek2.rope.scaling.yarn_log_multiplier", static_cast<float>(0.1 * c.rope.mscale_all_dim));
  }
  const int64_t H = c.hidden_size;
  w.tensor("token_embd.weight", {H, c.vocab_size}, t("model.embed_tokens.weight"));
  w.tensor("output_norm.weight", {H}, t("model.norm.weight"));
  w.tensor("output.weight", {H, c.vocab_size}, t("lm_head.weight"));
  for (int64_t l = 0; l < c.n_layers + nextn; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".", b = "blk." + std::to_string(l) + ".";
    if (l >= c.n_layers) {  // as llama.cpp names them; the copies of embedding and head left out
      w.tensor(b + "nextn.eh_proj.weight", {2 * H, H}, t(p + "eh_proj.weight"));
      w.tensor(b + "nextn.enorm.weight", {H}, t(p + "enorm.weight"));
      w.tensor(b + "nextn.hnorm.weight", {H}, t(p + "hnorm.weight"));
      w.tensor(b + "nextn.shared_head_norm.weight", {H}, t(p + "shared_head.norm.weight"));
    }
    w.tensor(b + "attn_norm.weight", {H}, t(p + "input_layernorm.weight"));
    w.tensor(b + "ffn_norm.weight", {H}, t(p + "post_attention_layernorm.weight"));
    const int64_t qk = c.n_heads * (dn + dr);
    if (c.q_lora_rank) {
      w.tensor(b + "attn_q_a.weight", {H, c.q_lora_rank}, t(p + "self_attn.q_a_proj.weight"));
      w.tensor(b + "attn_q_a_norm.weight", {c.q_lora_rank}, t(p + "self_attn.q_a_layernorm.weight"));
      w.tensor(b + "attn_q_b.weight", {c.q_lora_rank, qk}, t(p + "self_attn.q_b_proj.weight"));
    } else {
      w.tensor(b + "attn_q.weight", {H, qk}, t(p + "self_attn.q_proj.weight"));
    }
    w.tensor(b + "attn_kv_a_mqa.weight", {H, R + dr}, t(p + "self_attn.kv_a_proj_with_mqa.weight"));
    w.tensor(b + "attn_kv_a_norm.weight", {R}, t(p + "self_attn.kv_a_layernorm.weight"));
    const std::vector<float> kv_b = t(p + "self_attn.kv_b_proj.weight");  // [heads·(dn+dv), R]
    if (split_kv_b) {
      std::vector<float> k_b, v_b;  // [heads, R, dn], [heads, dv, R]
      for (int64_t h = 0; h < c.n_heads; ++h) {
        for (int64_t r = 0; r < R; ++r)
          for (int64_t n = 0; n < dn; ++n) k_b.push_back(kv_b[(h * (dn + dv) + n) * R + r]);
        for (int64_t j = 0; j < dv; ++j)
          for (int64_t r = 0; r < R; ++r) v_b.push_back(kv_b[(h * (dn + dv) + dn + j) * R + r]);
      }
      w.tensor(b + "attn_k_b.weight", {dn, R, c.n_heads}, k_b);
      w.tensor(b + "attn_v_b.weight", {R, dv, c.n_heads}, v_b);
    } else {
      w.tensor(b + "attn_kv_b.weight", {R, c.n_heads * (dn + dv)}, kv_b);
    }
    w.tensor(b + "attn_output.weight", {c.n_heads * dv, H}, t(p + "self_attn.o_proj.weight"));
    if (l < c.first_k_dense_replace) {
      w.tensor(b + "ffn_gate.weight", {H, c.intermediate_size}, t(p + "mlp.gate_proj.weight"));
      w.tensor(b + "ffn_up.weight", {H, c.intermediate_size}, t(p + "mlp.up_proj.weight"));
      w.tensor(b + "ffn_down.weight", {c.intermediate_size, H}, t(p + "mlp.down_proj.weight"));
      continue;
    }
    w.tensor(b + "ffn_gate_inp.weight", {H, c.n_routed_experts}, t(p + "mlp.gate.weight"));
    if (c.topk_method == TopkMethod::noaux_tc)
      w.tensor(b + "exp_probs_b.bias", {c.n_routed_experts}, t(p + "mlp.gate.e_score_correction_bias"));
    const int64_t I = c.moe_intermediate_size;
    for (const char* proj : {"gate", "up", "down"}) {
      std::vector<float> stacked;
      for (int64_t e = 0; e < c.n_routed_experts; ++e) {
        auto x = t(p + "mlp.experts." + std::to_string(e) + "." + proj + "_proj.weight");
        stacked.insert(stacked.end(), x.begin(), x.end());
      }
      const bool down = std::string(proj) == "down";
      w.tensor(b + "ffn_" + proj + "_exps.weight", {down ? I : H, down ? H : I, c.n_routed_experts}, stacked);
      const int64_t S = I * c.n_shared_experts;
      w.tensor(b + "ffn_" + proj + "_shexp.weight", {down ? S : H, down ? H : S},
               t(p + "mlp.shared_experts." + proj + "_proj.weight"));
    }
  }
  return w.bytes();
}

void expect_configs_equal(const ModelConfig& a, const ModelConfig& b) {
  EXPECT_EQ(a.family, b.family);
  EXPECT_EQ(a.vocab_size, b.vocab_size);
  EXPECT_EQ(a.hidden_size, b.hidden_size);
  EXPECT_EQ(a.intermediate_size, b.intermediate_size);
  EXPECT_EQ(a.n_layers, b.n_layers);
  EXPECT_EQ(a.n_heads, b.n_heads);
  EXPECT_EQ(a.q_lora_rank, b.q_lora_rank);
  EXPECT_EQ(a.kv_lora_rank, b.kv_lora_rank);
  EXPECT_EQ(a.qk_nope_head_dim, b.qk_nope_head_dim);
  EXPECT_EQ(a.qk_rope_head_dim, b.qk_rope_head_dim);
  EXPECT_EQ(a.v_head_dim, b.v_head_dim);
  EXPECT_EQ(a.max_position_embeddings, b.max_position_embeddings);
  EXPECT_EQ(a.rms_norm_eps, b.rms_norm_eps);
  EXPECT_EQ(a.n_routed_experts, b.n_routed_experts);
  EXPECT_EQ(a.n_shared_experts, b.n_shared_experts);
  EXPECT_EQ(a.moe_intermediate_size, b.moe_intermediate_size);
  EXPECT_EQ(a.n_experts_per_tok, b.n_experts_per_tok);
  EXPECT_EQ(a.first_k_dense_replace, b.first_k_dense_replace);
  EXPECT_EQ(a.n_group, b.n_group);
  EXPECT_EQ(a.topk_group, b.topk_group);
  EXPECT_EQ(a.norm_topk_prob, b.norm_topk_prob);
  EXPECT_EQ(a.routed_scaling_factor, b.routed_scaling_factor);
  EXPECT_EQ(a.scoring, b.scoring);
  EXPECT_EQ(a.topk_method, b.topk_method);
  EXPECT_EQ(a.bos_token_id, b.bos_token_id);
  EXPECT_EQ(a.eos_token_ids, b.eos_token_ids);
  EXPECT_EQ(a.rope.yarn, b.rope.yarn);
  EXPECT_EQ(a.rope.theta, b.rope.theta);
  EXPECT_EQ(a.rope.factor, b.rope.factor);
  EXPECT_EQ(a.rope.beta_fast, b.rope.beta_fast);
  EXPECT_EQ(a.rope.beta_slow, b.rope.beta_slow);
  EXPECT_EQ(a.rope.mscale_all_dim, b.rope.mscale_all_dim);
  EXPECT_EQ(a.rope.original_max_position_embeddings, b.rope.original_max_position_embeddings);
  EXPECT_EQ(a.rope.interleaved, b.rope.interleaved);
}

// llama.cpp's own files: the config read from GGUF metadata is the checkpoint's.
TEST(GgufImport, MetadataGivesTheCheckpointsConfig) {
  for (const char* file : {"tiny-v3-q8_0.gguf", "tiny-v3-q4_k_m.gguf"}) {
    SCOPED_TRACE(file);
    expect_configs_equal(open_gguf(data_dir() + "/gguf/" + file)->config,
                         load_model_config(data_dir() + "/tiny-v3/config.json"));
  }
  expect_configs_equal(open_gguf(data_dir() + "/gguf/tiny-reasoner-bf16.gguf")->config,
                       load_model_config(sibyl_test::reasoner_dir() + "/config.json"));
}

TEST(GgufImport, TokenizerFromMetadataTokenizesLikeTokenizerJson) {
  auto gguf = Model::load(data_dir() + "/gguf/tiny-reasoner-bf16.gguf", {});
  auto hf = Model::load(sibyl_test::reasoner_dir(), {});
  const json cases = json::parse(read_text_file(data_dir() + "/tokenizers/tiny-reasoner/tokenize.public.json"));
  int checked = 0;
  for (const json& c : cases["cases"]) {
    const std::string text = c["text"];
    const auto ids = gguf->tokenizer().encode(text);
    EXPECT_EQ(ids, hf->tokenizer().encode(text)) << text;
    EXPECT_EQ(ids, c["ids"].get<std::vector<int32_t>>()) << text;
    EXPECT_EQ(gguf->tokenizer().decode(ids), text);
    ++checked;
  }
  EXPECT_GT(checked, 100);
  EXPECT_EQ(gguf->chat_format().name(), "tiny-reasoner");
}

struct V2Case {
  const char* fixture;
  bool split_kv_b;
};

class GgufV2Style : public ::testing::TestWithParam<V2Case> {};

// V2 and V2-Lite shapes (no q-LoRA, softmax, greedy and group-limited routing) in both
// attention layouts: decode and prefill match the fixture's reference.
TEST_P(GgufV2Style, MatchesReference) {
  const V2Case& p = GetParam();
  TempDir tmp;
  const auto path = tmp.path() / "model.gguf";
  sibyl_test::write_file(path, gguf_from_hf(data_dir() + "/" + p.fixture, p.split_kv_b));
  auto model = Model::load(path.string(), {});
  SafetensorsFile ref(data_dir() + "/" + p.fixture + "/reference.safetensors");
  for (int seq = 0; seq < 4; ++seq) {
    const auto toks = i32_of(ref.at("seq" + std::to_string(seq) + ".tokens"));
    const auto want = f32_of(ref.at("seq" + std::to_string(seq) + ".logits"));
    for (AttentionPath path_kind : {AttentionPath::expanded, AttentionPath::absorbed}) {
      Session s(model, {});
      s.append(toks.data(), static_cast<int64_t>(toks.size()), LogitsMode::all, path_kind);
      EXPECT_LT(relative_error(s.logits(), want), 1e-4) << p.fixture << " seq" << seq;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GgufV2Style,
                         ::testing::Values(V2Case{"tiny-v2-lite", false}, V2Case{"tiny-v2-lite", true},
                                           V2Case{"tiny-v2", false}, V2Case{"tiny-v2", true},
                                           V2Case{"tiny-v3", true}),
                         [](const auto& info) {
                           std::string n = std::string(info.param.fixture) + (info.param.split_kv_b ? "_split" : "_kv_b");
                           for (char& ch : n)
                             if (ch == '-') ch = '_';
                           return n;
                         });

// The tiny-reasoner's MTP layer as llama.cpp names it (blk.4.nextn.*, block_count 5): the MTP
// logits match the reference; without MTP the same file loads and ignores the block.
TEST(GgufImport, MtpBlockLoadsAndMatchesTheReference) {
  TempDir tmp;
  const auto path = tmp.path() / "reasoner.gguf";
  sibyl_test::write_file(path, gguf_from_hf(data_dir() + "/../../models/tiny-reasoner", true));
  ModelLoadOptions o;
  o.backend_options.precision = backend::Precision::exact;
  auto model = Model::load(path.string(), o);
  EXPECT_EQ(model->config().n_layers, 4);
  EXPECT_EQ(model->config().num_nextn_predict_layers, 1);
  ASSERT_TRUE(model->has_mtp());
  SafetensorsFile ref(data_dir() + "/tiny-reasoner-mtp/mtp.reference.safetensors");
  const auto toks = i32_of(ref.at("seq0.tokens"));
  EXPECT_LT(max_abs_diff(mtp_logits_of(model, toks, 1000), f32_of(ref.at("seq0.mtp_logits"))), 1e-4);
  o.mtp = false;
  EXPECT_FALSE(Model::load(path.string(), o)->has_mtp());
}

// ---- files Sibyl cannot run say why ----

std::string minimal_gguf(const std::string& arch, uint32_t tensor_type) {
  GgufWriter w;
  w.str("general.architecture", arch);
  std::vector<float> block(32, 0.0f);
  w.tensor("token_embd.weight", {32, 1}, block, tensor_type);
  return w.bytes();
}

TEST(GgufImport, OtherArchitectureIsUnsupportedNamingIt) {
  TempDir tmp;
  sibyl_test::write_file(tmp.path() / "m.gguf", minimal_gguf("llama", 0));
  std::string msg;
  EXPECT_EQ(error_of([&] { Model::load((tmp.path() / "m.gguf").string(), {}); }, &msg), Errc::unsupported);
  EXPECT_NE(msg.find("llama"), std::string::npos) << msg;
  EXPECT_NE(msg.find("deepseek2"), std::string::npos) << msg;
}

TEST(GgufImport, MissingMetadataIsAFormatErrorNamingTheKey) {
  TempDir tmp;
  sibyl_test::write_file(tmp.path() / "m.gguf", minimal_gguf("deepseek2", 0));
  std::string msg;
  EXPECT_EQ(error_of([&] { open_gguf((tmp.path() / "m.gguf").string()); }, &msg), Errc::format);
  EXPECT_NE(msg.find("deepseek2.block_count"), std::string::npos) << msg;
}

TEST(GgufImport, UnsupportedQuantTypeIsNamed) {
  TempDir tmp;
  std::string bytes = gguf_from_hf(data_dir() + "/tiny-v2-lite", true);
  // Re-type output_norm.weight (F32, 256 values = 1024 bytes) as Q4_0 (8 blocks · 18 bytes):
  // the reader accepts the smaller extent, the importer must refuse the type by name.
  const std::string name = gstr("output_norm.weight");
  const size_t at = bytes.find(name);
  ASSERT_NE(at, std::string::npos);
  const size_t type_at = at + name.size() + 4 + 8;  // n_dims, one dim
  const uint32_t q4_0 = 2;
  std::memcpy(bytes.data() + type_at, &q4_0, 4);
  sibyl_test::write_file(tmp.path() / "m.gguf", bytes);
  std::string msg;
  EXPECT_EQ(error_of([&] { Model::load((tmp.path() / "m.gguf").string(), {}); }, &msg), Errc::unsupported);
  EXPECT_NE(msg.find("Q4_0"), std::string::npos) << msg;
  EXPECT_NE(msg.find("output_norm.weight"), std::string::npos) << msg;
}

}  // namespace
}  // namespace sibyl::engine::test
