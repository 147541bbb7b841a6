#include "engine/formats/gguf.h"

#include <algorithm>
#include <cstring>
#include <iterator>
#include <limits>

#include "engine/core/failure.h"

namespace sibyl::engine {
namespace {

constexpr uint32_t kDefaultAlignment = 32;
constexpr int kMaxArrayDepth = 8;  // the format allows arrays of arrays; nothing real nests deeply
constexpr int kMaxDims = 4;        // ggml's GGML_MAX_DIMS
// The fewest bytes one entry can occupy, so that a count can be checked against the file
// before anything is allocated: key length + type + a 1-byte value; name length + n_dims +
// one dim + type + offset.
constexpr uint64_t kMinKvBytes = 8 + 4 + 1;
constexpr uint64_t kMinTensorInfoBytes = 8 + 4 + 8 + 4 + 8;
constexpr uint64_t kMinArrayBytes = 4 + 8;  // element type + count
constexpr uint64_t kMinStringBytes = 8;     // length

// Indexed by type id; block_elems == 0 marks an id ggml has retired.
constexpr GgufTypeTraits kTraits[] = {
    {"F32", 1, 4},        {"F16", 1, 2},       {"Q4_0", 32, 18},    {"Q4_1", 32, 20},
    {nullptr, 0, 0},      {nullptr, 0, 0},     {"Q5_0", 32, 22},    {"Q5_1", 32, 24},
    {"Q8_0", 32, 34},     {"Q8_1", 32, 36},    {"Q2_K", 256, 84},   {"Q3_K", 256, 110},
    {"Q4_K", 256, 144},   {"Q5_K", 256, 176},  {"Q6_K", 256, 210},  {"Q8_K", 256, 292},
    {"IQ2_XXS", 256, 66}, {"IQ2_XS", 256, 74}, {"IQ3_XXS", 256, 98}, {"IQ1_S", 256, 50},
    {"IQ4_NL", 32, 18},   {"IQ3_S", 256, 110}, {"IQ2_S", 256, 82},  {"IQ4_XS", 256, 136},
    {"I8", 1, 1},         {"I16", 1, 2},       {"I32", 1, 4},       {"I64", 1, 8},
    {"F64", 1, 8},        {"IQ1_M", 256, 56},  {"BF16", 1, 2},      {nullptr, 0, 0},
    {nullptr, 0, 0},      {nullptr, 0, 0},     {"TQ1_0", 256, 54},  {"TQ2_0", 256, 66},
    {nullptr, 0, 0},      {nullptr, 0, 0},     {nullptr, 0, 0},     {"MXFP4", 32, 17},
};

// Bytes of one fixed-size value; 0 for strings, arrays and unknown ids.
size_t fixed_size(GgufValueType t) {
  switch (t) {
    case GgufValueType::u8:
    case GgufValueType::i8:
    case GgufValueType::boolean: return 1;
    case GgufValueType::u16:
    case GgufValueType::i16: return 2;
    case GgufValueType::u32:
    case GgufValueType::i32:
    case GgufValueType::f32: return 4;
    case GgufValueType::u64:
    case GgufValueType::i64:
    case GgufValueType::f64: return 8;
    default: return 0;
  }
}

bool is_float(GgufValueType t) { return t == GgufValueType::f32 || t == GgufValueType::f64; }

uint64_t load_le(const uint8_t* p, size_t n) {
  uint64_t v = 0;
  for (size_t i = n; i-- > 0;) v = (v << 8) | p[i];
  return v;
}

double float_of(GgufValueType t, uint64_t bits) {
  if (t == GgufValueType::f32) {
    float f;
    uint32_t b = static_cast<uint32_t>(bits);
    std::memcpy(&f, &b, 4);
    return f;
  }
  double d;
  std::memcpy(&d, &bits, 8);
  return d;
}

std::optional<int64_t> int_of(GgufValueType t, uint64_t bits) {
  switch (t) {
    case GgufValueType::u8:
    case GgufValueType::u16:
    case GgufValueType::u32: return static_cast<int64_t>(bits);
    case GgufValueType::i8: return static_cast<int8_t>(bits);
    case GgufValueType::i16: return static_cast<int16_t>(bits);
    case GgufValueType::i32: return static_cast<int32_t>(bits);
    case GgufValueType::i64: return static_cast<int64_t>(bits);
    case GgufValueType::u64:
      if (bits > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
      return static_cast<int64_t>(bits);
    default: return std::nullopt;
  }
}

bool is_integer(GgufValueType t) { return fixed_size(t) && !is_float(t) && t != GgufValueType::boolean; }

// Keys and names come from the file: quote them printable and short in messages.
std::string quoted(std::string_view s) {
  std::string out = "\"";
  for (size_t i = 0; i < s.size() && i < 96; ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    out += (c >= 0x20 && c < 0x7f) ? static_cast<char>(c) : '?';
  }
  return out + (s.size() > 96 ? "...\"" : "\"");
}

}  // namespace

const GgufTypeTraits* find_traits(GgufType type) {
  auto id = static_cast<uint32_t>(type);
  if (id >= std::size(kTraits) || kTraits[id].block_elems == 0) return nullptr;
  return &kTraits[id];
}

GgufTypeTraits traits(GgufType type) {
  const GgufTypeTraits* t = find_traits(type);
  if (!t) fail(Errc::unsupported, "unknown ggml tensor type id " + std::to_string(static_cast<uint32_t>(type)));
  return *t;
}

const char* value_type_name(GgufValueType type) {
  static constexpr const char* kNames[] = {"u8",  "i8",  "u16",    "i16",   "u32", "i32", "f32",
                                           "bool", "string", "array", "u64", "i64", "f64"};
  auto id = static_cast<uint32_t>(type);
  return id < std::size(kNames) ? kNames[id] : "unknown";
}

// ---- GgufValue ----

uint64_t GgufValue::element_bits(size_t i) const {
  size_t n = fixed_size(element_type_);
  return load_le(reinterpret_cast<const uint8_t*>(bytes_.data()) + i * n, n);
}

std::optional<int64_t> GgufValue::as_int() const { return int_of(type_, bits_); }

std::optional<double> GgufValue::as_float() const {
  if (is_float(type_)) return float_of(type_, bits_);
  if (type_ == GgufValueType::u64) return static_cast<double>(bits_);
  if (auto i = as_int()) return static_cast<double>(*i);
  return std::nullopt;
}

std::optional<bool> GgufValue::as_bool() const {
  if (type_ != GgufValueType::boolean) return std::nullopt;
  return bits_ != 0;
}

std::optional<std::string_view> GgufValue::as_string() const {
  if (type_ != GgufValueType::string) return std::nullopt;
  return bytes_;
}

size_t GgufValue::size() const {
  if (!is_array()) return 0;
  if (element_type_ == GgufValueType::string) return strings_.size();
  if (element_type_ == GgufValueType::array) return arrays_.size();
  return bytes_.size() / fixed_size(element_type_);
}

std::optional<int64_t> GgufValue::int_at(size_t i) const {
  if (!is_array() || fixed_size(element_type_) == 0 || i >= size()) return std::nullopt;
  return int_of(element_type_, element_bits(i));
}

std::optional<double> GgufValue::float_at(size_t i) const {
  if (!is_array() || fixed_size(element_type_) == 0 || i >= size()) return std::nullopt;
  uint64_t bits = element_bits(i);
  if (is_float(element_type_)) return float_of(element_type_, bits);
  if (element_type_ == GgufValueType::u64) return static_cast<double>(bits);
  if (auto v = int_of(element_type_, bits)) return static_cast<double>(*v);
  return std::nullopt;
}

std::optional<bool> GgufValue::bool_at(size_t i) const {
  if (!is_array() || element_type_ != GgufValueType::boolean || i >= size()) return std::nullopt;
  return element_bits(i) != 0;
}

std::optional<std::vector<int64_t>> GgufValue::ints() const {
  if (!is_array() || !is_integer(element_type_)) return std::nullopt;
  std::vector<int64_t> out(size());
  for (size_t i = 0; i < out.size(); ++i) {
    auto v = int_at(i);
    if (!v) return std::nullopt;  // a u64 above INT64_MAX
    out[i] = *v;
  }
  return out;
}

std::optional<std::vector<double>> GgufValue::floats() const {
  if (!is_array() || fixed_size(element_type_) == 0 || element_type_ == GgufValueType::boolean) return std::nullopt;
  std::vector<double> out(size());
  for (size_t i = 0; i < out.size(); ++i) out[i] = *float_at(i);
  return out;
}

// ---- tensors and contents ----

int64_t GgufTensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  return n;
}

std::string GgufTensorInfo::dims_string() const {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + "]";
}

const GgufValue* GgufContents::find(std::string_view key) const {
  auto it = metadata.find(key);
  return it == metadata.end() ? nullptr : &it->second;
}

const GgufTensorInfo* GgufContents::tensor(std::string_view name) const {
  auto it = tensor_index.find(name);
  return it == tensor_index.end() ? nullptr : &tensors[it->second];
}

// ---- the parser ----

class GgufParser {
 public:
  GgufParser(const uint8_t* data, size_t size, const std::string& source)
      : base_(data), size_(size), source_(source) {}

