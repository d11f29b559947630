// Jittor 1.3.11's helper_cuda.h reads cudaDeviceProp::computeMode and ::clockRate, two fields that
// CUDA 13 removed, so every Jittor source that includes it fails to compile against CUDA 13.
// jgan.runtime has Jittor force-include this header (-include) into everything it compiles on a
// CUDA machine: cudaDeviceProp then names a type that still has both fields, read with
// cudaDeviceGetAttribute. Before Jittor knows where CUDA's headers are, it does nothing.
#pragma once
#if defined(__cplusplus) && defined(__has_include)
#if __has_include(<cuda_runtime.h>)
#include <cuda_runtime.h>
#if CUDART_VERSION >= 13000
struct jgan_cudaDeviceProp : cudaDeviceProp {
  int computeMode = cudaComputeModeDefault;
  int clockRate = 0;  // kHz
};

inline cudaError_t cudaGetDeviceProperties(jgan_cudaDeviceProp* prop, int device) {
  cudaError_t error = cudaGetDeviceProperties(static_cast<cudaDeviceProp*>(prop), device);
  if (error != cudaSuccess) return error;
  error = cudaDeviceGetAttribute(&prop->computeMode, cudaDevAttrComputeMode, device);
  if (error != cudaSuccess) return error;
  return cudaDeviceGetAttribute(&prop->clockRate, cudaDevAttrClockRate, device);
}

#define cudaDeviceProp jgan_cudaDeviceProp
#endif
#endif
#endif
