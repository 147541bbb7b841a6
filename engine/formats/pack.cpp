#include "engine/formats/pack.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <set>

#include "engine/core/failure.h"
#include "sibyl_pack_generated.h"
#include <xxhash.h>

namespace sibyl::engine {
namespace {

namespace fb = sibyl::pack;

constexpr uint64_t kMaxDim = uint64_t(1) << 40;  // one tensor dimension
constexpr size_t kMaxRank = 4;
constexpr size_t kIoChunk = size_t(1) << 20;             // hash, then write, a cache-sized piece at a time
constexpr flatbuffers::uoffset_t kMaxDepth = 16;         // Manifest → Config → Rope is 3 deep
constexpr flatbuffers::uoffset_t kMaxTables = 1u << 22;  // ~100k tensors in the largest models

// ---- little-endian fields ----

uint32_t get_u32(const uint8_t* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
uint64_t get_u64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
void put_u32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
void put_u64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

// A name as it appears in messages: quoted, long ones cut.
std::string quoted(const std::string& name) {
  constexpr size_t kShown = 120;
  std::string out(1, '\'');
  out.append(name, 0, kShown);
  if (name.size() <= kShown) return out += '\'';
  return out.append("…' (").append(std::to_string(name.size())).append(" bytes)");
}

// ---- enums ----

bool to_engine(fb::DType t, DType& out) {
  switch (t) {
    case fb::DType::F32: out = DType::f32; return true;
    case fb::DType::F16: out = DType::f16; return true;
    case fb::DType::BF16: out = DType::bf16; return true;
    case fb::DType::I32: out = DType::i32; return true;
    case fb::DType::I64: out = DType::i64; return true;
    case fb::DType::F8_E4M3: out = DType::f8_e4m3; return true;
    case fb::DType::Q8_0: out = DType::q8_0; return true;
    case fb::DType::Q5_0: out = DType::q5_0; return true;
    case fb::DType::Q4_K: out = DType::q4_k; return true;
    case fb::DType::Q6_K: out = DType::q6_k; return true;
  }
  return false;
}

fb::DType to_pack(DType t) {
  switch (t) {
    case DType::f32: return fb::DType::F32;
    case DType::f16: return fb::DType::F16;
    case DType::bf16: return fb::DType::BF16;
    case DType::i32: return fb::DType::I32;
    case DType::i64: return fb::DType::I64;
    case DType::f8_e4m3: return fb::DType::F8_E4M3;
    case DType::q8_0: return fb::DType::Q8_0;
    case DType::q5_0: return fb::DType::Q5_0;
    case DType::q4_k: return fb::DType::Q4_K;
    case DType::q6_k: return fb::DType::Q6_K;
  }
  fail(Errc::invalid_argument, "unknown dtype " + std::to_string(static_cast<int>(t)));
}

bool known_dtype(DType t) {
  switch (t) {
    case DType::f32:
    case DType::f16:
    case DType::bf16:
    case DType::i32:
    case DType::i64:
    case DType::f8_e4m3:
    case DType::q8_0:
    case DType::q5_0:
    case DType::q4_k:
    case DType::q6_k: return true;
  }
  return false;
}

// ---- the checks shared by the writer and the reader ----

// The byte size a tensor of this dtype and shape must have; an empty string on success, else
// what is wrong with the shape.
std::string tensor_size(DType dtype, const std::vector<int64_t>& shape, uint64_t& bytes) {
  if (shape.empty() || shape.size() > kMaxRank)
    return "has rank " + std::to_string(shape.size()) + "; a pack holds tensors of rank 1 to " +
           std::to_string(kMaxRank);
  uint64_t numel = 1;
  for (int64_t d : shape) {
    if (d < 1 || static_cast<uint64_t>(d) > kMaxDim)
      return "has a dimension of " + std::to_string(d) + "; dimensions must be in [1, 2^40]";
    if (__builtin_mul_overflow(numel, static_cast<uint64_t>(d), &numel)) return "has more elements than 2^64";
  }
  const int64_t cols = shape.back();
  if (cols % block_elems(dtype) != 0)
    return std::string("has rows of ") + std::to_string(cols) + " elements, not a multiple of the " +
           std::to_string(block_elems(dtype)) + "-element blocks of " + dtype_name(dtype);
  const uint64_t rows = numel / static_cast<uint64_t>(cols);
  if (__builtin_mul_overflow(rows, static_cast<uint64_t>(row_bytes(dtype, cols)), &bytes))
    return "has more than 2^64 bytes";
  return "";
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// What is wrong with the generation defaults; empty when nothing.
std::string generation_error(const GenerationDefaults& g) {
  if (g.temperature && !(std::isfinite(*g.temperature) && *g.temperature >= 0))
    return "generation temperature must be a finite number >= 0";
  if (g.top_p && !(std::isfinite(*g.top_p) && *g.top_p > 0 && *g.top_p <= 1))
    return "generation top_p must be in (0, 1]";
  if (g.top_k && *g.top_k < 0) return "generation top_k must be >= 0";
  if (g.max_new_tokens && *g.max_new_tokens < 1) return "generation max_new_tokens must be >= 1";
  return "";
}

// ---- manifest → metadata ----

std::string str(const flatbuffers::String* s) { return s ? s->str() : std::string(); }

ModelConfig read_config(const fb::Config& f, const std::string& source) {
  ModelConfig c;
  c.model_type = str(f.model_type());
  if (c.model_type.empty()) fail(Errc::format, source + ": the manifest's config has no model_type");
  switch (f.family()) {
    case fb::Family::DeepseekV2: c.family = Family::deepseek_v2; break;
    case fb::Family::DeepseekV3: c.family = Family::deepseek_v3; break;
    default: fail(Errc::format, source + ": unknown model family " + std::to_string(static_cast<int>(f.family())));
  }
  c.vocab_size = f.vocab_size();
  c.hidden_size = f.hidden_size();
  c.intermediate_size = f.intermediate_size();
  c.n_layers = f.n_layers();
  c.n_heads = f.n_heads();
  c.q_lora_rank = f.q_lora_rank();
  c.kv_lora_rank = f.kv_lora_rank();
  c.qk_nope_head_dim = f.qk_nope_head_dim();
  c.qk_rope_head_dim = f.qk_rope_head_dim();
  c.v_head_dim = f.v_head_dim();
  c.max_position_embeddings = f.max_position_embeddings();
  c.rms_norm_eps = f.rms_norm_eps();
  c.tie_word_embeddings = f.tie_word_embeddings();
  c.n_routed_experts = f.n_routed_experts();
  c.n_shared_experts = f.n_shared_experts();
  c.moe_intermediate_size = f.moe_intermediate_size();
  c.n_experts_per_tok = f.n_experts_per_tok();
  c.first_k_dense_replace = f.first_k_dense_replace();
  c.moe_layer_freq = f.moe_layer_freq();
  c.n_group = f.n_group();
  c.topk_group = f.topk_group();
  c.norm_topk_prob = f.norm_topk_prob();
  c.routed_scaling_factor = f.routed_scaling_factor();
  switch (f.scoring()) {
    case fb::ScoringFunc::Softmax: c.scoring = ScoringFunc::softmax; break;
    case fb::ScoringFunc::Sigmoid: c.scoring = ScoringFunc::sigmoid; break;
    default: fail(Errc::format, source + ": unknown scoring function " + std::to_string(static_cast<int>(f.scoring())));
  }
  switch (f.topk_method()) {
    case fb::TopkMethod::Greedy: c.topk_method = TopkMethod::greedy; break;
    case fb::TopkMethod::GroupLimitedGreedy: c.topk_method = TopkMethod::group_limited_greedy; break;
    case fb::TopkMethod::NoauxTc: c.topk_method = TopkMethod::noaux_tc; break;
    default: fail(Errc::format, source + ": unknown top-k method " + std::to_string(static_cast<int>(f.topk_method())));
  }
  c.num_nextn_predict_layers = f.num_nextn_predict_layers();
  c.fp8_block_rows = f.fp8_block_rows();
  c.fp8_block_cols = f.fp8_block_cols();
  c.bos_token_id = f.bos_token_id();
  if (const auto* eos = f.eos_token_ids()) c.eos_token_ids.assign(eos->begin(), eos->end());
  if (const fb::Rope* r = f.rope()) {  // absent: the defaults (the schema's equal RopeConfig's)
    c.rope.yarn = r->yarn();
    c.rope.theta = r->theta();
    c.rope.factor = r->factor();
    c.rope.beta_fast = r->beta_fast();
    c.rope.beta_slow = r->beta_slow();
    c.rope.mscale = r->mscale();
    c.rope.mscale_all_dim = r->mscale_all_dim();
    c.rope.attention_factor = r->attention_factor();
    c.rope.truncate = r->truncate();
    c.rope.original_max_position_embeddings = r->original_max_position_embeddings();
    c.rope.interleaved = r->interleaved();
  }
  validate_model_config(c, source);
  return c;
}

template <class T>
std::optional<T> opt(flatbuffers::Optional<T> v) {
  return v ? std::optional<T>(*v) : std::nullopt;
}

// ---- metadata → manifest ----

flatbuffers::Offset<fb::Config> write_config(flatbuffers::FlatBufferBuilder& b, const ModelConfig& c) {
  auto model_type = b.CreateString(c.model_type);
  auto eos = b.CreateVector(c.eos_token_ids);
  fb::RopeBuilder rb(b);
  rb.add_yarn(c.rope.yarn);
  rb.add_theta(c.rope.theta);
  rb.add_factor(c.rope.factor);
  rb.add_beta_fast(c.rope.beta_fast);
  rb.add_beta_slow(c.rope.beta_slow);
  rb.add_mscale(c.rope.mscale);
  rb.add_mscale_all_dim(c.rope.mscale_all_dim);
  rb.add_attention_factor(c.rope.attention_factor);
  rb.add_truncate(c.rope.truncate);
  rb.add_original_max_position_embeddings(c.rope.original_max_position_embeddings);
  rb.add_interleaved(c.rope.interleaved);
  auto rope = rb.Finish();

  fb::ConfigBuilder cb(b);
  cb.add_model_type(model_type);
  cb.add_family(c.family == Family::deepseek_v2 ? fb::Family::DeepseekV2 : fb::Family::DeepseekV3);
  cb.add_vocab_size(c.vocab_size);
  cb.add_hidden_size(c.hidden_size);
  cb.add_intermediate_size(c.intermediate_size);
  cb.add_n_layers(c.n_layers);
  cb.add_n_heads(c.n_heads);
  cb.add_q_lora_rank(c.q_lora_rank);
  cb.add_kv_lora_rank(c.kv_lora_rank);
  cb.add_qk_nope_head_dim(c.qk_nope_head_dim);
  cb.add_qk_rope_head_dim(c.qk_rope_head_dim);
  cb.add_v_head_dim(c.v_head_dim);
  cb.add_max_position_embeddings(c.max_position_embeddings);
  cb.add_rms_norm_eps(c.rms_norm_eps);
  cb.add_tie_word_embeddings(c.tie_word_embeddings);
  cb.add_n_routed_experts(c.n_routed_experts);
  cb.add_n_shared_experts(c.n_shared_experts);
  cb.add_moe_intermediate_size(c.moe_intermediate_size);
  cb.add_n_experts_per_tok(c.n_experts_per_tok);
  cb.add_first_k_dense_replace(c.first_k_dense_replace);
  cb.add_moe_layer_freq(c.moe_layer_freq);
  cb.add_n_group(c.n_group);
  cb.add_topk_group(c.topk_group);
  cb.add_norm_topk_prob(c.norm_topk_prob);
  cb.add_routed_scaling_factor(c.routed_scaling_factor);
  cb.add_scoring(c.scoring == ScoringFunc::sigmoid ? fb::ScoringFunc::Sigmoid : fb::ScoringFunc::Softmax);
  cb.add_topk_method(c.topk_method == TopkMethod::noaux_tc               ? fb::TopkMethod::NoauxTc
                     : c.topk_method == TopkMethod::group_limited_greedy ? fb::TopkMethod::GroupLimitedGreedy
                                                                         : fb::TopkMethod::Greedy);
  cb.add_num_nextn_predict_layers(c.num_nextn_predict_layers);
  cb.add_fp8_block_rows(c.fp8_block_rows);
  cb.add_fp8_block_cols(c.fp8_block_cols);
  cb.add_bos_token_id(c.bos_token_id);
  cb.add_eos_token_ids(eos);
  cb.add_rope(rope);
  return cb.Finish();
}

}  // namespace

// ---- reading ----

const TensorView* PackContents::find(const std::string& name) const {
  auto it = tensors.find(name);
  return it == tensors.end() ? nullptr : &it->second;
}

uint64_t pack_checksum(const void* data, size_t size) { return XXH3_64bits(data, size); }

PackHeader read_pack_header(const uint8_t* data, size_t size, const std::string& source) {
  if (size < sizeof(kPackMagic) || std::memcmp(data, kPackMagic, sizeof(kPackMagic)) != 0)
    fail(Errc::format, source + ": not a .sibyl pack (the file does not start with \"SIBYLPAK\")");
  if (size < kPackHeaderSize)
    fail(Errc::format, source + ": truncated: " + std::to_string(size) + " bytes, shorter than the " +
                           std::to_string(kPackHeaderSize) + "-byte pack header");
  PackHeader h;
  h.format_version = get_u32(data + 8);
  h.header_size = get_u32(data + 12);
  h.manifest_offset = get_u64(data + 16);
  h.manifest_size = get_u64(data + 24);
  h.data_offset = get_u64(data + 32);
  h.data_size = get_u64(data + 40);
  h.content_checksum = get_u64(data + 48);
  h.manifest_checksum = get_u64(data + 56);
  return h;
}

PackContents parse_pack(const uint8_t* data, size_t size, const std::string& source) {
  const PackHeader h = read_pack_header(data, size, source);
  if (h.format_version > kPackFormatVersion)
    fail(Errc::unsupported, source + ": pack format version " + std::to_string(h.format_version) +
                                " is newer than this build of Sibyl reads (version " +
                                std::to_string(kPackFormatVersion) + "); update Sibyl");
  if (h.format_version == 0) fail(Errc::format, source + ": pack format version 0 is invalid");
  if (h.header_size != kPackHeaderSize)
    fail(Errc::format, source + ": header_size is " + std::to_string(h.header_size) + "; format version " +
                           std::to_string(h.format_version) + " has a " + std::to_string(kPackHeaderSize) +
                           "-byte header");

  // The ranges, each compared without forming a sum that could wrap.
  const std::string file_bytes = " (the file has " + std::to_string(size) + " bytes; truncated?)";
  if (h.data_offset < kPackHeaderSize || h.data_offset % kPackDataAlignment != 0)
    fail(Errc::format, source + ": data_offset " + std::to_string(h.data_offset) + " is not a multiple of " +
                           std::to_string(kPackDataAlignment) + " after the header");
  if (h.data_offset > size || h.data_size > size - h.data_offset)
    fail(Errc::format, source + ": the data section (" + std::to_string(h.data_size) + " bytes at " +
                           std::to_string(h.data_offset) + ") extends past the end of the file" + file_bytes);
  const uint64_t data_end = h.data_offset + h.data_size;
  if (h.manifest_size < 8 || h.manifest_size > kPackMaxManifest)
    fail(Errc::format, source + ": manifest_size " + std::to_string(h.manifest_size) + " is out of range [8, " +
                           std::to_string(kPackMaxManifest) + "]");
  if (h.manifest_offset != data_end || data_end % 8 != 0)
    fail(Errc::format, source + ": manifest_offset " + std::to_string(h.manifest_offset) +
                           " must be the end of the data section (" + std::to_string(data_end) + "), a multiple of 8");
  if (h.manifest_offset > size || h.manifest_size > size - h.manifest_offset)
    fail(Errc::format, source + ": the manifest (" + std::to_string(h.manifest_size) + " bytes at " +
                           std::to_string(h.manifest_offset) + ") extends past the end of the file" + file_bytes);
  if (h.manifest_offset + h.manifest_size != size)
    fail(Errc::format, source + ": " + std::to_string(size - (h.manifest_offset + h.manifest_size)) +
                           " unexpected bytes after the manifest");

  const uint8_t* manifest = data + h.manifest_offset;
  const size_t manifest_size = static_cast<size_t>(h.manifest_size);
  const uint64_t sum = pack_checksum(manifest, manifest_size);
  if (sum != h.manifest_checksum) fail(Errc::format, source + ": manifest checksum mismatch (the file is damaged)");

  // FlatBuffers reads 8-byte scalars in place: give it an 8-aligned copy when the caller's
  // buffer is not aligned (a mapping always is).
  std::vector<uint64_t> aligned;
  if (reinterpret_cast<uintptr_t>(manifest) % 8 != 0) {
    aligned.resize((manifest_size + 7) / 8);
    std::memcpy(aligned.data(), manifest, manifest_size);
    manifest = reinterpret_cast<const uint8_t*>(aligned.data());
  }
  flatbuffers::Verifier::Options options;
  options.max_depth = kMaxDepth;
  options.max_tables = kMaxTables;
  flatbuffers::Verifier verifier(manifest, manifest_size, options);
  if (!fb::VerifyManifestBuffer(verifier))
    fail(Errc::format, source + ": the manifest is not a valid sibyl.pack.Manifest FlatBuffer");
  const fb::Manifest* m = fb::GetManifest(manifest);

  PackContents out;
  out.version = h.format_version;
  out.data_offset = h.data_offset;
  out.data_size = h.data_size;
  out.content_checksum = h.content_checksum;

  if (!m->config()) fail(Errc::format, source + ": the manifest has no config");
  out.meta.config = read_config(*m->config(), source);
  out.meta.tokenizer_json = str(m->tokenizer_json());
  out.meta.tokenizer_config_json = str(m->tokenizer_config_json());
  out.meta.source = str(m->source());
  if (const fb::GenerationDefaults* g = m->generation()) {
    out.meta.generation.temperature = opt(g->temperature());
    out.meta.generation.top_p = opt(g->top_p());
    out.meta.generation.top_k = opt(g->top_k());
    out.meta.generation.max_new_tokens = opt(g->max_new_tokens());
    if (std::string why = generation_error(out.meta.generation); !why.empty()) fail(Errc::format, source + ": " + why);
  }

  if (const auto* tensors = m->tensors()) {
    for (flatbuffers::uoffset_t i = 0; i < tensors->size(); ++i) {
      const fb::Tensor* t = tensors->Get(i);
      TensorView v;
      v.name = str(t->name());
      if (v.name.empty()) fail(Errc::format, source + ": tensor #" + std::to_string(i) + " has no name");
      const std::string what = source + ": tensor " + quoted(v.name);
      if (!to_engine(t->dtype(), v.dtype))
        fail(Errc::format, what + " has an unknown dtype (" + std::to_string(static_cast<int>(t->dtype())) + ")");
      if (const auto* shape = t->shape()) {
        if (shape->size() > kMaxRank)
          fail(Errc::format, what + " has rank " + std::to_string(shape->size()) +
                                 "; a pack holds tensors of rank 1 to " + std::to_string(kMaxRank));
        // Byte by byte: FlatBuffers 2.0's verifier checks a vector's length field for 4-byte
        // alignment only, so the 8-byte elements of a hostile manifest may be misaligned.
        const uint8_t* dims = shape->Data();
        for (flatbuffers::uoffset_t d = 0; d < shape->size(); ++d)
          v.shape.push_back(static_cast<int64_t>(get_u64(dims + 8 * d)));
      }
      uint64_t expected = 0;
      if (std::string why = tensor_size(v.dtype, v.shape, expected); !why.empty()) fail(Errc::format, what + " " + why);
      if (t->size() != expected)
        fail(Errc::format, what + " (" + dtype_name(v.dtype) + " " + shape_string(v.shape) + ") has " +
                               std::to_string(t->size()) + " bytes; its shape needs " + std::to_string(expected));
      if (t->offset() % kPackTensorAlignment != 0)
        fail(Errc::format, what + " starts at offset " + std::to_string(t->offset()) + ", not a multiple of " +
                               std::to_string(kPackTensorAlignment));
      if (t->offset() > h.data_size || t->size() > h.data_size - t->offset())
        fail(Errc::format, what + " (" + std::to_string(t->size()) + " bytes at " + std::to_string(t->offset()) +
                               ") extends past the data section (" + std::to_string(h.data_size) + " bytes)");
      v.data = data + h.data_offset + t->offset();
      v.nbytes = static_cast<size_t>(t->size());
      v.file = source;
      std::string name = v.name;
      if (!out.tensors.emplace(std::move(name), std::move(v)).second)
        fail(Errc::format, what + " appears more than once");
    }
  }
  return out;
}

void verify_pack_checksum(const uint8_t* data, size_t size, const PackContents& contents, const std::string& source) {
  if (contents.data_offset > size || contents.data_size > size - contents.data_offset)
    fail(Errc::format, source + ": the data section extends past the end of the file");
  const uint64_t sum = pack_checksum(data + contents.data_offset, static_cast<size_t>(contents.data_size));
  if (sum != contents.content_checksum) {
    char buf[80];
    std::snprintf(buf, sizeof buf, "%016llx, the header says %016llx", static_cast<unsigned long long>(sum),
                  static_cast<unsigned long long>(contents.content_checksum));
    fail(Errc::format,
         source + ": content checksum mismatch: the data section hashes to " + buf + " (the file is damaged)");
  }
}

bool is_pack_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[sizeof(kPackMagic)] = {};
  if (!in.read(magic, sizeof magic)) return false;
  return std::memcmp(magic, kPackMagic, sizeof magic) == 0;
}

PackFile::PackFile(const std::string& path) : file_(std::make_unique<MappedFile>(path)) {
  contents_ = parse_pack(file_->data(), file_->size(), path);
}

void PackFile::verify_checksum() const { verify_pack_checksum(file_->data(), file_->size(), contents_, path()); }

// ---- writing ----

struct PackWriter::State {
  struct Entry {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    uint64_t offset, size;  // in the data section
  };