  GgufContents run() {
    GgufContents c;
    header(c);
    uint64_t n_tensors = u64("tensor count");
    uint64_t n_kv = u64("metadata count");
    if (n_kv > left() / kMinKvBytes || n_tensors > left() / kMinTensorInfoBytes ||
        n_kv * kMinKvBytes + n_tensors * kMinTensorInfoBytes > left())
      bad("the header claims " + std::to_string(n_kv) + " metadata entries and " + std::to_string(n_tensors) +
          " tensors, more than the " + std::to_string(size_) + "-byte file can hold");
    for (uint64_t i = 0; i < n_kv; ++i) key_value(c);
    alignment(c);
    c.tensors.reserve(n_tensors);
    for (uint64_t i = 0; i < n_tensors; ++i) tensor_info(c);
    data_section(c);
    return c;
  }

 private:
  [[noreturn]] void bad(const std::string& why) const { fail(Errc::format, source_ + ": " + why); }

  uint64_t left() const { return size_ - pos_; }

  void need(uint64_t n, const std::string& what) const {
    if (n > left())
      bad(what + " at byte " + std::to_string(pos_) + " needs " + std::to_string(n) + " bytes, but only " +
          std::to_string(left()) + " remain (truncated file?)");
  }

  uint64_t uint(size_t n, const std::string& what) {
    need(n, what);
    uint64_t v = load_le(base_ + pos_, n);
    pos_ += n;
    return v;
  }
  uint32_t u32(const std::string& what) { return static_cast<uint32_t>(uint(4, what)); }
  uint64_t u64(const std::string& what) { return uint(8, what); }

