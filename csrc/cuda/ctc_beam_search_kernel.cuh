// CTC prefix beam search on CUDA: kernels and launcher. The algorithm, and
// the per-frame step every block runs, are those of ctcx/ctc_decode.h (the
// CPU runs the same step with a single-thread group).
//
// Frames are processed in chunks (the token lists of a chunk fit a fixed
// budget); per chunk two kernels run on one stream, then one at the end:
//   1. beam_top_tokens_kernel (one block per (frame, sample) row, all rows of
//      the chunk at once): the row's 2K best tokens, sorted, or -1 for a
//      blank-skipped frame. This part does not depend on the beam.
//   2. beam_search_frames_kernel (one block per sample): the frame steps of
//      the chunk, one after the other; the beam and its history persist in
//      the workspace between chunks, the step's scratch lives in shared
//      memory when it fits (global memory otherwise, same code).
//   3. beam_hypotheses_kernel (one thread per (sample, hypothesis)): tokens
//      and start frames read back through the history.
// No host synchronization, no atomics, fixed orders: results are
// deterministic. Input lengths are clamped into [0, T], so unchecked values
// stay memory-safe.
#pragma once

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "ctc_decode_cuda.h"
#include "ctcx/ctc_decode.h"
#include "launch.cuh"

namespace ctcx {
namespace cuda {

constexpr int kMaxTopThreads = 256;
constexpr int kMaxSearchThreads = 512;
constexpr int kHypothesisThreads = 128;

// A thread block as the cooperative group of ctcx/ctc_decode.h.
struct BlockGroup {
  __device__ int rank() const { return threadIdx.x; }
  __device__ int size() const { return blockDim.x; }
  __device__ void sync() const { __syncthreads(); }
  __device__ int32_t exclusive_scan(int32_t* v, int32_t n, int32_t* tmp) {
    return decode::coop_exclusive_scan(*this, v, n, tmp);
  }
  template <typename acc_t>
  __device__ void find_parents(const decode::BeamView<acc_t>& b, int32_t nb, int32_t* parent) {
    decode::coop_find_parents(*this, b, nb, parent);
  }
  template <typename acc_t>
  __device__ void select_top(decode::Candidate<acc_t>* c, int32_t n, int32_t k) {
    decode::coop_select_top(*this, c, n, k);
  }
  template <typename scalar_t, typename acc_t>
  __device__ int32_t top_tokens(const scalar_t* row, int64_t C, int32_t blank, const bool* allowed,
                                int32_t m, decode::Candidate<acc_t>* buf, int32_t cap,
                                int32_t* tok_out, acc_t* lp_out, int32_t* shared_int) {
    return decode::coop_top_tokens(*this, row, C, blank, allowed, m, buf, cap, tok_out, lp_out,
                                   shared_int);
  }
};

template <typename acc_t>
struct BeamWorkspace {
  int32_t* top_tok;    // (chunk rows, M): row b = (t - t_begin) * N + n
  acc_t* top_lp;       // (chunk rows, M)
  int32_t* top_count;  // (chunk rows)
  unsigned char* beams;  // (N, 2) beam buffers of beam_bytes
  size_t beam_bytes;
  int32_t* beam_count;  // (N) entries of the current beam
  int32_t* hist_pred;   // (N, T, K)
  int32_t* hist_tok;    // (N, T, K)
  unsigned char* scratch;  // (N) of scratch_bytes; nullptr: in shared memory
  size_t scratch_bytes;
  int32_t top_cap;
};

template <typename acc_t>
BeamWorkspace<acc_t> carve_beam_workspace(void* base, const BeamSearchLayout& l) {
  unsigned char* b = static_cast<unsigned char*>(base);
  auto at = [b](size_t offset) -> unsigned char* { return offset == kAbsent ? nullptr : b + offset; };
  return {reinterpret_cast<int32_t*>(at(l.top_tok)),
          reinterpret_cast<acc_t*>(at(l.top_lp)),
          reinterpret_cast<int32_t*>(at(l.top_count)),
          at(l.beams),
          l.beam_bytes,
          reinterpret_cast<int32_t*>(at(l.beam_count)),
          reinterpret_cast<int32_t*>(at(l.hist_pred)),
          reinterpret_cast<int32_t*>(at(l.hist_tok)),
          at(l.scratch),
          l.scratch_bytes,
          l.top_cap};
}

template <typename acc_t>
__device__ __forceinline__ void swap_views(decode::BeamView<acc_t>& a, decode::BeamView<acc_t>& b) {
  const decode::BeamView<acc_t> t = a;
  a = b;
  b = t;
}

__device__ __forceinline__ int64_t clamp_frames(int64_t length, int64_t T) {
  return length < 0 ? 0 : (length > T ? T : length);
}

template <typename scalar_t>
__global__ void __launch_bounds__(kMaxTopThreads)
    beam_top_tokens_kernel(BeamSearchParams<scalar_t> p,
                           BeamWorkspace<typename AccType<scalar_t>::type> ws, int64_t t_begin) {
  using acc_t = typename AccType<scalar_t>::type;
  unsigned char* smem = dynamic_smem<unsigned char>();
  const int64_t b = blockIdx.x;
  const int64_t n = b % p.N;
  const int64_t t = t_begin + b / p.N;
  if (t >= clamp_frames(p.input_lengths[n], p.T)) return;  // the whole block
  const scalar_t* row = p.log_probs + t * p.stride_t + n * p.stride_n;
  if (decode::read_lp<acc_t>(row, p.cfg.blank) > p.log_skip_threshold) {
    if (threadIdx.x == 0) ws.top_count[b] = -1;
    return;
  }
  const int32_t M = p.cfg.list_size;
  auto* buf = reinterpret_cast<decode::Candidate<acc_t>*>(smem);
  auto* shared_int = reinterpret_cast<int32_t*>(smem + ws.top_cap * sizeof(decode::Candidate<acc_t>));
  BlockGroup g;
  const int32_t count = g.top_tokens(row, p.C, p.cfg.blank, p.allowed, M, buf, ws.top_cap,
                                     ws.top_tok + b * M, ws.top_lp + b * M, shared_int);
  if (threadIdx.x == 0) ws.top_count[b] = count;
}

template <typename scalar_t>
__global__ void __launch_bounds__(kMaxSearchThreads)
    beam_search_frames_kernel(BeamSearchParams<scalar_t> p,
                              BeamWorkspace<typename AccType<scalar_t>::type> ws, int64_t t_begin,
                              int64_t t_end) {
  using acc_t = typename AccType<scalar_t>::type;
  unsigned char* smem = dynamic_smem<unsigned char>();
  const int64_t n = blockIdx.x;
  const int32_t K = p.cfg.beam_width, M = p.cfg.list_size;
  const int64_t frames = clamp_frames(p.input_lengths[n], p.T);
  // Frame t reads buffer t & 1 and writes the other; swapped by value (an
  // array indexed by t would live in local memory).
  decode::Carver beam_carver{ws.beams + n * 2 * ws.beam_bytes};
  decode::BeamView<acc_t> cur = decode::carve_beam<acc_t>(beam_carver, K);
  decode::BeamView<acc_t> next = decode::carve_beam<acc_t>(beam_carver, K);
  if (t_begin & 1) swap_views(cur, next);
  decode::Carver scratch_carver{ws.scratch ? ws.scratch + n * ws.scratch_bytes : smem};
  const decode::StepScratch<acc_t> scratch =
      decode::carve_scratch<acc_t>(scratch_carver, K, M, static_cast<int32_t>(blockDim.x));
  if (t_begin == 0 && threadIdx.x == 0) {
    ws.beam_count[n] = decode::init_beam(cur, frames, p.cfg.min_length);
  }
  __syncthreads();
  int32_t nb = ws.beam_count[n];
  __syncthreads();  // every thread has read it before thread 0 writes it back
  BlockGroup g;
  const int64_t stop = t_end < frames ? t_end : frames;
  for (int64_t t = t_begin; t < stop; ++t) {
    const int64_t b = (t - t_begin) * p.N + n;
    decode::Frame<scalar_t, acc_t> f;
    f.row = p.log_probs + t * p.stride_t + n * p.stride_n;
    f.top_tok = ws.top_tok + b * M;
    f.top_lp = ws.top_lp + b * M;
    f.top_count = ws.top_count[b];
    f.remaining = static_cast<int32_t>(frames - 1 - t);
    const int64_t h = (n * p.T + t) * K;
    nb = decode::beam_step(g, p.cfg, f, nb, cur, next, scratch, ws.hist_pred + h,
                           ws.hist_tok + h);
    swap_views(cur, next);
  }
  if (threadIdx.x == 0) ws.beam_count[n] = nb;
}

template <typename scalar_t>
__global__ void __launch_bounds__(kHypothesisThreads)
    beam_hypotheses_kernel(BeamSearchParams<scalar_t> p,
                           BeamWorkspace<typename AccType<scalar_t>::type> ws) {
  using acc_t = typename AccType<scalar_t>::type;
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= p.N * p.top_k) return;
  const int64_t n = idx / p.top_k;
  const int32_t i = static_cast<int32_t>(idx % p.top_k);
  const int32_t K = p.cfg.beam_width;
  const int64_t frames = clamp_frames(p.input_lengths[n], p.T);
  // The beam after the last frame: buffer frames & 1 (buffers are beam_bytes apart).
  decode::Carver beam_carver{ws.beams + (n * 2 + (frames & 1)) * ws.beam_bytes};
  const decode::BeamView<acc_t> last = decode::carve_beam<acc_t>(beam_carver, K);
  const int64_t h = n * p.T * K;
  decode::write_hypothesis(i, ws.beam_count[n], last, ws.hist_pred + h,
                           ws.hist_tok + h, K, frames, p.T, p.tokens + idx * p.T,
                           p.timesteps + idx * p.T, p.lengths + idx, p.scores + idx);
}

template <typename scalar_t>
cudaError_t beam_search_cuda(const BeamSearchParams<scalar_t>& p, cudaStream_t stream) {
  using acc_t = typename AccType<scalar_t>::type;
  if (p.N == 0) return cudaSuccess;
  const BeamSearchLayout l = beam_search_layout(p);
  const BeamWorkspace<acc_t> ws = carve_beam_workspace<acc_t>(p.workspace, l);
  const size_t search_shared = l.scratch_in_shared ? l.scratch_bytes : 0;
  cudaError_t err;
  // Above 48 KiB a kernel must opt in to its dynamic shared memory. The
  // attribute is per kernel and per device, not per launch, so it is set to
  // what the kernel may ever need (the device's opt-in maximum) rather than
  // to this call's size: another host thread launching the same kernel with
  // a larger size can never see a smaller limit set in between.
  if (l.top_shared_bytes > kDefaultSharedBytes &&
      (err = allow_dynamic_smem(beam_top_tokens_kernel<scalar_t>, p.max_shared_bytes)) !=
          cudaSuccess) {
    return err;
  }
  if (search_shared > kDefaultSharedBytes &&
      (err = allow_dynamic_smem(beam_search_frames_kernel<scalar_t>, p.max_shared_bytes)) !=
          cudaSuccess) {
    return err;
  }
  int64_t t_begin = 0;
  do {  // at least once: the search kernel also starts every beam
    const int64_t t_end = p.T < t_begin + l.chunk_frames ? p.T : t_begin + l.chunk_frames;
    const int64_t rows = (t_end - t_begin) * p.N;
    if (rows > 0) {
      err = launch(beam_top_tokens_kernel<scalar_t>, dim3(static_cast<unsigned>(rows)),
                   dim3(l.top_threads), l.top_shared_bytes, stream, p, ws, t_begin);
      if (err != cudaSuccess) return err;
    }
    err = launch(beam_search_frames_kernel<scalar_t>, dim3(static_cast<unsigned>(p.N)),
                 dim3(l.search_threads), search_shared, stream, p, ws, t_begin, t_end);
    if (err != cudaSuccess) return err;
    t_begin = t_end;
  } while (t_begin < p.T);
  const int64_t hypotheses = p.N * p.top_k;
  return launch(beam_hypotheses_kernel<scalar_t>,
                dim3(static_cast<unsigned>((hypotheses + kHypothesisThreads - 1) / kHypothesisThreads)),
                dim3(kHypothesisThreads), 0, stream, p, ws);
}

#define CTCX_INSTANTIATE_BEAM_SEARCH_CUDA(scalar_t) \
  template cudaError_t beam_search_cuda<scalar_t>(const BeamSearchParams<scalar_t>&, cudaStream_t);

}  // namespace cuda
}  // namespace ctcx
