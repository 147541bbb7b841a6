// sibyl-synth: writes a .sibyl pack of random weights at real DeepSeek shapes (default
// DeepSeek-V2-Lite), for load-time, memory and speed benchmarks without downloading a model.
// Quantized blocks are written directly (random codes, fixed sane scales): generating a
// 16-billion-parameter model takes about as long as writing its bytes.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>

#include <nlohmann/json.hpp>

#include "engine/chat/chat_format.h"
#include "cli_args.h"
#include "engine/model/config.h"
#include "engine/formats/convert.h"
#include "engine/core/failure.h"
#include "engine/formats/file_util.h"
#include "engine/formats/pack.h"
#include "engine/core/quant.h"
#include "engine/model/weights.h"

static const char* kUsage =
    "usage: sibyl-synth OUTPUT.sibyl [--config config.json] [--layers N] [--quant bf16|q8_0|q4_k] [--seed S]\n"
    "                   [--tokenizer DIR [--chat-template NAME]]\n"
    "Random weights at the shapes of --config (a Hugging Face config.json; default: DeepSeek-V2-Lite).\n"
    "--layers   keep only the first N layers (default: all)\n"
    "--quant    bf16 (default); q8_0; q4_k = routed experts Q4_K, other matrices Q8_0\n"
    "           (rows that are not whole blocks fall back as in sibyl-convert: Q4_K->Q5_0->Q8_0->BF16)\n"
    "--tokenizer  a directory with tokenizer.json and tokenizer_config.json to pack (text and chat work);\n"
    "           its vocabulary must fit the config's vocab_size\n"
    "--chat-template  deepseek-v3, deepseek-r1 or tiny-reasoner: pack that template instead of DIR's;\n"
    "           deepseek-r1 on a vocabulary without <think> renames its placeholder tokens 128798 and\n"
    "           128799 to <think> and </think>, as DeepSeek-R1's tokenizer does\n";

namespace {

// DeepSeek-V2-Lite's published config.json (the fields Sibyl reads).
constexpr const char* kV2LiteConfig = R"({
  "model_type": "deepseek_v2", "vocab_size": 102400, "hidden_size": 2048, "intermediate_size": 10944,
  "num_hidden_layers": 27, "num_attention_heads": 16, "q_lora_rank": null, "kv_lora_rank": 512,
  "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128, "max_position_embeddings": 163840,
  "rms_norm_eps": 1e-06, "n_routed_experts": 64, "n_shared_experts": 2, "moe_intermediate_size": 1408,
  "num_experts_per_tok": 6, "first_k_dense_replace": 1, "moe_layer_freq": 1, "n_group": 1, "topk_group": 1,
  "topk_method": "greedy", "scoring_func": "softmax", "norm_topk_prob": false, "routed_scaling_factor": 1.0,
  "bos_token_id": 100000, "eos_token_id": 100001, "rope_theta": 10000,
  "rope_scaling": {"type": "yarn", "factor": 40, "original_max_position_embeddings": 4096, "beta_fast": 32,
                   "beta_slow": 1, "mscale": 0.707, "mscale_all_dim": 0.707}
})";

struct Rng {  // xorshift64*: fast and good enough for noise
  uint64_t s;
  uint64_t next() {
    s ^= s >> 12, s ^= s << 25, s ^= s >> 27;
    return s * 2685821657736338717ull;
  }
  void fill(uint8_t* p, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
      const uint64_t v = next();
      std::memcpy(p + i, &v, 8);
    }
    for (; i < n; ++i) p[i] = static_cast<uint8_t>(next());
  }
};

// Random bytes for a whole tensor, then each block's scale fields set so that values stay
// within a trained model's range (|w| ≲ 0.05).
void random_tensor(Rng& rng, sibyl::engine::DType t, int64_t rows, int64_t cols, std::vector<uint8_t>& out) {
  using sibyl::engine::DType;
  const size_t rb = sibyl::engine::row_bytes(t, cols);
  out.resize(static_cast<size_t>(rows) * rb);
  rng.fill(out.data(), out.size());
  const uint16_t small = sibyl::engine::f32_to_f16(0.0004f);
  const size_t bb = sibyl::engine::block_bytes(t), blocks = out.size() / bb;
  for (size_t b = 0; b < blocks; ++b) {
    uint8_t* block = out.data() + b * bb;
    switch (t) {
      case DType::q8_0:                                                          // d · int8
      case DType::q5_0: std::memcpy(block, &small, 2); break;                    // d · (q − 16)
      case DType::q4_k: std::memcpy(block, &small, 2), std::memcpy(block + 2, &small, 2); break;  // d, dmin
      case DType::bf16:
        for (size_t i = 0; i < bb; i += 2) {  // ±[2^-8, 2^-4): exponent fixed, mantissa and sign random
          uint16_t v = static_cast<uint16_t>((block[i] | block[i + 1] << 8) & 0x81ff);
          v = static_cast<uint16_t>(v | (static_cast<uint16_t>(119 + (v & 3)) << 7));
          std::memcpy(block + i, &v, 2);
        }
        break;
      default: break;
    }
  }
}