  std::string_view bytes(uint64_t n, const std::string& what) {
    need(n, what);
    std::string_view v(reinterpret_cast<const char*>(base_ + pos_), n);
    pos_ += n;
    return v;
  }

  // Reads a length-prefixed string; false (nothing consumed) when it runs past the end.
  // Vocabularies hold 100k+ strings, so the message is only built on failure.
  bool try_str(std::string_view& out) {
    if (left() < 8 || load_le(base_ + pos_, 8) > left() - 8) return false;
    out = std::string_view(reinterpret_cast<const char*>(base_ + pos_ + 8), load_le(base_ + pos_, 8));
    pos_ += 8 + out.size();
    return true;
  }

  std::string_view str(const std::string& what) {
    std::string_view out;
    if (!try_str(out)) {
      uint64_t n = u64(what + " length");
      bytes(n, what + " (" + std::to_string(n) + " bytes)");
    }
    return out;
  }

  void header(GgufContents& c) {
    if (size_ < 4 || std::memcmp(base_, "GGUF", 4) != 0) bad("not a GGUF file (the magic \"GGUF\" is missing)");
    pos_ = 4;
    c.version = u32("version");
    uint32_t swapped = __builtin_bswap32(c.version);
    if (swapped == 2 || swapped == 3)
      fail(Errc::unsupported, source_ + ": a big-endian GGUF file, which is not supported");
    if (c.version != 2 && c.version != 3)
      bad("GGUF version " + std::to_string(c.version) + " is not supported (only 2 and 3)");
  }

  GgufValueType value_type(const std::string& what) {
    uint32_t t = u32(what);
    if (t > static_cast<uint32_t>(GgufValueType::f64))
      bad(what + " is " + std::to_string(t) + ", not a GGUF value type");
    return static_cast<GgufValueType>(t);
  }

