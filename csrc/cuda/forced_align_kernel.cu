// CTC forced alignment on CUDA: one block per sample runs the Viterbi
// recursion over the sample's 2 L + 1 extended-label states (each thread a
// stride of states, a barrier per frame), packs every frame's moves into two
// bit planes with warp ballots (2 bits per state), and its first thread traces
// the path back. The comparisons, tie rule and additions are those of the CPU
// op (csrc/cpu/forced_align_cpu.cpp), so both return the same path bit for bit,
// wildcard (star) included.
// Lengths are clamped and a label outside [0, C) scores NaN, which no
// comparison prefers, so such a sample has no finite path: unchecked values
// stay memory-safe.
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <limits>

#include "ctcx/forced_align_star.h"
#include "forced_align_cuda.h"
#include "launch.cuh"

namespace ctcx {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarp = 32;
constexpr unsigned kAllLanes = 0xffffffffu;

__device__ __forceinline__ int64_t clamp_to(int64_t v, int64_t hi) {
  return v < 0 ? 0 : (v > hi ? hi : v);
}

template <typename scalar_t>
struct Sample {
  using acc_t = typename AccType<scalar_t>::type;
  const scalar_t* lp;
  const int64_t* target;
  int64_t L, C, blank, stride_t;
  // The wildcard's candidates of this sample at frame 0 (frame t: + t N K), or nullptr.
  const acc_t* star_values;
  const int64_t* star_classes;
  int64_t N, K;

