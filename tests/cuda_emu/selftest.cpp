// Kernels with one deliberate bug each, to show that the CUDA-on-CPU
// emulation (or the sanitizer it runs under) reports what it promises:
//
//   selftest MODE     MODE: ok, missing_barrier, divergent_barrier,
//                     exit_before_barrier, partial_shuffle, foreign_lane,
//                     big_shared, shared_overrun
//
// "ok" runs a correct kernel (shared memory, barriers, shuffles, a ballot)
// and checks its result; every other mode must fail. Used by
// tests/test_cuda_emulation.py.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "launch.cuh"

using ctcx::cuda::dynamic_smem;
using ctcx::cuda::launch;

namespace {

constexpr unsigned kAll = 0xffffffffu;

// Block sum by shared memory and warp shuffles; out[block] = sum of 0..n-1.
__global__ void ok_kernel(int* out) {
  int* s = dynamic_smem<int>();
  const int tid = threadIdx.x;
  s[tid] = tid;
  __syncthreads();
  int v = s[(tid + 1) % blockDim.x];  // another thread's value: needs the barrier above
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(kAll, v, offset);
  const unsigned odd = __ballot_sync(kAll, tid & 1);
  __syncthreads();  // every read of s is done before it is reused
  if (tid % 32 == 0) s[tid / 32] = v + (odd == 0xaaaaaaaau ? 0 : 1000000);
  __syncthreads();
  if (tid == 0) {
    int total = 0;
    for (unsigned w = 0; w < blockDim.x / 32; ++w) total += s[w];
    out[blockIdx.x] = total;
  }
}

__global__ void missing_barrier_kernel(int* out) {
  int* s = dynamic_smem<int>();
  const int tid = threadIdx.x;
  s[tid] = tid;
  // no __syncthreads(): the read below races with another thread's write
  out[blockIdx.x * blockDim.x + tid] = s[(tid + 1) % blockDim.x];
}

__global__ void divergent_barrier_kernel(int* out) {
  if (threadIdx.x < 16) {
    __syncthreads();
  } else {
    __syncthreads();
  }
  out[threadIdx.x] = 1;
}

__global__ void exit_before_barrier_kernel(int* out) {
  if (threadIdx.x == 5) return;
  __syncthreads();
  out[threadIdx.x] = 1;
}

__global__ void partial_shuffle_kernel(int* out) {
  const int lane = threadIdx.x % 32;
  if (lane < 16) return;
  out[threadIdx.x] = __shfl_xor_sync(kAll, lane, 1);  // names lanes that returned
}

__global__ void foreign_lane_kernel(int* out) {
  out[threadIdx.x] = __shfl_sync(0x0000ffffu, static_cast<int>(threadIdx.x), 0);  // called by all 32
}

__global__ void overrun_kernel(int* out) {
  float* s = dynamic_smem<float>();
  s[threadIdx.x + 1] = 1.0f;  // one past the launch's shared memory for the last thread
  __syncthreads();
  out[threadIdx.x] = static_cast<int>(s[threadIdx.x]);
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "ok";
  std::vector<int> out(4096, -1);
  if (mode == "ok") {
    const unsigned threads = 128, blocks = 3;
    launch(ok_kernel, dim3(blocks), dim3(threads), threads * sizeof(int), nullptr, out.data());
    // sum over t of s[(t + 1) % 128] = 0 + ... + 127, warp leaders' sums added up
    for (unsigned b = 0; b < blocks; ++b) {
      if (out[b] != 127 * 128 / 2) {
        std::fprintf(stderr, "selftest: block %u gave %d\n", b, out[b]);
        return 1;
      }
    }
    std::printf("selftest ok\n");
    return 0;
  }
  if (mode == "missing_barrier") {
    launch(missing_barrier_kernel, dim3(2), dim3(64), 64 * sizeof(int), nullptr, out.data());
  } else if (mode == "divergent_barrier") {
    launch(divergent_barrier_kernel, dim3(1), dim3(32), 0, nullptr, out.data());
  } else if (mode == "exit_before_barrier") {
    launch(exit_before_barrier_kernel, dim3(1), dim3(64), 0, nullptr, out.data());
  } else if (mode == "partial_shuffle") {
    launch(partial_shuffle_kernel, dim3(1), dim3(32), 0, nullptr, out.data());
  } else if (mode == "foreign_lane") {
    launch(foreign_lane_kernel, dim3(1), dim3(32), 0, nullptr, out.data());
  } else if (mode == "big_shared") {
    launch(ok_kernel, dim3(1), dim3(64), 64 * 1024, nullptr, out.data());
  } else if (mode == "shared_overrun") {
    launch(overrun_kernel, dim3(1), dim3(32), 32 * sizeof(float), nullptr, out.data());
  } else {
    std::fprintf(stderr, "selftest: unknown mode %s\n", mode.c_str());
    return 2;
  }
  std::printf("selftest: %s was not reported\n", mode.c_str());
  return 0;
}
