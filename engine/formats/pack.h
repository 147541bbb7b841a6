// The .sibyl pack: one file holding a whole model — a FlatBuffers manifest (config, tokenizer,
// chat template, generation defaults, tensor table; schema in sibyl_pack.fbs) and the tensor
// data, aligned so that the engine maps the file and uses the tensors in place. Layout, checks
// and versioning: docs/PACK_FORMAT.md.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/model/config.h"
#include "engine/core/dtype.h"
#include "engine/formats/file_util.h"
#include "engine/formats/safetensors.h"

namespace sibyl::engine {

// Sampling defaults shipped with the model; nullopt: unset (the application's or the
// engine's default applies).
struct GenerationDefaults {
  std::optional<float> temperature, top_p;
  std::optional<int32_t> top_k, max_new_tokens;
};

struct PackMetadata {
  ModelConfig config;
  std::string tokenizer_json;         // the Hugging Face tokenizer.json text; empty: none
  std::string tokenizer_config_json;  // tokenizer_config.json (chat template); empty: none
  GenerationDefaults generation;
  std::string source;  // e.g. "converted from /path (GGUF Q4_K_M) by sibyl-convert 0.1"
};

constexpr char kPackMagic[8] = {'S', 'I', 'B', 'Y', 'L', 'P', 'A', 'K'};
constexpr uint32_t kPackFormatVersion = 1;
constexpr uint32_t kPackHeaderSize = 64;
constexpr uint64_t kPackDataAlignment = 4096;  // the data section's start
constexpr uint64_t kPackTensorAlignment = 64;  // every tensor
constexpr uint64_t kPackPageAlignment = 4096;  // tensors of at least kPackLargeTensor bytes
constexpr uint64_t kPackLargeTensor = uint64_t(1) << 20;
constexpr uint64_t kPackMaxManifest = uint64_t(1) << 30;  // manifests are far smaller

// The fixed header at offset 0, as it is stored (little-endian).
struct PackHeader {
  uint32_t format_version = 0;
  uint32_t header_size = 0;
  uint64_t manifest_offset = 0, manifest_size = 0;
  uint64_t data_offset = 0, data_size = 0;
  uint64_t content_checksum = 0;   // XXH3-64 of the data section
  uint64_t manifest_checksum = 0;  // XXH3-64 of the manifest bytes
};

struct PackContents {
  uint32_t version = 0;
  PackMetadata meta;
  // Views into the bytes given to parse_pack; TensorView::file is the source.
  std::map<std::string, TensorView> tensors;
  uint64_t data_offset = 0, data_size = 0, content_checksum = 0;

  const TensorView* find(const std::string& name) const;
};

// XXH3-64 (seed 0), the checksum of both the data section and the manifest.
uint64_t pack_checksum(const void* data, size_t size);

// Decodes the header fields without checking them; Errc::format when size < 64 or the
// magic is wrong.
PackHeader read_pack_header(const uint8_t* data, size_t size, const std::string& source);

// Parses and validates pack bytes [data, data + size): header, ranges, manifest checksum,
// FlatBuffers verification, config and every tensor entry — but not the content checksum,
// and without reading any tensor byte. Errc::format on any violation, Errc::unsupported for a
// newer format version.
PackContents parse_pack(const uint8_t* data, size_t size, const std::string& source);

// Errc::format when the data section's XXH3-64 differs from the header's (reads every byte).
void verify_pack_checksum(const uint8_t* data, size_t size, const PackContents& contents, const std::string& source);

// True when the file can be read and starts with the magic; never throws.
bool is_pack_file(const std::string& path);

// A mapped, parsed pack. Opening reads only the header and the manifest.
class PackFile {
 public:
  explicit PackFile(const std::string& path);

  const PackContents& contents() const { return contents_; }
  const PackMetadata& metadata() const { return contents_.meta; }
  const std::map<std::string, TensorView>& tensors() const { return contents_.tensors; }
  const TensorView* find(const std::string& name) const { return contents_.find(name); }
  const std::string& path() const { return file_->path(); }
  const MappedFile& mapping() const { return *file_; }
  void verify_checksum() const;  // reads the whole data section

 private:
  std::unique_ptr<MappedFile> file_;
  PackContents contents_;
};

// Writes a pack. Tensors stream to `path + ".partial"` in the order they are added; finish()
// writes the manifest and the header and renames the file to `path`. Destroying an unfinished
// writer (or one whose write failed) removes the partial file.
class PackWriter {
 public:
  // Errc::invalid_argument when the metadata would not read back (config out of range, bad
  // generation defaults); Errc::io when the partial file cannot be created.
  PackWriter(const std::string& path, PackMetadata meta);
  ~PackWriter();
  PackWriter(const PackWriter&) = delete;
  PackWriter& operator=(const PackWriter&) = delete;

  // `shape` as stored (row-major); nbytes must equal what the reader requires,
  // (numel / last dim) × row_bytes(dtype, last dim). Errc::invalid_argument for an empty or
  // duplicate name, a bad shape or size, or after finish(); Errc::io on write errors.
  void add_tensor(const std::string& name, DType dtype, const std::vector<int64_t>& shape, const void* data,
                  size_t nbytes);
  // Bytes written to the file so far (its size once finished).
  uint64_t bytes_written() const;
  // Writes the manifest and the header, syncs and renames; Errc::io naming the path on write
  // errors (disk full).
  void finish();
  const std::string& path() const;

 private:
  struct State;
  std::unique_ptr<State> s_;
};

}  // namespace sibyl::engine
