// Where the embedded default model (models/tiny-reasoner) is on this machine. Header-only so that
// libsibyl and the tools linked with the engine each search from their own location.
#pragma once

#include <dlfcn.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>

#include "sibyl_install_paths.h"  // generated: the install layout and the source tree

namespace sibyl::engine {

namespace default_model_detail {
// The directory of the shared object or program this code was linked into.
inline std::filesystem::path own_binary_dir() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&own_binary_dir), &info) == 0 || !info.dli_fname) return {};
  std::error_code ec;
  std::filesystem::path binary = std::filesystem::canonical(info.dli_fname, ec);
  return ec ? std::filesystem::path(info.dli_fname).parent_path() : binary.parent_path();
}
}  // namespace default_model_detail

// The default model's directory, searched in this order: $SIBYL_DEFAULT_MODEL (when set, only
// there); the install layout next to the binary holding this code (libsibyl.so in <prefix>/lib,
// or a program in <prefix>/bin), so a moved prefix keeps working; the configured install prefix
// (a program elsewhere linking libsibyl.a); the source tree this was built from. Empty when none
// has a config.json; `searched` lists the places tried.
inline std::string find_default_model(std::string& searched) {
  namespace fs = std::filesystem;
  auto is_model = [](const fs::path& dir) {
    std::error_code ec;
    return fs::is_regular_file(dir / "config.json", ec);
  };
  if (const char* env = std::getenv("SIBYL_DEFAULT_MODEL"); env && *env) {
    searched = std::string("$SIBYL_DEFAULT_MODEL=") + env;  // an explicit choice is never replaced
    return is_model(env) ? std::string(env) : std::string();
  }
  searched.clear();
  auto consider = [&](const fs::path& dir) {
    searched += (searched.empty() ? "" : ", ") + dir.string();
    return is_model(dir);
  };
  if (fs::path dir = default_model_detail::own_binary_dir(); !dir.empty())
    for (const char* relative : {SIBYL_MODEL_FROM_LIBDIR, SIBYL_MODEL_FROM_BINDIR})
      if (fs::path candidate = (dir / relative).lexically_normal(); consider(candidate)) return candidate.string();
  for (const char* dir : {SIBYL_CONFIGURED_MODEL_DIR, SIBYL_SOURCE_MODEL_DIR})
    if (consider(dir)) return dir;
  return {};
}

}  // namespace sibyl::engine
