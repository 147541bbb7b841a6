#include "backends/cuda/cublas_loader.h"

#include <dlfcn.h>

#include <mutex>
#include <string>

#include "engine/core/failure.h"

namespace sibyl::backend::cuda {
namespace {

// Two steps so that cublas_v2.h's macros (cublasCreate -> cublasCreate_v2) expand first.
#define SIBYL_SYMBOL_NAME(name) #name
#define SIBYL_CUBLAS_SYMBOL(name) SIBYL_SYMBOL_NAME(name)

struct Loaded {
  Cublas api{};
  std::string error;  // empty when loaded
};

template <class Fn>
bool resolve(void* lib, const char* symbol, Fn& out, std::string& error) {
  out = reinterpret_cast<Fn>(dlsym(lib, symbol));
  if (!out && error.empty()) error = std::string("symbol ") + symbol + " missing from cuBLAS";
  return out != nullptr;
}

Loaded load() {
  Loaded r;
  void* lib = nullptr;
  std::string tried;
  for (const char* name : {SIBYL_CUBLAS_SONAME, "libcublas.so"}) {
    lib = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (lib) break;
    const char* why = dlerror();
    tried += std::string(tried.empty() ? "" : "; ") + (why ? why : name);
  }
  if (!lib) {
    r.error = "cannot open cuBLAS (" + tried + ")";
    return r;
  }
  // The library stays open for the life of the process: cuBLAS handles may outlive any owner here.
  resolve(lib, SIBYL_CUBLAS_SYMBOL(cublasCreate), r.api.create, r.error);
  resolve(lib, SIBYL_CUBLAS_SYMBOL(cublasDestroy), r.api.destroy, r.error);
  resolve(lib, SIBYL_CUBLAS_SYMBOL(cublasSetStream), r.api.set_stream, r.error);
  resolve(lib, SIBYL_CUBLAS_SYMBOL(cublasSetMathMode), r.api.set_math_mode, r.error);
  resolve(lib, SIBYL_CUBLAS_SYMBOL(cublasSetWorkspace), r.api.set_workspace, r.error);
  resolve(lib, SIBYL_CUBLAS_SYMBOL(cublasSgemm), r.api.sgemm, r.error);
  resolve(lib, SIBYL_CUBLAS_SYMBOL(cublasSgemmStridedBatched), r.api.sgemm_strided_batched, r.error);
  resolve(lib, SIBYL_CUBLAS_SYMBOL(cublasGetStatusString), r.api.status_string, r.error);
  return r;
}

}  // namespace

const Cublas& cublas() {
  static const Loaded loaded = load();
  if (!loaded.error.empty()) engine::fail(engine::Errc::backend, "CUDA backend: " + loaded.error);
  return loaded.api;
}

}  // namespace sibyl::backend::cuda
