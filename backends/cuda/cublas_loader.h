// cuBLAS, opened at run time: libsibyl.so has no link-time dependency on it (a player's PC
// without CUDA must still start programs linked with Sibyl), and the ~100 MiB it maps are paid
// only when a CUDA backend is created. The CUDA runtime itself is linked statically (it opens
// the driver, libcuda.so.1, on first use the same way).
#pragma once
#include <cublas_v2.h>

namespace sibyl::backend::cuda {

// The entry points the backend calls (cublas_v2.h's names map to the _v2 symbols).
struct Cublas {
  decltype(&cublasCreate) create;
  decltype(&cublasDestroy) destroy;
  decltype(&cublasSetStream) set_stream;
  decltype(&cublasSetMathMode) set_math_mode;
  decltype(&cublasSetWorkspace) set_workspace;
  decltype(&cublasSgemm) sgemm;
  decltype(&cublasSgemmStridedBatched) sgemm_strided_batched;
  decltype(&cublasGetStatusString) status_string;
};

// Opens libcublas (the toolkit's major version first, then any) once per process and returns its
// entry points; engine::Failure(Errc::backend) naming the library and the loader's message when
// it is missing or lacks a symbol. Thread-safe.
const Cublas& cublas();

}  // namespace sibyl::backend::cuda
