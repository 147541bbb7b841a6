// Shared by the CUDA backend's host code and its kernel launchers: what a launcher runs with, and
// CUDA errors turned into engine failures.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <string>

namespace sibyl::backend::cuda {

// What a launcher needs: the backend's stream and cuBLAS handle (bound to that stream).
struct Exec {
  cudaStream_t stream = nullptr;
  cublasHandle_t blas = nullptr;
  int sm_count = 1;
};

// Throws engine::Failure(Errc::backend, "CUDA backend: <what>: <CUDA's message>").
[[noreturn]] void throw_cuda(cudaError_t err, const std::string& what);
[[noreturn]] void throw_cublas(cublasStatus_t st, const std::string& what);

inline void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) throw_cuda(err, what);
}
inline void check_blas(cublasStatus_t st, const char* what) {
  if (st != CUBLAS_STATUS_SUCCESS) throw_cublas(st, what);
}
// After a kernel launch: a bad configuration shows here, a fault only at the next synchronisation.
inline void check_launch(const char* what) { check(cudaGetLastError(), what); }

}  // namespace sibyl::backend::cuda
