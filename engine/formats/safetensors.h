// Safetensors reader: maps a file, validates its header, exposes tensor views.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "engine/core/dtype.h"
#include "engine/formats/file_util.h"

namespace sibyl::engine {

struct TensorView {
  std::string name;
  DType dtype = DType::f32;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;  // inside the mapped file
  size_t nbytes = 0;
  std::string file;               // for error messages

  int64_t numel() const;
  std::string shape_string() const;
};

// Parses and validates the safetensors bytes [data, data + size); views point into them.
// `path` names the source in error messages.
std::map<std::string, TensorView> parse_safetensors(const uint8_t* data, size_t size, const std::string& path);

class SafetensorsFile {
 public:
  // Maps and validates: header length and JSON, dtypes, shapes, offsets inside the
  // data section, byte sizes equal to shape × dtype. Errc::format on any violation.
  explicit SafetensorsFile(const std::string& path);

  const std::map<std::string, TensorView>& tensors() const { return tensors_; }
  const TensorView* find(const std::string& name) const;
  const TensorView& at(const std::string& name) const;  // Errc::format if absent

 private:
  std::unique_ptr<MappedFile> file_;
  std::map<std::string, TensorView> tensors_;
};

}  // namespace sibyl::engine