  std::string path, partial;
  PackMetadata meta;
  std::FILE* file = nullptr;
  std::vector<char> buffer;
  XXH3_state_t* hash = nullptr;
  uint64_t written = 0;  // the file position
  std::vector<Entry> entries;
  std::set<std::string> names;
  bool finished = false, failed = false;

  ~State() {
    if (hash) XXH3_freeState(hash);
    if (file) std::fclose(file);
    if (!finished && !partial.empty()) std::remove(partial.c_str());
  }

  [[noreturn]] void io_error(const char* what) {
    const int err = errno;
    failed = true;
    fail(Errc::io, std::string("PackWriter: cannot ") + what + " " + partial +
                       (err ? std::string(": ") + std::strerror(err) : ""));
  }

  // Writes bytes; those of the data section also go into its checksum.
  void write(const void* bytes, size_t n, bool data_section) {
    auto* p = static_cast<const uint8_t*>(bytes);
    while (n > 0) {
      const size_t piece = std::min(n, kIoChunk);
      if (data_section && XXH3_64bits_update(hash, p, piece) != XXH_OK) {
        failed = true;
        fail(Errc::internal, "XXH3 update failed");
      }
      errno = 0;
      if (std::fwrite(p, 1, piece, file) != piece) io_error("write");
      p += piece;
      n -= piece;
      written += piece;
    }
  }

