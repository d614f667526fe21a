// Best-path CTC decoding on CUDA, two kernels on one stream:
//   1. greedy_argmax_kernel (one warp per (t, n) row): the row's argmax, with
//      torch.argmax's order (ctcx/ctc_decode.h), into a (N, T) workspace;
//   2. greedy_collapse_kernel (one warp per sample): repeats merged and blanks
//      dropped, 32 frames per step with a ballot for the output positions.
// Input lengths are clamped into [0, T], so unchecked values stay memory-safe.
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "ctc_decode_cuda.h"
#include "ctcx/ctc_decode.h"
#include "launch.cuh"

namespace ctcx {
namespace cuda {
namespace {

constexpr int kWarp = 32;
constexpr int kWarpsPerBlock = 8;
constexpr unsigned kAllLanes = 0xffffffffu;

__device__ __forceinline__ int64_t frames_of(const int64_t* input_lengths, int64_t n, int64_t T) {
  const int64_t length = input_lengths[n];
  return length < 0 ? 0 : (length > T ? T : length);
}

template <typename scalar_t>
__global__ void __launch_bounds__(kWarpsPerBlock* kWarp)
    greedy_argmax_kernel(GreedyDecodeParams<scalar_t> p) {
  using acc_t = typename AccType<scalar_t>::type;
  const int lane = threadIdx.x % kWarp;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
  if (row >= p.T * p.N) return;  // whole warps: the shuffles below see full warps
  const int64_t t = row / p.N;
  const int64_t n = row % p.N;
  if (t >= frames_of(p.input_lengths, n, p.T)) return;
  const scalar_t* x = p.log_probs + t * p.stride_t + n * p.stride_n;
  acc_t best = 0;
  int32_t best_c = -1;
  for (int64_t c = lane; c < p.C; c += kWarp) {
    const acc_t v = static_cast<acc_t>(x[c]);
    if (best_c < 0 || decode::argmax_better(v, c, best, static_cast<int64_t>(best_c))) {
      best = v;
      best_c = static_cast<int32_t>(c);
    }
  }
  // The order is total, so the reduction order does not matter.
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    const acc_t other = __shfl_xor_sync(kAllLanes, best, offset);
    const int32_t other_c = __shfl_xor_sync(kAllLanes, best_c, offset);
    if (other_c >= 0 && (best_c < 0 || decode::argmax_better(other, static_cast<int64_t>(other_c),
                                                             best, static_cast<int64_t>(best_c)))) {
      best = other;
      best_c = other_c;
    }
  }
  if (lane == 0) p.best[n * p.T + t] = best_c;
}

template <typename scalar_t>
__global__ void __launch_bounds__(kWarpsPerBlock* kWarp)
    greedy_collapse_kernel(GreedyDecodeParams<scalar_t> p) {
  const int lane = threadIdx.x % kWarp;
  const int64_t n = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
  if (n >= p.N) return;
  const int64_t frames = frames_of(p.input_lengths, n, p.T);
  const int32_t* best = p.best + n * p.T;
  int64_t* out = p.tokens + n * p.T;
  int64_t count = 0;
  for (int64_t base = 0; base < frames; base += kWarp) {
    const int64_t t = base + lane;
    const int32_t c = t < frames ? best[t] : -1;
    const int32_t prev = t >= 1 && t < frames ? best[t - 1] : -1;
    const bool keep = t < frames && c != p.blank && c != prev;
    const unsigned mask = __ballot_sync(kAllLanes, keep);
    if (keep) out[count + __popc(mask & ((1u << lane) - 1))] = c;
    count += __popc(mask);
  }
  for (int64_t t = count + lane; t < p.T; t += kWarp) out[t] = -1;
  if (lane == 0) p.lengths[n] = count;
}

}  // namespace

template <typename scalar_t>
cudaError_t greedy_decode_cuda(const GreedyDecodeParams<scalar_t>& p, cudaStream_t stream) {
  if (p.N == 0) return cudaSuccess;
  cudaError_t err;
  const int64_t rows = p.T * p.N;
  if (rows > 0) {
    err = launch(greedy_argmax_kernel<scalar_t>,
                 dim3(static_cast<unsigned>((rows + kWarpsPerBlock - 1) / kWarpsPerBlock)),
                 dim3(kWarpsPerBlock * kWarp), 0, stream, p);
    if (err != cudaSuccess) return err;
  }
  return launch(greedy_collapse_kernel<scalar_t>,
                dim3(static_cast<unsigned>((p.N + kWarpsPerBlock - 1) / kWarpsPerBlock)),
                dim3(kWarpsPerBlock * kWarp), 0, stream, p);
}

template cudaError_t greedy_decode_cuda<c10::Half>(const GreedyDecodeParams<c10::Half>&, cudaStream_t);
template cudaError_t greedy_decode_cuda<c10::BFloat16>(const GreedyDecodeParams<c10::BFloat16>&,
                                                       cudaStream_t);
template cudaError_t greedy_decode_cuda<float>(const GreedyDecodeParams<float>&, cudaStream_t);
template cudaError_t greedy_decode_cuda<double>(const GreedyDecodeParams<double>&, cudaStream_t);

}  // namespace cuda
}  // namespace ctcx
