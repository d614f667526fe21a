// The kernels' one seam to the hardware besides CUDA's own built-ins: every
// launch goes through launch(), the dynamic shared memory of a block through
// dynamic_smem<T>(), the opt-in to more than 48 KiB of it through
// allow_dynamic_smem(). On the GPU they are the plain CUDA constructs. Built
// with CTCX_CUDA_EMULATION (tests/cuda_emu), the very same kernel sources
// compile with the host compiler instead and run every thread of a block as
// an OS thread, with checked barriers, warp shuffles and shared memory: see
// tests/cuda_emu/ctcx_cuda_emulation.h.
#pragma once

#if defined(CTCX_CUDA_EMULATION)
#include "ctcx_cuda_emulation.h"
#else
#include <cuda_runtime.h>

#include <cstddef>
#include <utility>

namespace ctcx {
namespace cuda {

// kernel<<<grid, block, shared_bytes, stream>>>(args...); returns the launch error.
template <typename... Params, typename... Args>
inline cudaError_t launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared_bytes,
                          cudaStream_t stream, Args&&... args) {
  kernel<<<grid, block, shared_bytes, stream>>>(std::forward<Args>(args)...);
  return cudaGetLastError();
}

// The block's dynamic shared memory (the launch's shared_bytes), 16-byte aligned.
template <typename T>
__device__ __forceinline__ T* dynamic_smem() {
  extern __shared__ __align__(16) unsigned char ctcx_dynamic_shared[];
  return reinterpret_cast<T*>(ctcx_dynamic_shared);
}

// Lets `kernel` use up to `bytes` of dynamic shared memory (needed above 48 KiB).
template <typename... Params>
inline cudaError_t allow_dynamic_smem(void (*kernel)(Params...), size_t bytes) {
  return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                              static_cast<int>(bytes));
}

}  // namespace cuda
}  // namespace ctcx
#endif