  void key_value(GgufContents& c) {
    std::string_view key = str("metadata key");
    std::string ctx = "metadata " + quoted(key);
    GgufValueType type = value_type(ctx + " type");
    GgufValue v = value(type, 0, ctx);
    if (!c.metadata.emplace(std::string(key), std::move(v)).second) bad("duplicate metadata key " + quoted(key));
  }

  GgufValue value(GgufValueType type, int depth, const std::string& ctx) {
    GgufValue v;
    v.type_ = type;
    if (size_t n = fixed_size(type)) {
      v.bits_ = uint(n, ctx);
      if (type == GgufValueType::boolean && v.bits_ > 1)
        bad(ctx + ": a bool must be 0 or 1, not " + std::to_string(v.bits_));
    } else if (type == GgufValueType::string) {
      v.bytes_ = str(ctx);
    } else {
      array(v, depth, ctx);
    }
    return v;
  }

  void array(GgufValue& v, int depth, const std::string& ctx) {
    if (depth >= kMaxArrayDepth) bad(ctx + ": arrays nested more than " + std::to_string(kMaxArrayDepth) + " deep");
    v.element_type_ = value_type(ctx + " element type");
    uint64_t count = u64(ctx + " element count");
    auto too_long = [&](uint64_t min_bytes) {
      if (count > left() / min_bytes)
        bad(ctx + ": an array of " + std::to_string(count) + " " + value_type_name(v.element_type_) +
            " values cannot fit in the " + std::to_string(left()) + " bytes left");
    };
    if (size_t n = fixed_size(v.element_type_)) {
      too_long(n);
      v.bytes_ = bytes(count * n, ctx);
      if (v.element_type_ == GgufValueType::boolean)
        for (char b : v.bytes_)
          if (static_cast<unsigned char>(b) > 1) bad(ctx + ": a bool must be 0 or 1");
    } else if (v.element_type_ == GgufValueType::string) {
      too_long(kMinStringBytes);
      v.strings_.reserve(count);
      for (uint64_t i = 0; i < count; ++i) {
        std::string_view e;
        if (!try_str(e)) str(ctx + "[" + std::to_string(i) + "]");  // throws, naming the element
        v.strings_.push_back(e);
      }
    } else {
      too_long(kMinArrayBytes);
      v.arrays_.reserve(count);
      for (uint64_t i = 0; i < count; ++i)
        v.arrays_.push_back(value(GgufValueType::array, depth + 1, ctx + "[" + std::to_string(i) + "]"));
    }
  }

  void alignment(GgufContents& c) {
    c.alignment = kDefaultAlignment;
    const GgufValue* a = c.find("general.alignment");
    if (!a) return;
    auto v = a->as_int();
    if (!v || *v <= 0 || (*v & (*v - 1)) != 0)
      bad("general.alignment must be a positive power of two" + (v ? ", not " + std::to_string(*v) : std::string()));
    c.alignment = static_cast<size_t>(*v);
  }

  void tensor_info(GgufContents& c) {
    GgufTensorInfo t;
    t.name = std::string(str("tensor name"));
    std::string ctx = "tensor " + quoted(t.name);
    uint32_t n_dims = u32(ctx + " dimension count");
    if (n_dims < 1 || n_dims > kMaxDims)
      bad(ctx + " has " + std::to_string(n_dims) + " dimensions (1 to " + std::to_string(kMaxDims) + " allowed)");
    constexpr uint64_t kMaxCount = std::numeric_limits<int64_t>::max();
    uint64_t numel = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      uint64_t n = u64(ctx + " dimension");
      if (n == 0 || n > kMaxCount)
        bad(ctx + ": dimension " + std::to_string(d) + " is " + std::to_string(static_cast<int64_t>(n)) +
            ", not positive");
      if (__builtin_mul_overflow(numel, n, &numel) || numel > kMaxCount)
        bad(ctx + ": the element count overflows at dimension " + std::to_string(d));
      t.dims.push_back(static_cast<int64_t>(n));
    }
    uint32_t type_id = u32(ctx + " type");
    t.type = static_cast<GgufType>(type_id);
    t.offset = u64(ctx + " offset");
    const GgufTypeTraits* tr = find_traits(t.type);
    if (!tr)
      fail(Errc::unsupported, source_ + ": " + ctx + " has ggml type id " + std::to_string(type_id) +
                                  ", which this reader does not know");
    if (t.dims[0] % tr->block_elems != 0)
      bad(ctx + " " + t.dims_string() + " of " + tr->name + ": the row length " + std::to_string(t.dims[0]) +
          " is not a multiple of the block size " + std::to_string(tr->block_elems));
    uint64_t nbytes = 0;
    if (__builtin_mul_overflow(numel / tr->block_elems, uint64_t{tr->block_bytes}, &nbytes))
      bad(ctx + " " + t.dims_string() + " of " + tr->name + " is impossibly large");
    t.nbytes = nbytes;
    if (c.tensor_index.count(t.name)) bad("duplicate tensor name " + quoted(t.name));
    c.tensor_index.emplace(t.name, c.tensors.size());
    c.tensors.push_back(std::move(t));
  }

