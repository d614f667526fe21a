// Interface between the CUDA glue of the decoding ops (ctc_decode_cuda.cpp)
// and their kernels (*.cu): plain parameter structs, the workspace layout
// both sides agree on, and the launchers. No torch types.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "ctc_loss_cuda.h"  // AccType
#include "ctcx/ctc_decode.h"

namespace ctcx {
namespace cuda {

// ------------------------------------------------------------------ greedy

template <typename scalar_t>
struct GreedyDecodeParams {
  const scalar_t* log_probs;  // (T, N, C), unit class stride
  int64_t T, N, C;
  int64_t stride_t, stride_n;
  const int64_t* input_lengths;  // (N,); clamped into [0, T]
  int64_t blank;
  int64_t* tokens;   // (N, T), padded with -1
  int64_t* lengths;  // (N,)
  int32_t* best;     // workspace (N, T): the argmax of every frame
};

template <typename scalar_t>
cudaError_t greedy_decode_cuda(const GreedyDecodeParams<scalar_t>& params, cudaStream_t stream);

// ------------------------------------------------------------- beam search

template <typename scalar_t>
struct BeamSearchParams {
  using acc_t = typename AccType<scalar_t>::type;

  const scalar_t* log_probs;  // (T, N, C), unit class stride
  int64_t T, N, C;
  int64_t stride_t, stride_n;
  const int64_t* input_lengths;  // (N,); clamped into [0, T]
  decode::SearchConfig cfg;
  int32_t top_k;
  const bool* allowed;      // (C,) or nullptr
  acc_t log_skip_threshold;  // +inf: no frame is skipped

  int64_t* tokens;     // (N, top_k, T)
  int64_t* lengths;    // (N, top_k)
  acc_t* scores;       // (N, top_k)
  int64_t* timesteps;  // (N, top_k, T)

  void* workspace;          // beam_search_layout(*this).total bytes, 256-byte aligned
  size_t max_shared_bytes;  // the device's dynamic shared memory per block (opt-in)
  size_t token_list_budget;  // bytes of frame token lists per chunk (kTokenListBudget)
};

// Launch shapes and byte offsets of the workspace regions (kAbsent when empty).
struct BeamSearchLayout {
  int64_t chunk_frames;  // frames per launch pair (top tokens, then search)
  int32_t top_cap;       // entries of coop_top_tokens' buffer
  int top_threads, search_threads;
  size_t top_shared_bytes;  // top-tokens kernel: buffer + one int
  size_t beam_bytes;        // one beam buffer of one sample
  size_t scratch_bytes;     // step scratch of one sample
  bool scratch_in_shared;   // else in the workspace, per sample
  size_t top_tok, top_lp, top_count, beams, beam_count, hist_pred, hist_tok, scratch;
  size_t total;
};

// The frames' token lists are the only buffer that grows with T * N * K
// besides the history; they are computed chunk by chunk within this budget
// (BeamSearchParams::token_list_budget; the CUDA-on-CPU tests use less, to
// run many chunks on small problems).
constexpr size_t kTokenListBudget = size_t(128) << 20;
constexpr size_t kDefaultSharedBytes = 48 * 1024;

template <typename scalar_t>
BeamSearchLayout beam_search_layout(const BeamSearchParams<scalar_t>& p) {
  using acc_t = typename AccType<scalar_t>::type;
  const int32_t K = p.cfg.beam_width, M = p.cfg.list_size;
  const size_t N = static_cast<size_t>(p.N), T = static_cast<size_t>(p.T);
  BeamSearchLayout l{};
  l.top_cap = decode::top_tokens_capacity(M, p.C);
  const int32_t half = l.top_cap / 2;
  l.top_threads = half < 32 ? 32 : (half > 256 ? 256 : half);
  l.top_shared_bytes = static_cast<size_t>(l.top_cap) * sizeof(decode::Candidate<acc_t>) + 16;
  const int32_t wide = decode::pow2_ceil(2 * K);
  l.search_threads = wide < 64 ? 64 : (wide > 512 ? 512 : wide);
  l.beam_bytes = decode::beam_bytes<acc_t>(K);
  l.scratch_bytes = decode::scratch_bytes<acc_t>(K, M, l.search_threads);
  l.scratch_in_shared = l.scratch_bytes <= p.max_shared_bytes;
  const size_t frame_bytes = N * (static_cast<size_t>(M) * (sizeof(int32_t) + sizeof(acc_t)) + 4);
  const size_t budget = p.token_list_budget ? p.token_list_budget : kTokenListBudget;
  const size_t chunk = frame_bytes ? budget / frame_bytes : T;
  l.chunk_frames = static_cast<int64_t>(chunk < 1 ? 1 : (chunk > T ? T : chunk));
  const size_t rows = static_cast<size_t>(l.chunk_frames) * N;

  size_t at = 0;
  auto region = [&at](size_t bytes) {
    const size_t begin = at;
    at += (bytes + 255) / 256 * 256;
    return bytes ? begin : kAbsent;
  };
  l.top_tok = region(rows * M * sizeof(int32_t));
  l.top_lp = region(rows * M * sizeof(acc_t));
  l.top_count = region(rows * sizeof(int32_t));
  l.beams = region(N * 2 * l.beam_bytes);
  l.beam_count = region(N * sizeof(int32_t));
  l.hist_pred = region(N * T * K * sizeof(int32_t));
  l.hist_tok = region(N * T * K * sizeof(int32_t));
  l.scratch = region(l.scratch_in_shared ? 0 : N * l.scratch_bytes);
  l.total = at;
  return l;
}

// Runs the whole search on `stream` without synchronizing. Returns the first
// launch error (cudaSuccess when every kernel was launched).
template <typename scalar_t>
cudaError_t beam_search_cuda(const BeamSearchParams<scalar_t>& params, cudaStream_t stream);

}  // namespace cuda
}  // namespace ctcx