  void pad_to(uint64_t alignment, bool data_section) {
    static const uint8_t zeros[4096] = {};
    uint64_t n = align_up(written, alignment) - written;
    while (n > 0) {
      const size_t piece = static_cast<size_t>(std::min<uint64_t>(n, sizeof zeros));
      write(zeros, piece, data_section);
      n -= piece;
    }
  }

  void check_usable(const char* call) const {
    if (finished)
      fail(Errc::invalid_argument, std::string("PackWriter::") + call + ": " + path + " is already finished");
    if (failed) fail(Errc::io, std::string("PackWriter::") + call + ": an earlier write to " + partial + " failed");
  }
};

PackWriter::PackWriter(const std::string& path, PackMetadata meta) : s_(std::make_unique<State>()) {
  s_->path = path;
  try {
    validate_model_config(meta.config, path);
  } catch (const Failure& e) {
    fail(Errc::invalid_argument, std::string("PackWriter: invalid config: ") + e.what());
  }
  if (meta.config.model_type.empty())
    fail(Errc::invalid_argument, "PackWriter: " + path + ": the config has no model_type");
  if (std::string why = generation_error(meta.generation); !why.empty())
    fail(Errc::invalid_argument, "PackWriter: " + path + ": " + why);
  if (meta.tokenizer_json.size() + meta.tokenizer_config_json.size() + meta.source.size() > kPackMaxManifest / 2)
    fail(Errc::invalid_argument,
         "PackWriter: " + path + ": the tokenizer and source texts are too large for a manifest");
  s_->meta = std::move(meta);

  s_->hash = XXH3_createState();
  if (!s_->hash || XXH3_64bits_reset(s_->hash) != XXH_OK)
    fail(Errc::out_of_memory, "PackWriter: cannot allocate XXH3 state");
  s_->partial = path + ".partial";
  errno = 0;
  s_->file = std::fopen(s_->partial.c_str(), "wb");
  if (!s_->file) {
    const int err = errno;
    const std::string partial = s_->partial;
    s_->partial.clear();  // nothing to remove
    fail(Errc::io, "PackWriter: cannot create " + partial + (err ? std::string(": ") + std::strerror(err) : ""));
  }
  s_->buffer.resize(kIoChunk);
  std::setvbuf(s_->file, s_->buffer.data(), _IOFBF, s_->buffer.size());
  // The header is written last; until then its place and the padding up to the data are zeros.
  static const uint8_t zeros[kPackDataAlignment] = {};
  s_->write(zeros, sizeof zeros, false);
}

PackWriter::~PackWriter() = default;

const std::string& PackWriter::path() const { return s_->path; }

uint64_t PackWriter::bytes_written() const { return s_->written; }

void PackWriter::add_tensor(const std::string& name, DType dtype, const std::vector<int64_t>& shape, const void* data,
                            size_t nbytes) {
  State& s = *s_;
  s.check_usable("add_tensor");
  const std::string what = "PackWriter: " + s.path + ": tensor " + quoted(name);
  if (name.empty()) fail(Errc::invalid_argument, "PackWriter: " + s.path + ": a tensor needs a name");
  if (s.names.count(name)) fail(Errc::invalid_argument, what + " was already added");
  if (!known_dtype(dtype))
    fail(Errc::invalid_argument, what + ": unknown dtype " + std::to_string(static_cast<int>(dtype)));
  uint64_t expected = 0;
  if (std::string why = tensor_size(dtype, shape, expected); !why.empty())
    fail(Errc::invalid_argument, what + " " + why);
  if (nbytes != expected)
    fail(Errc::invalid_argument, what + " (" + dtype_name(dtype) + " " + shape_string(shape) + ") is given " +
                                     std::to_string(nbytes) + " bytes; its shape needs " + std::to_string(expected));
  if (!data) fail(Errc::invalid_argument, what + ": data is null");

  s.pad_to(nbytes >= kPackLargeTensor ? kPackPageAlignment : kPackTensorAlignment, true);
  const uint64_t offset = s.written - kPackDataAlignment;
  s.write(data, nbytes, true);
  s.entries.push_back({name, dtype, shape, offset, nbytes});
  s.names.insert(name);
}

void PackWriter::finish() {
  State& s = *s_;
  s.check_usable("finish");
  s.failed = true;    // until the rename: a writer that threw here cannot be finished again
  s.pad_to(8, true);  // the manifest starts 8-aligned, right after the data section
  const uint64_t data_size = s.written - kPackDataAlignment;
  const uint64_t content_checksum = XXH3_64bits_digest(s.hash);

  flatbuffers::FlatBufferBuilder b(std::max<size_t>(
      4096, s.meta.tokenizer_json.size() + s.meta.tokenizer_config_json.size() + s.entries.size() * 128));
  b.ForceDefaults(true);  // every field explicit: readable with `flatc --json` whatever the schema defaults
  auto config = write_config(b, s.meta.config);
  auto tokenizer = s.meta.tokenizer_json.empty() ? flatbuffers::Offset<flatbuffers::String>()
                                                 : b.CreateString(s.meta.tokenizer_json);
  auto tokenizer_config = s.meta.tokenizer_config_json.empty() ? flatbuffers::Offset<flatbuffers::String>()
                                                               : b.CreateString(s.meta.tokenizer_config_json);
  auto source = b.CreateString(s.meta.source);
  const GenerationDefaults& g = s.meta.generation;
  fb::GenerationDefaultsBuilder gb(b);
  if (g.temperature) gb.add_temperature(*g.temperature);
  if (g.top_p) gb.add_top_p(*g.top_p);
  if (g.top_k) gb.add_top_k(*g.top_k);
  if (g.max_new_tokens) gb.add_max_new_tokens(*g.max_new_tokens);
  auto generation = gb.Finish();
  std::vector<flatbuffers::Offset<fb::Tensor>> tensors;
  tensors.reserve(s.entries.size());
  for (const State::Entry& e : s.entries)
    tensors.push_back(
        fb::CreateTensor(b, b.CreateString(e.name), to_pack(e.dtype), b.CreateVector(e.shape), e.offset, e.size));
  auto tensor_table = b.CreateVector(tensors);
  fb::ManifestBuilder mb(b);
  mb.add_config(config);
  if (!tokenizer.IsNull()) mb.add_tokenizer_json(tokenizer);
  if (!tokenizer_config.IsNull()) mb.add_tokenizer_config_json(tokenizer_config);
  mb.add_generation(generation);
  mb.add_source(source);
  mb.add_tensors(tensor_table);
  fb::FinishManifestBuffer(b, mb.Finish());
  if (b.GetSize() > kPackMaxManifest)
    fail(Errc::invalid_argument,
         "PackWriter: " + s.path + ": the manifest is larger than " + std::to_string(kPackMaxManifest) + " bytes");

  const uint64_t manifest_offset = s.written;
  s.write(b.GetBufferPointer(), b.GetSize(), false);

  uint8_t header[kPackHeaderSize] = {};
  std::memcpy(header, kPackMagic, sizeof kPackMagic);
  put_u32(header + 8, kPackFormatVersion);
  put_u32(header + 12, kPackHeaderSize);
  put_u64(header + 16, manifest_offset);
  put_u64(header + 24, b.GetSize());
  put_u64(header + 32, kPackDataAlignment);
  put_u64(header + 40, data_size);
  put_u64(header + 48, content_checksum);
  put_u64(header + 56, pack_checksum(b.GetBufferPointer(), b.GetSize()));
  errno = 0;
  if (std::fflush(s.file) != 0) s.io_error("write");
  if (std::fseek(s.file, 0, SEEK_SET) != 0) s.io_error("seek in");
  if (std::fwrite(header, 1, sizeof header, s.file) != sizeof header) s.io_error("write");
  if (std::fflush(s.file) != 0) s.io_error("write");
  if (::fsync(::fileno(s.file)) != 0) s.io_error("sync");
  std::FILE* f = s.file;
  s.file = nullptr;
  if (std::fclose(f) != 0) s.io_error("close");
  if (std::rename(s.partial.c_str(), s.path.c_str()) != 0) {
    const int err = errno;
    s.failed = true;
    fail(Errc::io, "PackWriter: cannot rename " + s.partial + " to " + s.path + ": " + std::strerror(err));
  }
  s.failed = false;
  s.finished = true;
}

}  // namespace sibyl::engine