// The pack's tokenizer with the known chat template `name` (for R1: <think> tokens, as R1 has).
void with_template(const std::string& name, sibyl::engine::PackMetadata& meta, const sibyl::cli::Args& args) {
  using nlohmann::ordered_json;
  const std::string_view text = sibyl::engine::ChatFormat::known_template(name);
  if (text.empty()) args.die("--chat-template must be deepseek-v3, deepseek-r1 or tiny-reasoner");
  ordered_json config = ordered_json::parse(meta.tokenizer_config_json);
  config["chat_template"] = std::string(text);
  meta.tokenizer_config_json = config.dump(2);
  if (name != "deepseek-r1") return;
  ordered_json tok = ordered_json::parse(meta.tokenizer_json);
  bool has_think = false;
  for (const auto& t : tok["added_tokens"]) has_think |= t["content"] == "<think>";
  if (has_think) return;
  int renamed = 0;
  for (auto& t : tok["added_tokens"])
    if ((t["id"] == 128798 || t["id"] == 128799) && t["content"].get<std::string>().starts_with("<｜place▁holder")) {
      t["content"] = t["id"] == 128798 ? "<think>" : "</think>";
      t["special"] = false;
      ++renamed;
    }
  if (renamed != 2) args.die("--chat-template deepseek-r1: the vocabulary has neither <think> nor DeepSeek's placeholders");
  meta.tokenizer_json = tok.dump();
}

}  // namespace

int main(int argc, char** argv) {
  using namespace sibyl::engine;
  if (argc < 2 || argv[1][0] == '-') {
    std::fputs(kUsage, stderr);
    return 2;
  }
  sibyl::cli::Args args(argc - 1, argv + 1, {"--config", "--layers", "--quant", "--seed", "--tokenizer", "--chat-template"}, kUsage);
  const std::string output = argv[1], quant = args.get("--quant", "bf16");
  if (quant != "bf16" && quant != "q8_0" && quant != "q4_k") args.die("--quant must be bf16, q8_0 or q4_k");
  try {
    ModelConfig c = args.has("--config") ? load_model_config(args.get("--config"))
                                          : parse_model_config(kV2LiteConfig, "DeepSeek-V2-Lite config");
    const long long layers = args.get_int("--layers", c.n_layers);
    if (layers < 1 || layers > c.n_layers) args.die("--layers must be in [1, " + std::to_string(c.n_layers) + "]");
    c.n_layers = layers;
    c.num_nextn_predict_layers = 0;
    c.fp8_block_rows = c.fp8_block_cols = 0;

    PackMetadata meta;
    meta.config = c;
    if (args.has("--tokenizer")) {
      const std::string dir = args.get("--tokenizer");
      meta.tokenizer_json = read_text_file(dir + "/tokenizer.json");
      meta.tokenizer_config_json = read_text_file(dir + "/tokenizer_config.json");
      if (args.has("--chat-template")) with_template(args.get("--chat-template"), meta, args);
    } else if (args.has("--chat-template")) {
      args.die("--chat-template needs --tokenizer");
    }
    meta.source = "sibyl-synth: random weights, " + quant + (args.has("--config") ? ", " + args.get("--config") : ", DeepSeek-V2-Lite shapes");
    PackWriter writer(output, meta);
    Rng rng{0x9E3779B97F4A7C15ull ^ static_cast<uint64_t>(args.get_int("--seed", 1))};
    std::vector<uint8_t> bytes;
    uint64_t params = 0;
    const auto start = std::chrono::steady_clock::now();
    const auto specs = pack_layout(c);
    for (size_t i = 0; i < specs.size(); ++i) {
      const TensorSpec& s = specs[i];
      const int64_t cols = s.shape.back();
      int64_t rows = 1;
      for (size_t d = 0; d + 1 < s.shape.size(); ++d) rows *= s.shape[d];
      const bool vector = s.shape.size() == 1, router = s.name.ends_with(".mlp.gate.weight");
      DType t = quant == "bf16" ? DType::bf16 : DType::q8_0;
      if (quant == "q4_k" && s.name.find(".mlp.experts.") != std::string::npos) t = DType::q4_k;
      t = fit_row_type(t, cols);
      if (vector || router) {  // norms 1, biases 0, router small: float32 like every converter writes them
        std::vector<float> v(static_cast<size_t>(rows * cols), s.name.ends_with("norm.weight") ? 1.0f : 0.0f);
        if (router)
          for (auto& x : v) x = static_cast<float>(static_cast<int64_t>(rng.next() % 2001) - 1000) * 1e-5f;
        writer.add_tensor(s.name, DType::f32, s.shape, v.data(), v.size() * 4);
      } else {
        random_tensor(rng, t, rows, cols, bytes);
        writer.add_tensor(s.name, t, s.shape, bytes.data(), bytes.size());
      }
      params += static_cast<uint64_t>(rows * cols);
      std::fprintf(stderr, "\r%zu/%zu tensors, %.2f GiB", i + 1, specs.size(),
                   static_cast<double>(writer.bytes_written()) / (1 << 30));
    }
    writer.finish();
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::fprintf(stderr, "\n");
    std::printf("wrote %s: %llu parameters, %.2f GiB, %lld layers, %s, in %.1f s\n", output.c_str(),
                static_cast<unsigned long long>(params), static_cast<double>(writer.bytes_written()) / (1 << 30),
                layers, quant.c_str(), secs);
  } catch (const Failure& e) {
    std::fprintf(stderr, "\nerror: %s\n", e.what());
    return 1;
  }
  return 0;
}
