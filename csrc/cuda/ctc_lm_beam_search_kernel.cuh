// CTC prefix beam search with shallow fusion on CUDA: kernel and launcher.
// The search is csrc/cpu/ctc_lm_beam_search_cpu.cpp's, candidate for
// candidate: STAY k (id k) and EXT(j, c) (id K + j C + c), the fusion of
// ctcx/lm_fusion.h, the K best by (score, id), beam_threshold applied to the
// frame's best. The CPU prunes candidates that provably cannot enter the beam;
// here every candidate is scored (one thread per (prefix, token) pair, the
// LM queried by each) and the block sorts them (bitonic, ctcx/ctc_decode.h),
// so both keep the same beam: the CUDA-on-CPU tests compare them bit for bit.
//
// One block per sample runs every frame; the beams, candidates and history
// live in the workspace. No host synchronization, no atomics, fixed orders.
// Input lengths are clamped into [0, T] and the tries' lookups stay in bounds
// (ctcx/ngram_lm.h), so unchecked values stay memory-safe.
#pragma once

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "ctc_lm_beam_search_cuda.h"
#include "ctcx/ctc_decode.h"
#include "ctcx/lm_fusion.h"
#include "launch.cuh"

namespace ctcx {
namespace cuda {

constexpr int kMaxFusedThreads = 256;

struct FusedBlock {
  __device__ int rank() const { return threadIdx.x; }
  __device__ int size() const { return blockDim.x; }
  __device__ void sync() const { __syncthreads(); }
};

__device__ __forceinline__ int64_t clamp_fused_frames(int64_t length, int64_t T) {
  return length < 0 ? 0 : (length > T ? T : length);
}

template <typename scalar_t>
__global__ void __launch_bounds__(kMaxFusedThreads)
    lm_beam_search_kernel(LmBeamSearchParams<scalar_t> p, LmBeamSearchLayout l) {
  using acc_t = typename AccType<scalar_t>::type;
  using Hyp = FusedHyp<acc_t>;
  const int64_t n = blockIdx.x;
  const int rank = threadIdx.x, size = blockDim.x;
  const int32_t K = p.cfg.beam_width;
  const int64_t C = p.C, T = p.T;
  const acc_t ninf = neg_inf<acc_t>();
  const lm::Fusion& F = p.fusion;
  unsigned char* base = static_cast<unsigned char*>(p.workspace);
  Hyp* cur = reinterpret_cast<Hyp*>(base + l.beams) + n * 2 * K;
  Hyp* next = cur + K;
  decode::Candidate<acc_t>* cand = reinterpret_cast<decode::Candidate<acc_t>*>(base + l.cands) + n * l.candidates;
  int32_t* hist_pred = reinterpret_cast<int32_t*>(base + l.hist_pred) + n * T * K;
  int32_t* hist_tok = reinterpret_cast<int32_t*>(base + l.hist_tok) + n * T * K;
  unsigned char* stay = base + l.stay + n * K * (2 * sizeof(acc_t) + 2 * sizeof(int32_t));
  acc_t* stay_pb = reinterpret_cast<acc_t*>(stay);
  acc_t* stay_pnb = stay_pb + K;
  int32_t* stay_emits = reinterpret_cast<int32_t*>(stay_pnb + K);
  int32_t* parent = stay_emits + K;
  int32_t* shared = reinterpret_cast<int32_t*>(base + l.count) + n * 4;
  unsigned char* order = base + l.order + n * K * (sizeof(int32_t) + 2 * sizeof(acc_t));
  acc_t* fin_score = reinterpret_cast<acc_t*>(order);
  acc_t* fin_lm = fin_score + K;
  int32_t* fin_idx = reinterpret_cast<int32_t*>(fin_lm + K);
  FusedBlock g;

  const int64_t frames = clamp_fused_frames(p.input_lengths[n], T);
  if (rank == 0) {
    int32_t nb = 0;
    if (!(frames == 0 && p.cfg.min_length > 0)) {
      Hyp& h = cur[0];
      h.hash = decode::kEmptyPrefixHash;
      h.parent_hash = 0;
      h.pb = 0;
      h.pnb = ninf;
      h.ctc = 0;
      lm::fusion_begin(F, h.st);
      h.extra = lm::fusion_extra(F, h.st);
      h.score = h.extra;
      h.len = 0;
      h.last = -1;
      nb = 1;
    }
    shared[0] = nb;
  }
  __syncthreads();
  for (int64_t t = 0; t < frames; ++t) {
    const int32_t nb = shared[0];
    __syncthreads();  // every thread has read nb before thread 0 writes the next one
    const scalar_t* row = p.log_probs + t * p.stride_t + n * p.stride_n;
    const acc_t lp_blank = decode::read_lp<acc_t>(row, p.cfg.blank);
    const bool extend = !(lp_blank > p.log_skip_threshold);
    const int32_t remaining = static_cast<int32_t>(frames - 1 - t);

    // STAY, with the parent's extension merged in.
    for (int32_t k = rank; k < K; k += size) {
      if (k >= nb) {
        cand[k] = decode::sentinel<acc_t>();
        continue;
      }
      const Hyp& h = cur[k];
      const int32_t c = h.last;
      const acc_t lp_c = c >= 0 ? decode::read_lp<acc_t>(row, c) : ninf;
      const acc_t pb = decode::sane(h.ctc + lp_blank);
      const acc_t carry = decode::sane(h.pnb + lp_c);
      int32_t j = -1;
      if (extend && h.len > 0) {
        for (int32_t q = 0; q < nb; ++q) {
          if (cur[q].len == h.len - 1 && cur[q].hash == h.parent_hash) {
            j = q;
            break;
          }
        }
      }
      const acc_t merged = j >= 0 ? decode::sane((cur[j].last == c ? cur[j].pb : cur[j].ctc) + lp_c) : ninf;
      const acc_t pnb = decode::sane(decode::decode_log_add_exp(carry, merged));
      acc_t total = decode::sane(decode::decode_log_add_exp(pb, pnb));
      if (h.len + remaining < p.cfg.min_length) total = ninf;
      stay_pb[k] = pb;
      stay_pnb[k] = pnb;
      stay_emits[k] = merged > decode::sane(decode::decode_log_add_exp(pb, carry)) ? 1 : 0;
      parent[k] = j;
      cand[k] = {total > ninf ? decode::sane(total + h.extra) : ninf, k};
    }

    // EXT: every (prefix, token) pair.
    const int64_t n_ext = static_cast<int64_t>(K) * C;
    for (int64_t i = rank; i < n_ext; i += size) {
      const int32_t j = static_cast<int32_t>(i / C);
      const int32_t c = static_cast<int32_t>(i % C);
      decode::Candidate<acc_t> x{ninf, static_cast<int32_t>(K + i)};
      if (extend && j < nb && c != p.cfg.blank && (p.allowed == nullptr || p.allowed[c])) {
        const Hyp& h = cur[j];
        const bool extendable = h.score > ninf && h.len < p.cfg.max_length &&
                                h.len + 1 + remaining >= p.cfg.min_length;
        const acc_t v = decode::read_lp<acc_t>(row, c);
        if (extendable && v > ninf) {
          const acc_t ctc = decode::sane((c == h.last ? h.pb : h.ctc) + v);
          if (ctc > ninf) {
            const uint64_t child = decode::extend_hash(h.hash, c);
            bool merged = false;
            for (int32_t q = 0; q < nb && !merged; ++q) merged = cur[q].len == h.len + 1 && cur[q].hash == child;
            lm::FusionState<acc_t> st = h.st;
            if (!merged && lm::fusion_step(F, st, c)) x.score = decode::sane(ctc + lm::fusion_extra(F, st));
          }
        }
      }
      cand[K + i] = x;
    }
    __syncthreads();
    decode::coop_select_top(g, cand, static_cast<int32_t>(K + n_ext), K);
    if (rank == 0) {
      int32_t keep = 0;
      const acc_t cut = cand[0].score - p.beam_threshold;
      while (keep < K && cand[keep].score > ninf && !(cand[keep].score < cut)) ++keep;
      shared[0] = keep;
    }
    __syncthreads();
    const int32_t keep = shared[0];
    int32_t* hp = hist_pred + t * K;
    int32_t* ht = hist_tok + t * K;
    for (int32_t i = rank; i < K; i += size) {
      if (i >= keep) {
        hp[i] = -1;
        ht[i] = -1;
        continue;
      }
      const decode::Candidate<acc_t> cc = cand[i];
      Hyp& h = next[i];
      if (cc.id < K) {
        const int32_t k = cc.id;
        h = cur[k];
        h.pb = stay_pb[k];
        h.pnb = stay_pnb[k];
        h.ctc = decode::sane(decode::decode_log_add_exp(h.pb, h.pnb));
        h.score = cc.score;
        const bool emits = stay_emits[k] != 0;
        hp[i] = emits ? parent[k] : k;
        ht[i] = emits ? h.last : -1;
        continue;
      }
      const int64_t e = static_cast<int64_t>(cc.id) - K;
      const int32_t j = static_cast<int32_t>(e / C), token = static_cast<int32_t>(e % C);
      const Hyp& q = cur[j];
      h.st = q.st;
      lm::fusion_step(F, h.st, token);
      h.extra = lm::fusion_extra(F, h.st);
      h.hash = decode::extend_hash(q.hash, token);
      h.parent_hash = q.hash;
      h.pb = ninf;
      h.pnb = decode::sane((token == q.last ? q.pb : q.ctc) + decode::read_lp<acc_t>(row, token));
      h.ctc = h.pnb;
      h.score = cc.score;
      h.len = q.len + 1;
      h.last = token;
      hp[i] = j;
      ht[i] = token;
    }
    __syncthreads();
    Hyp* swap = cur;
    cur = next;
    next = swap;
  }

  // The finished hypotheses, ranked by their final fused score.
  const int32_t nb = shared[0];
  for (int32_t i = rank; i < nb; i += size) {
    acc_t extra = 0, lm_total = 0;
    const bool ok = cur[i].ctc > ninf && lm::fusion_finish(F, cur[i].st, &extra, &lm_total);
    fin_score[i] = ok ? decode::sane(cur[i].ctc + extra) : ninf;
    fin_lm[i] = lm_total;
  }
  __syncthreads();
  if (rank == 0) {
    int32_t m = 0;
    for (int32_t i = 0; i < nb; ++i) {
      if (!(fin_score[i] > ninf)) continue;
      int32_t at = m++;  // insertion sort by (score desc, index asc)
      while (at > 0 && fin_score[fin_idx[at - 1]] < fin_score[i]) {
        fin_idx[at] = fin_idx[at - 1];
        --at;
      }
      fin_idx[at] = i;
    }
    shared[1] = m;
  }
  __syncthreads();
  const int32_t m = shared[1];
  for (int32_t r = rank; r < p.top_k; r += size) {
    const int64_t at = n * p.top_k + r;
    int64_t* tokens = p.tokens + at * T;
    int64_t* timesteps = p.timesteps + at * T;
    for (int64_t t = 0; t < T; ++t) tokens[t] = timesteps[t] = -1;
    if (r >= m) {
      p.lengths[at] = 0;
      p.scores[at] = p.ctc_scores[at] = p.lm_scores[at] = ninf;
      continue;
    }
    const int32_t i = fin_idx[r];
    const Hyp& h = cur[i];
    p.lengths[at] = h.len;
    p.scores[at] = fin_score[i];
    p.ctc_scores[at] = h.ctc;
    p.lm_scores[at] = fin_lm[i];
    int64_t pos = h.len;
    int32_t e = i;
    for (int64_t t = frames - 1; t >= 0 && pos > 0 && e >= 0; --t) {
      const int32_t token = hist_tok[t * K + e];
      if (token >= 0) {
        --pos;
        tokens[pos] = token;
        timesteps[pos] = t;
      }
      e = hist_pred[t * K + e];
    }
  }
}

template <typename scalar_t>
cudaError_t lm_beam_search_cuda(const LmBeamSearchParams<scalar_t>& p, cudaStream_t stream) {
  if (p.N == 0) return cudaSuccess;
  const LmBeamSearchLayout l = lm_beam_search_layout(p);
  return launch(lm_beam_search_kernel<scalar_t>, dim3(static_cast<unsigned>(p.N)), dim3(l.threads), 0, stream,
                p, l);
}

#define CTCX_INSTANTIATE_LM_BEAM_SEARCH_CUDA(scalar_t) \
  template cudaError_t lm_beam_search_cuda<scalar_t>(const LmBeamSearchParams<scalar_t>&, cudaStream_t);

}  // namespace cuda
}  // namespace ctcx
