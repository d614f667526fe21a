// Interface between the CUDA glue (ctc_loss_cuda.cpp) and the kernels (*.cu):
// a plain parameter struct, the layout of the device workspace both sides
// agree on, and the launcher. No torch types: the .cu files never see ATen.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace ctcx {
namespace cuda {

// Accumulation type: float for half, bfloat16 and float; double for double.
template <typename scalar_t>
struct AccType {
  using type = float;
};
template <>
struct AccType<double> {
  using type = double;
};

// One fused CTC loss call in canonical form (see csrc/ops.cpp). Every pointer
// is device memory on the current device.
template <typename scalar_t, typename target_t>
struct CtcLossParams {
  using acc_t = typename AccType<scalar_t>::type;

  const scalar_t* input;  // (T, N, C): log-probs, or logits when `logits`
  int64_t T, N, C;
  int64_t input_stride_t, input_stride_n;  // the class stride is 1
  bool logits;

  const target_t* targets;  // contiguous (N, S) padded or (numel,) concatenated
  bool padded;
  int64_t S;      // padded width; 0 when concatenated
  int64_t numel;  // number of entries of `targets`
  const int64_t* input_lengths;   // (N,)
  const int64_t* target_lengths;  // (N,)
  int64_t blank;
  bool zero_infinity;

  acc_t* loss;         // (N,)
  scalar_t* grad;      // (T, N, C) with unit class stride; nullptr: loss only
  int64_t grad_stride_t, grad_stride_n;
  const acc_t* grad_weights;  // (N,); read only when grad != nullptr

  void* workspace;  // workspace_layout(*this).total bytes, 256-byte aligned

  // Lengths are never read on the host, so buffers are sized by bounds: no
  // single target is longer than max_labels(), all of them together hold at
  // most label_capacity() labels (when valid; invalid samples touch nothing).
  int64_t max_labels() const { return padded ? S : numel; }
  int64_t label_capacity() const { return padded ? N * S : numel; }
};

// Per-sample layout decided on the device (ctc_prepare_kernel) from the lengths.
struct SampleMeta {
  int64_t target_offset;  // first label of the sample in `targets`
  int64_t label_offset;   // first entry in the per-label workspace arrays
  int64_t emit_offset;    // (frames, labels + 1) emission log-probs
  int64_t beta_offset;    // (frames, 2 labels + 1) beta, then state occupancy
  int64_t frames;         // input length clamped into [0, T]
  int64_t labels;         // target length; 0 when bad
  int64_t bad;            // lengths out of range or inconsistent with the targets
};

// Byte offsets of the workspace regions; kAbsent for a region of size 0.
constexpr size_t kAbsent = ~size_t(0);

struct WorkspaceLayout {
  size_t meta, status, label_flags, label_next, beta_log_scale, lse, emit, beta, alpha;
  size_t total;
  // Dynamic shared memory of the recursion kernel: two alpha rows of the
  // longest possible target when they fit, else 0 and `alpha` holds them.
  size_t alpha_shared_bytes;
};

// Below the 48 KiB a block may use without an opt-in attribute, leaving room
// for the kernel's static shared memory.
constexpr size_t kMaxAlphaSharedBytes = 46 * 1024;

template <typename scalar_t, typename target_t>
WorkspaceLayout workspace_layout(const CtcLossParams<scalar_t, target_t>& p) {
  using acc_t = typename AccType<scalar_t>::type;
  const bool grad = p.grad != nullptr;
  const size_t T = static_cast<size_t>(p.T), N = static_cast<size_t>(p.N);
  const size_t labels = static_cast<size_t>(p.label_capacity());
  const size_t max_states = 2 * static_cast<size_t>(p.max_labels()) + 1;
  const size_t alpha_shared = 2 * max_states * sizeof(acc_t);

  WorkspaceLayout w{};
  size_t at = 0;
  auto region = [&at](size_t bytes) {
    const size_t begin = at;
    at += (bytes + 255) / 256 * 256;
    return bytes ? begin : kAbsent;
  };
  w.meta = region(N * sizeof(SampleMeta));
  w.status = region(N * sizeof(int32_t));
  w.label_flags = region(labels * sizeof(int32_t));
  w.label_next = region(grad ? labels * sizeof(int32_t) : 0);
  w.beta_log_scale = region(grad ? T * N * sizeof(double) : 0);
  w.lse = region(grad && p.logits ? T * N * sizeof(acc_t) : 0);
  // Samples are packed by prefix sums of their lengths: sum_n frames (labels + 1)
  // <= T (label_capacity + N), sum_n frames (2 labels + 1) <= T (2 label_capacity + N).
  w.emit = region(T * (labels + N) * sizeof(acc_t));
  w.beta = region(grad ? T * (2 * labels + N) * sizeof(acc_t) : 0);
  w.alpha_shared_bytes = alpha_shared <= kMaxAlphaSharedBytes ? alpha_shared : 0;
  w.alpha = region(w.alpha_shared_bytes ? 0 : 2 * (2 * labels + N) * sizeof(acc_t));
  w.total = at;
  return w;
}

// Runs the whole computation on `stream` without synchronizing. Returns the
// first launch error (cudaSuccess when every kernel was launched).
template <typename scalar_t, typename target_t>
cudaError_t ctc_loss_cuda(const CtcLossParams<scalar_t, target_t>& params, cudaStream_t stream);

}  // namespace cuda
}  // namespace ctcx
