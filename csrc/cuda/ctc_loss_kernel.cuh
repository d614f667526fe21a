// Fused CTC loss on CUDA (Graves et al. 2006): kernels and launcher.
//
// One call runs four kernels on one stream, with no host synchronization:
//   1. ctc_prepare_kernel (one block): clamps and checks the lengths, and lays
//      every sample out in the workspace by prefix sums of its lengths (the
//      host never reads them: buffers are sized by upper bounds).
//   2. ctc_gather_kernel (one warp per (t, n) row): for logits, the row's
//      log-sum-exp; then the log-probs of the blank and of the sample's labels
//      into a compact (frames, labels + 1) emission buffer.
//   3. ctc_recursion_kernel (one block per sample, threads over the states of
//      l' = (blank, l_1, blank, ..., l_L, blank)): the beta recursion, stored;
//      then the alpha recursion, which turns alpha_t * beta_t into the state
//      occupancy gamma_t in place of beta_t; and the loss. Loss only: alpha
//      alone, two rows.
//   4. ctc_grad_kernel (one warp per (t, n) row, coalesced): every gradient
//      element written once from gamma (blank states and repeated labels summed
//      in a fixed order), the softmax for logits, zeros past the input length,
//      NaN or zero rows for infeasible samples.
// No atomics and fixed reduction orders: results are bit-identical run to run.
//
// Samples with bad values (possible when the caller skipped validation) get a
// NaN loss and NaN gradient rows: lengths are clamped, labels outside [0, C)
// or equal to the blank are never used as indices.
#pragma once

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <limits>

#include "ctc_loss_cuda.h"
#include "ctcx/log_math.h"
#include "launch.cuh"

namespace ctcx {
namespace cuda {

constexpr int kWarpSize = 32;
constexpr int kRowWarps = 8;  // (t, n) rows per block of the gather and grad kernels
constexpr unsigned kFullMask = 0xffffffffu;

enum SampleStatus : int32_t { kStatusOk = 0, kStatusInfeasible = 1, kStatusBad = 2 };
// label_flags bits: the alpha recursion may skip the blank from label k-1
// into label k (they differ); label k is the first occurrence of its class.
enum LabelFlag : int32_t { kSkipIn = 1, kFirstOccurrence = 2 };

template <typename acc_t>
struct Workspace {
  SampleMeta* meta;
  int32_t* status;
  int32_t* label_flags;
  int32_t* label_next;     // next position with the same label, -1 at the last
  double* beta_log_scale;  // (N, T): log of the factor divided out of beta_t
  acc_t* lse;              // (T, N) log-sum-exp of each logits row (gradient only)
  acc_t* emit;
  acc_t* beta;
  acc_t* alpha;  // nullptr: the recursion kernel keeps alpha in shared memory
  size_t alpha_shared_bytes;
};

template <typename acc_t>
Workspace<acc_t> carve_workspace(void* base, const WorkspaceLayout& w) {
  char* b = static_cast<char*>(base);
  auto at = [b](size_t offset) -> void* { return offset == kAbsent ? nullptr : b + offset; };
  return {static_cast<SampleMeta*>(at(w.meta)),     static_cast<int32_t*>(at(w.status)),
          static_cast<int32_t*>(at(w.label_flags)), static_cast<int32_t*>(at(w.label_next)),
          static_cast<double*>(at(w.beta_log_scale)), static_cast<acc_t*>(at(w.lse)),
          static_cast<acc_t*>(at(w.emit)),          static_cast<acc_t*>(at(w.beta)),
          static_cast<acc_t*>(at(w.alpha)),         w.alpha_shared_bytes};
}

template <typename T>
__device__ __forceinline__ T quiet_nan() {
  return std::numeric_limits<T>::quiet_NaN();
}

// Sum over the warp in a fixed tree order; every lane gets lane 0's result.
template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    v += __shfl_down_sync(kFullMask, v, offset);
  }
  return __shfl_sync(kFullMask, v, 0);
}

// Max over the warp, ignoring NaN (exact, so the order does not matter).
template <typename T>
__device__ __forceinline__ T warp_max(T v) {
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    v = fmax(v, __shfl_xor_sync(kFullMask, v, offset));
  }
  return v;
}