  // The data section starts at the first aligned byte after the tensor infos; every tensor
  // lies inside it, aligned, and no two overlap.
  void data_section(GgufContents& c) {
    uint64_t start = (pos_ + c.alignment - 1) / c.alignment * c.alignment;
    if (start > size_) {
      if (!c.tensors.empty())
        bad("the tensor data section would begin at byte " + std::to_string(start) + ", past the end of the " +
            std::to_string(size_) + "-byte file (truncated?)");
      start = size_;
    }
    c.data_offset = start;
    const uint64_t data_size = size_ - start;
    for (GgufTensorInfo& t : c.tensors) {
      auto ctx = [&] { return "tensor " + quoted(t.name); };
      if (t.offset % c.alignment != 0)
        bad(ctx() + " has offset " + std::to_string(t.offset) + ", not a multiple of the alignment " +
            std::to_string(c.alignment));
      if (t.offset > data_size || t.nbytes > data_size - t.offset)
        bad(ctx() + " at offset " + std::to_string(t.offset) + " with " + std::to_string(t.nbytes) +
            " bytes passes the end of the " + std::to_string(data_size) + "-byte data section (truncated file?)");
      t.data = base_ + start + t.offset;
    }
    std::vector<const GgufTensorInfo*> by_offset;
    by_offset.reserve(c.tensors.size());
    for (const GgufTensorInfo& t : c.tensors) by_offset.push_back(&t);
    std::sort(by_offset.begin(), by_offset.end(), [](auto* a, auto* b) { return a->offset < b->offset; });
    for (size_t i = 1; i < by_offset.size(); ++i)
      if (by_offset[i]->offset < by_offset[i - 1]->offset + by_offset[i - 1]->nbytes)
        bad("tensors " + quoted(by_offset[i - 1]->name) + " and " + quoted(by_offset[i]->name) + " overlap");
  }

  const uint8_t* base_;
  size_t size_;
  const std::string& source_;
  size_t pos_ = 0;
};

GgufContents parse_gguf(const uint8_t* data, size_t size, const std::string& source) {
  return GgufParser(data, size, source).run();
}

// ---- GgufFile ----

GgufFile::GgufFile(const std::string& path) : file_(std::make_unique<MappedFile>(path)) {
  c_ = parse_gguf(file_->data(), file_->size(), path);
}

std::optional<int64_t> GgufFile::get_int(std::string_view key) const {
  const GgufValue* v = find(key);
  return v ? v->as_int() : std::nullopt;
}

std::optional<double> GgufFile::get_float(std::string_view key) const {
  const GgufValue* v = find(key);
  return v ? v->as_float() : std::nullopt;
}

std::optional<std::string_view> GgufFile::get_string(std::string_view key) const {
  const GgufValue* v = find(key);
  return v ? v->as_string() : std::nullopt;
}

std::optional<bool> GgufFile::get_bool(std::string_view key) const {
  const GgufValue* v = find(key);
  return v ? v->as_bool() : std::nullopt;
}

const std::vector<std::string_view>* GgufFile::get_strings(std::string_view key) const {
  const GgufValue* v = find(key);
  return v && v->is_array() && v->element_type() == GgufValueType::string ? &v->strings() : nullptr;
}

std::optional<std::vector<int64_t>> GgufFile::get_ints(std::string_view key) const {
  const GgufValue* v = find(key);
  return v ? v->ints() : std::nullopt;
}

std::optional<std::vector<double>> GgufFile::get_floats(std::string_view key) const {
  const GgufValue* v = find(key);
  return v ? v->floats() : std::nullopt;
}

}  // namespace sibyl::engine
