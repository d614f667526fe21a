// Interface between the CUDA glue of the fused beam search
// (ctc_lm_beam_search_cuda.cpp) and its kernel (ctc_lm_beam_search_kernel.cuh):
// the parameter struct, the workspace layout both sides agree on, and the
// launcher. No torch types.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "ctc_loss_cuda.h"  // AccType, kAbsent
#include "ctcx/ctc_decode.h"
#include "ctcx/lm_fusion.h"

namespace ctcx {
namespace cuda {

// One prefix of the fused search (array of structs in the workspace).
template <typename acc_t>
struct FusedHyp {
  uint64_t hash, parent_hash;
  acc_t pb, pnb, ctc, score, extra;
  int32_t len, last;
  lm::FusionState<acc_t> st;
};

template <typename scalar_t>
struct LmBeamSearchParams {
  using acc_t = typename AccType<scalar_t>::type;
  const scalar_t* log_probs;  // (T, N, C), unit class stride
  int64_t T, N, C;
  int64_t stride_t, stride_n;
  const int64_t* input_lengths;  // (N,); clamped into [0, T]
  decode::SearchConfig cfg;
  int32_t top_k;
  const bool* allowed;       // (C,) or nullptr
  acc_t log_skip_threshold;  // +inf: no frame is skipped
  acc_t beam_threshold;      // +inf: the search is exact
  lm::Fusion fusion;         // device pointers
  int64_t* tokens;           // (N, top_k, T)
  int64_t* lengths;          // (N, top_k)
  acc_t* scores;             // (N, top_k) fused
  int64_t* timesteps;        // (N, top_k, T)
  acc_t* ctc_scores;         // (N, top_k)
  acc_t* lm_scores;          // (N, top_k)
  void* workspace;           // lm_beam_search_layout(*this).total bytes, 256-byte aligned
};

// Every candidate of a frame is scored (K STAY, K C EXT), so the candidate
// buffer is pow2_ceil(K + K C) entries per sample; ids must fit int32.
constexpr int64_t kMaxFusedCandidates = int64_t(1) << 26;

struct LmBeamSearchLayout {
  int threads;
  int32_t candidates;  // pow2_ceil(K + K C)
  size_t beams, cands, hist_pred, hist_tok, stay, count, order;
  size_t total;
};

inline int64_t fused_candidates(int64_t K, int64_t C) { return K + K * C; }

template <typename scalar_t>
LmBeamSearchLayout lm_beam_search_layout(const LmBeamSearchParams<scalar_t>& p) {
  using acc_t = typename AccType<scalar_t>::type;
  const size_t K = static_cast<size_t>(p.cfg.beam_width), N = static_cast<size_t>(p.N),
               T = static_cast<size_t>(p.T);
  LmBeamSearchLayout l{};
  l.candidates = decode::pow2_ceil(static_cast<int32_t>(fused_candidates(p.cfg.beam_width, p.C)));
  l.threads = l.candidates < 64 ? 64 : (l.candidates > 256 ? 256 : l.candidates);
  size_t at = 0;
  auto region = [&at](size_t bytes) {
    const size_t begin = at;
    at += (bytes + 255) / 256 * 256;
    return bytes ? begin : kAbsent;
  };
  l.beams = region(N * 2 * K * sizeof(FusedHyp<acc_t>));
  l.cands = region(N * static_cast<size_t>(l.candidates) * sizeof(decode::Candidate<acc_t>));
  l.hist_pred = region(N * T * K * sizeof(int32_t));
  l.hist_tok = region(N * T * K * sizeof(int32_t));
  l.stay = region(N * K * (2 * sizeof(acc_t) + 2 * sizeof(int32_t)));  // pb, pnb, emits, parent
  l.count = region(N * 4 * sizeof(int32_t));
  l.order = region(N * K * (sizeof(int32_t) + 2 * sizeof(acc_t)));  // the finished hypotheses, ranked
  l.total = at;
  return l;
}

// Runs the whole search on `stream` without synchronizing; returns the launch error.
template <typename scalar_t>
cudaError_t lm_beam_search_cuda(const LmBeamSearchParams<scalar_t>& params, cudaStream_t stream);

}  // namespace cuda
}  // namespace ctcx
