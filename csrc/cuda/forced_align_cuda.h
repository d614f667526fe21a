// Interface between the CUDA glue of forced alignment (forced_align_cuda.cpp)
// and its kernel (forced_align_kernel.cu): a plain parameter struct, the
// workspace size both sides agree on, and the launcher. No torch types.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "ctc_loss_cuda.h"  // AccType
#include "ctcx/log_math.h"  // CTCX_HOST_DEVICE

namespace ctcx {
namespace cuda {

template <typename scalar_t>
struct ForcedAlignParams {
  using acc_t = typename AccType<scalar_t>::type;

  const scalar_t* log_probs;  // (T, N, C), unit class stride
  int64_t T, N, C;
  int64_t stride_t, stride_n;
  const int64_t* targets;         // (N, S) padded
  int64_t S;                      // padded target width
  const int64_t* input_lengths;   // (N,); clamped into [0, T]
  const int64_t* target_lengths;  // (N,); clamped into [0, S]
  int64_t blank;
  // The wildcard's candidates (ctcx/forced_align_star.h), or nullptr for none:
  const acc_t* star_values;     // (T, N, K)
  const int64_t* star_classes;  // (T, N, K)
  int64_t K;

  int64_t* labels;     // (N, T)
  scalar_t* scores;    // (N, T)
  acc_t* path_scores;  // (N,)

  // Workspace: per sample two rows of 2 S + 1 scores, then the backpointers
  // of T frames, each frame two bit planes of ceil((2 S + 1) / 32) words
  // (2 bits per state; forced_align_workspace_bytes).
  void* workspace;
};

// Words of one bit plane of one frame.
CTCX_HOST_DEVICE int64_t forced_align_plane_words(int64_t S) { return (2 * S + 1 + 31) / 32; }

template <typename scalar_t>
size_t forced_align_workspace_bytes(const ForcedAlignParams<scalar_t>& p) {
  using acc_t = typename AccType<scalar_t>::type;
  const size_t states = static_cast<size_t>(2 * p.S + 1);
  const size_t rows = static_cast<size_t>(p.N) * 2 * states * sizeof(acc_t);
  const size_t rows_aligned = (rows + 255) / 256 * 256;
  const size_t moves = static_cast<size_t>(p.N) * static_cast<size_t>(p.T) * 2 *
                       static_cast<size_t>(forced_align_plane_words(p.S)) * sizeof(uint32_t);
  return rows_aligned + moves;
}

template <typename scalar_t>
cudaError_t forced_align_cuda(const ForcedAlignParams<scalar_t>& params, cudaStream_t stream);

}  // namespace cuda
}  // namespace ctcx