// log sum_c exp(row[c]) by one warp, shifted by the row's maximum as on the CPU.
template <typename acc_t, typename scalar_t>
__device__ acc_t warp_row_log_sum_exp(const scalar_t* row, int64_t C, int lane) {
  acc_t m = neg_inf<acc_t>();
  for (int64_t c = lane; c < C; c += kWarpSize) m = fmax(m, static_cast<acc_t>(row[c]));
  m = warp_max(m);
  const acc_t shift = (m == neg_inf<acc_t>() || m == -neg_inf<acc_t>()) ? acc_t(0) : m;
  acc_t sum = 0;
  for (int64_t c = lane; c < C; c += kWarpSize) sum += exp_(static_cast<acc_t>(row[c]) - shift);
  return shift + log_(warp_sum(sum));
}

template <typename scalar_t, typename target_t>
__global__ void __launch_bounds__(kRowWarps* kWarpSize)
    ctc_gather_kernel(CtcLossParams<scalar_t, target_t> p,
                      Workspace<typename AccType<scalar_t>::type> ws) {
  using acc_t = typename AccType<scalar_t>::type;
  const int lane = threadIdx.x % kWarpSize;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowWarps + threadIdx.x / kWarpSize;
  if (row >= p.T * p.N) return;  // whole warps: the shuffles below see full warps
  const int64_t t = row / p.N;
  const int64_t n = row % p.N;
  const SampleMeta m = ws.meta[n];
  if (m.bad || t >= m.frames) return;
  const scalar_t* x = p.input + t * p.input_stride_t + n * p.input_stride_n;
  acc_t lse = 0;
  if (p.logits) {
    lse = warp_row_log_sum_exp<acc_t>(x, p.C, lane);
    if (ws.lse && lane == 0) ws.lse[row] = lse;
  }
  acc_t* e = ws.emit + m.emit_offset + t * (m.labels + 1);
  const target_t* label = p.targets + m.target_offset;
  for (int64_t k = lane; k <= m.labels; k += kWarpSize) {
    const int64_t c = k == 0 ? p.blank : static_cast<int64_t>(label[k - 1]);
    const bool valid = k == 0 || (c >= 0 && c < p.C && c != p.blank);
    e[k] = valid ? static_cast<acc_t>(x[c]) - lse : quiet_nan<acc_t>();
  }
}

template <typename scalar_t, typename target_t>
__global__ void __launch_bounds__(kRowWarps* kWarpSize)
    ctc_grad_kernel(CtcLossParams<scalar_t, target_t> p,
                    Workspace<typename AccType<scalar_t>::type> ws) {
  using acc_t = typename AccType<scalar_t>::type;
  const int lane = threadIdx.x % kWarpSize;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kRowWarps + threadIdx.x / kWarpSize;
  if (row >= p.T * p.N) return;
  const int64_t t = row / p.N;
  const int64_t n = row % p.N;
  const int64_t C = p.C;
  scalar_t* g = p.grad + t * p.grad_stride_t + n * p.grad_stride_n;
  const SampleMeta m = ws.meta[n];
  const int32_t status = ws.status[n];
  if (t >= m.frames || status != kStatusOk) {
    // Past the input length: no gradient. Infeasible: zero under
    // zero_infinity, else NaN as in torch.nn.CTCLoss; bad values: NaN.
    const bool zero = t >= m.frames || (status == kStatusInfeasible && p.zero_infinity);
    const scalar_t fill = zero ? scalar_t(0) : static_cast<scalar_t>(quiet_nan<acc_t>());
    for (int64_t c = lane; c < C; c += kWarpSize) g[c] = fill;
    return;
  }
  const acc_t w = p.grad_weights[n];
  const scalar_t* x = p.input + t * p.input_stride_t + n * p.input_stride_n;
  const acc_t lse = p.logits ? ws.lse[row] : acc_t(0);
  // Every class first (w * softmax, or 0), then the blank and the labels are
  // overwritten after __syncwarp, which orders the two writes.
  if (p.logits) {
    for (int64_t c = lane; c < C; c += kWarpSize) {
      g[c] = static_cast<scalar_t>(w * exp_(static_cast<acc_t>(x[c]) - lse));
    }
  } else {
    for (int64_t c = lane; c < C; c += kWarpSize) g[c] = scalar_t(0);
  }
  __syncwarp();
  const int64_t L = m.labels;
  const acc_t* gamma = ws.beta + m.beta_offset + t * (2 * L + 1);
  acc_t blank_occ = 0;
  for (int64_t j = lane; j <= L; j += kWarpSize) blank_occ += gamma[2 * j];
  blank_occ = warp_sum(blank_occ);
  auto write = [&](int64_t c, acc_t occ) {
    g[c] = static_cast<scalar_t>(
        p.logits ? w * (exp_(static_cast<acc_t>(x[c]) - lse) - occ) : -w * occ);
  };
  if (lane == 0) write(p.blank, blank_occ);
  const target_t* label = p.targets + m.target_offset;
  const int32_t* flags = ws.label_flags + m.label_offset;
  const int32_t* next = ws.label_next + m.label_offset;
  for (int64_t k = lane; k < L; k += kWarpSize) {
    if (!(flags[k] & kFirstOccurrence)) continue;
    acc_t occ = 0;
    for (int64_t j = k; j >= 0; j = next[j]) occ += gamma[2 * j + 1];
    write(static_cast<int64_t>(label[k]), occ);
  }
}

