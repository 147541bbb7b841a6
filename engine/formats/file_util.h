// Small file helpers: whole-file reads and read-only memory maps.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace sibyl::engine {

// Reads a whole text file; Errc::io naming the path when it cannot.
std::string read_text_file(const std::string& path);

// A read-only memory map of a whole file (zero-copy weights).
class MappedFile {
 public:
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace sibyl::engine
