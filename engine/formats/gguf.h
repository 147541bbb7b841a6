// GGUF reader (llama.cpp's single-file format, versions 2 and 3): maps a file, checks every
// count, string, array and tensor extent against its size, and exposes the metadata and
// zero-copy tensor views. Groundwork for importing llama.cpp's DeepSeek files.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/formats/file_util.h"

namespace sibyl::engine {

// ggml's tensor type ids as GGUF stores them (the gaps are ids ggml has retired).
enum class GgufType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  IQ2_XXS = 16,
  IQ2_XS = 17,
  IQ3_XXS = 18,
  IQ1_S = 19,
  IQ4_NL = 20,
  IQ3_S = 21,
  IQ2_S = 22,
  IQ4_XS = 23,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  IQ1_M = 29,
  BF16 = 30,
  TQ1_0 = 34,
  TQ2_0 = 35,
  MXFP4 = 39,
};

struct GgufTypeTraits {
  const char* name;
  uint32_t block_elems;  // elements per block (a row length must be a multiple)
  uint32_t block_bytes;  // bytes per block
};

// Errc::unsupported naming the id when this reader does not know the type.
GgufTypeTraits traits(GgufType type);
// nullptr instead of throwing.
const GgufTypeTraits* find_traits(GgufType type);

// The kinds of metadata value (GGUF's own ids).
enum class GgufValueType : uint32_t {
  u8 = 0,
  i8 = 1,
  u16 = 2,
  i16 = 3,
  u32 = 4,
  i32 = 5,
  f32 = 6,
  boolean = 7,
  string = 8,
  array = 9,
  u64 = 10,
  i64 = 11,
  f64 = 12,
};

const char* value_type_name(GgufValueType type);

// One metadata value. Strings and number arrays are views into the parsed bytes (the
// mapping), so a 100k-entry vocabulary costs one string_view per token and no copies.
class GgufValue {
 public:
  GgufValueType type() const { return type_; }
  bool is_array() const { return type_ == GgufValueType::array; }

  // Scalars; nullopt when the value is of another kind.
  std::optional<int64_t> as_int() const;  // any integer type; nullopt for a u64 above INT64_MAX
  std::optional<double> as_float() const;  // f32, f64 or any integer
  std::optional<bool> as_bool() const;
  std::optional<std::string_view> as_string() const;

  // Arrays; size() is 0 for a scalar.
  GgufValueType element_type() const { return element_type_; }
  size_t size() const;
  std::optional<int64_t> int_at(size_t i) const;  // integer arrays; nullopt out of range
  std::optional<double> float_at(size_t i) const;  // f32/f64/integer arrays
  std::optional<bool> bool_at(size_t i) const;
  const std::vector<std::string_view>& strings() const { return strings_; }  // arrays of strings
  const std::vector<GgufValue>& arrays() const { return arrays_; }           // arrays of arrays
  std::optional<std::vector<int64_t>> ints() const;  // a whole integer array
  std::optional<std::vector<double>> floats() const;  // a whole number array

 private:
  friend class GgufParser;
  uint64_t element_bits(size_t i) const;

  GgufValueType type_ = GgufValueType::u8;
  GgufValueType element_type_ = GgufValueType::u8;  // arrays only
  uint64_t bits_ = 0;                                // a scalar number or bool, zero-extended
  std::string_view bytes_;                           // a string; a number array's raw elements
  std::vector<std::string_view> strings_;
  std::vector<GgufValue> arrays_;
};

using GgufMetadata = std::map<std::string, GgufValue, std::less<>>;

struct GgufTensorInfo {
  std::string name;
  GgufType type = GgufType::F32;
  std::vector<int64_t> dims;  // GGUF order: dims[0] varies fastest (the row length)
  uint64_t offset = 0;        // from the start of the data section
  const uint8_t* data = nullptr;
  size_t nbytes = 0;

  int64_t numel() const;
  std::string dims_string() const;  // "[256, 1024]", in GGUF order
};

// Everything parse_gguf found; views point into the bytes it was given.
struct GgufContents {
  uint32_t version = 0;
  size_t alignment = 32;
  uint64_t data_offset = 0;  // where the tensor data section begins
  GgufMetadata metadata;
  std::vector<GgufTensorInfo> tensors;  // in file order
  std::map<std::string, size_t, std::less<>> tensor_index;

  const GgufValue* find(std::string_view key) const;
  const GgufTensorInfo* tensor(std::string_view name) const;
};

// Parses and validates the GGUF bytes [data, data + size); `source` names them in errors.
// Malformed input is Errc::format, an unknown tensor type Errc::unsupported.
GgufContents parse_gguf(const uint8_t* data, size_t size, const std::string& source);

class GgufFile {
 public:
  using TensorInfo = GgufTensorInfo;

  explicit GgufFile(const std::string& path);  // maps and validates everything

  uint32_t version() const { return c_.version; }
  size_t alignment() const { return c_.alignment; }
  uint64_t data_offset() const { return c_.data_offset; }
  const std::string& path() const { return file_->path(); }
  const GgufContents& contents() const { return c_; }

  const GgufMetadata& metadata() const { return c_.metadata; }
  const GgufValue* find(std::string_view key) const { return c_.find(key); }
  // nullopt when the key is absent or of another kind (see GgufValue's as_*).
  std::optional<int64_t> get_int(std::string_view key) const;
  std::optional<double> get_float(std::string_view key) const;
  std::optional<std::string_view> get_string(std::string_view key) const;
  std::optional<bool> get_bool(std::string_view key) const;
  // Arrays: nullptr / nullopt when absent or not an array of that kind.
  const std::vector<std::string_view>* get_strings(std::string_view key) const;
  std::optional<std::vector<int64_t>> get_ints(std::string_view key) const;
  std::optional<std::vector<double>> get_floats(std::string_view key) const;

  const std::vector<TensorInfo>& tensors() const { return c_.tensors; }
  const TensorInfo* tensor(std::string_view name) const { return c_.tensor(name); }

 private:
  std::unique_ptr<MappedFile> file_;
  GgufContents c_;
};

}  // namespace sibyl::engine