// Launchers of the dtype-independent kernels (ctc_loss_recursion.cu).
struct PrepareParams {
  const int64_t* input_lengths;
  const int64_t* target_lengths;
  int64_t T, N;
  bool padded;
  int64_t S, numel;
  SampleMeta* meta;
};
cudaError_t launch_prepare(const PrepareParams& p, cudaStream_t stream);

template <typename acc_t, typename target_t>
struct RecursionParams {
  const target_t* targets;
  int64_t T, N, C, blank;
  bool grad, zero_infinity;
  int64_t typical_labels;  // a guess of the longest target, to pick the block size
  acc_t* loss;
  Workspace<acc_t> ws;
};
template <typename acc_t, typename target_t>
cudaError_t launch_recursion(const RecursionParams<acc_t, target_t>& p, cudaStream_t stream);

template <typename scalar_t, typename target_t>
cudaError_t ctc_loss_cuda(const CtcLossParams<scalar_t, target_t>& p, cudaStream_t stream) {
  using acc_t = typename AccType<scalar_t>::type;
  if (p.N == 0) return cudaSuccess;
  const Workspace<acc_t> ws = carve_workspace<acc_t>(p.workspace, workspace_layout(p));
  cudaError_t err = launch_prepare(
      {p.input_lengths, p.target_lengths, p.T, p.N, p.padded, p.S, p.numel, ws.meta}, stream);
  if (err != cudaSuccess) return err;

  const int64_t rows = p.T * p.N;
  const dim3 grid(static_cast<unsigned>((rows + kRowWarps - 1) / kRowWarps));
  if (rows > 0) {
    err = launch(ctc_gather_kernel<scalar_t, target_t>, grid, dim3(kRowWarps * kWarpSize), 0,
                 stream, p, ws);
    if (err != cudaSuccess) return err;
  }

  // Concatenated targets bound one sample only by all of them; twice the mean
  // length is a better guess of the longest for the block size.
  const int64_t typical = p.padded ? p.S : 2 * ((p.numel + p.N - 1) / p.N);
  err = launch_recursion<acc_t, target_t>(
      {p.targets, p.T, p.N, p.C, p.blank, p.grad != nullptr, p.zero_infinity,
       typical < p.max_labels() ? typical : p.max_labels(), p.loss, ws},
      stream);
  if (err != cudaSuccess) return err;

  if (p.grad && rows > 0) {
    err = launch(ctc_grad_kernel<scalar_t, target_t>, grid, dim3(kRowWarps * kWarpSize), 0,
                 stream, p, ws);
    if (err != cudaSuccess) return err;
  }
  return cudaSuccess;
}

// Explicit instantiation for one input dtype, both target dtypes.
#define CTCX_INSTANTIATE_CTC_LOSS_CUDA(scalar_t)                              \
  template cudaError_t ctc_loss_cuda<scalar_t, int32_t>(                    \
      const CtcLossParams<scalar_t, int32_t>&, cudaStream_t);               \
  template cudaError_t ctc_loss_cuda<scalar_t, int64_t>(                    \
      const CtcLossParams<scalar_t, int64_t>&, cudaStream_t);

}  // namespace cuda
}  // namespace ctcx