  // The class of extended state s and its log-probability at frame t (NaN
  // for a label outside [0, C), which is then read nowhere); with a
  // wildcard, a blank state's value is the larger of the blank's and the
  // wildcard's (the blank's on a tie), as on the CPU.
  __device__ int64_t ext(int64_t s) const { return (s & 1) ? target[s >> 1] : blank; }
  // The wildcard's score at frame t in the gap of blank state s (-inf without one).
  __device__ acc_t star(int64_t t, int64_t s) const {
    if (star_values == nullptr) return -std::numeric_limits<acc_t>::infinity();
    const int64_t base = t * N * K;
    return star_score(star_values + base, star_classes + base, K, blank, s > 0 ? ext(s - 1) : -1,
                      s + 1 < 2 * L + 1 ? ext(s + 1) : -1);
  }
  __device__ acc_t value(int64_t t, int64_t s) const {
    const int64_t c = ext(s);
    if (c < 0 || c >= C) return std::numeric_limits<acc_t>::quiet_NaN();
    const acc_t v = static_cast<acc_t>(lp[t * stride_t + c]);
    if (star_values == nullptr || (s & 1)) return v;
    const acc_t w = star(t, s);
    return w > v ? w : v;
  }
};

template <typename scalar_t>
__global__ void __launch_bounds__(kThreads) forced_align_kernel(ForcedAlignParams<scalar_t> p) {
  using acc_t = typename AccType<scalar_t>::type;
  const acc_t neg_inf = -std::numeric_limits<acc_t>::infinity();
  const int64_t n = blockIdx.x;
  const int64_t frames = clamp_to(p.input_lengths[n], p.T);
  const int64_t L = clamp_to(p.target_lengths[n], p.S);
  const int64_t states = 2 * L + 1;
  const Sample<scalar_t> x{p.log_probs + n * p.stride_n, p.targets + n * p.S, L, p.C, p.blank,
                           p.stride_t, p.star_values == nullptr ? nullptr : p.star_values + n * p.K,
                           p.star_classes == nullptr ? nullptr : p.star_classes + n * p.K, p.N, p.K};

  const int64_t width = 2 * p.S + 1;
  acc_t* alpha = static_cast<acc_t*>(p.workspace) + n * 2 * width;
  acc_t* next = alpha + width;
  const size_t rows = static_cast<size_t>(p.N) * 2 * static_cast<size_t>(width) * sizeof(acc_t);
  const int64_t words = forced_align_plane_words(p.S);
  uint32_t* moves =
      reinterpret_cast<uint32_t*>(static_cast<unsigned char*>(p.workspace) + (rows + 255) / 256 * 256) +
      n * p.T * 2 * words;

  int64_t* labels = p.labels + n * p.T;
  scalar_t* scores = p.scores + n * p.T;
  for (int64_t t = threadIdx.x; t < p.T; t += blockDim.x) {
    labels[t] = p.blank;
    scores[t] = scalar_t(0);
  }
  if (frames > 0) {
    for (int64_t s = threadIdx.x; s < states; s += blockDim.x) {
      alpha[s] = s < 2 ? x.value(0, s) : neg_inf;
    }
  }
  __syncthreads();

  const int lane = threadIdx.x % kWarp;
  // Every warp runs whole rounds of 32 states, so the ballots see full warps.
  const int64_t rounds = (states + blockDim.x - 1) / blockDim.x;
  for (int64_t t = 1; t < frames; ++t) {
    uint32_t* plane = moves + t * 2 * words;
    for (int64_t r = 0; r < rounds; ++r) {
      const int64_t s = r * blockDim.x + threadIdx.x;
      int move = 0;
      if (s < states) {
        acc_t best = alpha[s];
        if (s >= 1 && alpha[s - 1] > best) {
          best = alpha[s - 1];
          move = 1;
        }
        if (s >= 2 && (s & 1) && x.ext(s) != x.ext(s - 2) && alpha[s - 2] > best) {
          best = alpha[s - 2];
          move = 2;
        }
        next[s] = best + x.value(t, s);
      }
      const unsigned low = __ballot_sync(kAllLanes, move & 1);
      const unsigned high = __ballot_sync(kAllLanes, move >> 1);
      const int64_t word = (s - lane) / kWarp;
      if (lane == 0 && word < words) {
        plane[word] = low;
        plane[words + word] = high;
      }
    }
    __syncthreads();
    acc_t* swap = alpha;
    alpha = next;
    next = swap;
  }

  if (threadIdx.x == 0) {
    if (frames == 0) {
      p.path_scores[n] = L == 0 ? acc_t(0) : neg_inf;
      return;
    }
    int64_t s = states - 1;
    if (states > 1 && alpha[states - 2] > alpha[states - 1]) s = states - 2;
    const acc_t total = alpha[s];
    p.path_scores[n] = total;
    if (!(total > neg_inf)) return;
    for (int64_t t = frames - 1; t >= 0; --t) {
      const int64_t c = x.ext(s);
      const acc_t w = (s & 1) ? -std::numeric_limits<acc_t>::infinity() : x.star(t, s);
      if (w > static_cast<acc_t>(x.lp[t * x.stride_t + c])) {
        labels[t] = p.C;
        scores[t] = static_cast<scalar_t>(w);
      } else {
        labels[t] = c;
        scores[t] = x.lp[t * x.stride_t + c];
      }
      if (t > 0) {
        const uint32_t* plane = moves + t * 2 * words;
        const int bit = static_cast<int>(s % kWarp);
        const int64_t word = s / kWarp;
        s -= static_cast<int64_t>(((plane[word] >> bit) & 1u) |
                                  (((plane[words + word] >> bit) & 1u) << 1));
      }
    }
  }
}

}  // namespace

template <typename scalar_t>
cudaError_t forced_align_cuda(const ForcedAlignParams<scalar_t>& p, cudaStream_t stream) {
  if (p.N == 0) return cudaSuccess;
  return launch(forced_align_kernel<scalar_t>, dim3(static_cast<unsigned>(p.N)), dim3(kThreads), 0,
                stream, p);
}

template cudaError_t forced_align_cuda<c10::Half>(const ForcedAlignParams<c10::Half>&, cudaStream_t);
template cudaError_t forced_align_cuda<c10::BFloat16>(const ForcedAlignParams<c10::BFloat16>&,
                                                       cudaStream_t);
template cudaError_t forced_align_cuda<float>(const ForcedAlignParams<float>&, cudaStream_t);
template cudaError_t forced_align_cuda<double>(const ForcedAlignParams<double>&, cudaStream_t);

}  // namespace cuda
}  // namespace ctcx
