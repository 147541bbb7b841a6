#include "engine/formats/safetensors.h"

#include <nlohmann/json.hpp>

#include "engine/core/failure.h"

namespace sibyl::engine {
namespace {

constexpr uint64_t kMaxHeaderBytes = 100ull << 20;  // the format's own limit

bool parse_dtype(const std::string& s, DType& out) {
  if (s == "F32") out = DType::f32;
  else if (s == "F16") out = DType::f16;
  else if (s == "BF16") out = DType::bf16;
  else if (s == "I32") out = DType::i32;
  else if (s == "I64") out = DType::i64;
  else if (s == "F8_E4M3") out = DType::f8_e4m3;
  else return false;
  return true;
}

}  // namespace

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string TensorView::shape_string() const {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

SafetensorsFile::SafetensorsFile(const std::string& path) : file_(std::make_unique<MappedFile>(path)) {
  tensors_ = parse_safetensors(file_->data(), file_->size(), path);
}

std::map<std::string, TensorView> parse_safetensors(const uint8_t* base, size_t size, const std::string& path) {
  std::map<std::string, TensorView> tensors;
  auto bad = [&](const std::string& why) { fail(Errc::format, path + ": " + why); };
  if (size < 8) bad("too short to be a safetensors file");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | base[i];
  if (header_len > kMaxHeaderBytes || header_len > size - 8)
    bad("header length " + std::to_string(header_len) + " exceeds the file (" + std::to_string(size) +
        " bytes): truncated or not safetensors");
  const char* header = reinterpret_cast<const char*>(base + 8);
  nlohmann::json j = nlohmann::json::parse(header, header + header_len, nullptr, false);
  if (j.is_discarded() || !j.is_object()) bad("header is not a JSON object");

  const uint8_t* data = base + 8 + header_len;
  const uint64_t data_size = size - 8 - header_len;
  for (auto& item : j.items()) {
    const std::string& name = item.key();  // (not a structured binding: lambdas below capture it)
    const nlohmann::json& entry = item.value();
    if (name == "__metadata__") continue;
    auto tbad = [&](const std::string& why) { bad("tensor \"" + name + "\": " + why); };
    if (!entry.is_object() || !entry.contains("dtype") || !entry.contains("shape") ||
        !entry.contains("data_offsets"))
      tbad("entry needs dtype, shape and data_offsets");
    TensorView t;
    t.name = name;
    t.file = path;
    const auto& dt = entry["dtype"];
    if (!dt.is_string()) tbad("dtype must be a string");
    if (!parse_dtype(dt.get<std::string>(), t.dtype))
      fail(Errc::unsupported, path + ": tensor \"" + name + "\" has dtype " + dt.get<std::string>() +
                                  ", which is not supported (supported: F32, F16, BF16, F8_E4M3)");
    const auto& shape = entry["shape"];
    if (!shape.is_array()) tbad("shape must be an array");
    uint64_t numel = 1;
    for (const auto& d : shape) {
      if (!d.is_number_unsigned()) tbad("shape must hold non-negative integers");
      uint64_t v = d.get<uint64_t>();
      // Keeps numel · dtype_size (at most 8) far from overflowing 64 bits.
      if (v > (1ull << 40) || (v && numel > (1ull << 56) / v)) tbad("shape is impossibly large");
      numel *= v;
      t.shape.push_back(static_cast<int64_t>(v));
    }
    const auto& off = entry["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      tbad("data_offsets must be two non-negative integers");
    uint64_t begin = off[0].get<uint64_t>(), end = off[1].get<uint64_t>();
    if (begin > end || end > data_size)
      tbad("data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) + "] lie outside the " +
           std::to_string(data_size) + "-byte data section (truncated file?)");
    if (end - begin != numel * dtype_size(t.dtype))
      tbad("holds " + std::to_string(end - begin) + " bytes but shape " + t.shape_string() + " of " +
           dtype_name(t.dtype) + " needs " + std::to_string(numel * dtype_size(t.dtype)));
    t.data = data + begin;
    t.nbytes = end - begin;
    tensors.emplace(name, std::move(t));
  }
  return tensors;
}

const TensorView* SafetensorsFile::find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

const TensorView& SafetensorsFile::at(const std::string& name) const {
  const TensorView* t = find(name);
  if (!t) fail(Errc::format, "tensor \"" + name + "\" not found");
  return *t;
}

}  // namespace sibyl::engine
