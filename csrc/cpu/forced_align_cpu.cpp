// CTC forced alignment on the CPU: the Viterbi recursion (Graves et al.
// 2006's forward recursion with max for sum) over each sample's extended
// label sequence, one sample per task (at::parallel_for over the batch),
// 2-bit backpointers, then the path traced back from the last frame.
//
// With a wildcard ("star", ctcx/align.py), a blank state's value at a frame
// is the larger of the blank's log-probability and the wildcard's score in
// that gap (the blank's on a tie), and a frame spent on the wildcard is
// labelled C. The wildcard scores the best class that is neither the blank
// nor a label beside the gap, plus the penalty: here from the frame's three
// best non-blank classes (found by one scan of the row; NaN ranks first, as
// in torch.topk), on CUDA from torch.topk's four best classes through
// ctcx/forced_align_star.h; the value is the same either way.
//
// Ties (ctcx/align.py documents them): among equal predecessors the one that
// advanced least wins (stay, then one state, then two), and at the last frame
// the final blank wins over the last label. Scores accumulate in the op math
// type (float32 for half, bfloat16 and float32; float64 for float64) by one
// addition per frame, so every backend that follows this order gets the same
// path bit for bit, whatever the batch around a sample or the thread count.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <tuple>
#include <type_traits>
#include <vector>

#include "ctcx/forced_align_checks.h"

namespace ctcx {
namespace {

inline int get_move(const uint8_t* row, int64_t s) { return (row[s >> 2] >> ((s & 3) * 2)) & 3; }

// One frame of the recursion over all S states, branch-free so that the
// compiler vectorizes it: prev and next hold two -inf cells before state 0
// (so s - 1 and s - 2 need no bounds checks), skip is 0 where the move from
// s - 2 is allowed and -inf where not, emit the frame's value of every state.
// Moves: 0 stay, 1 from s - 1, 2 from s - 2, in move_t of acc_t's width.
// The comparisons are those of the CUDA kernel (stay, then strictly better
// s - 1, then strictly better s - 2), so both give the same path bit for bit.
template <typename acc_t, typename move_t>
inline void viterbi_frame_body(const acc_t* __restrict prev, acc_t* __restrict next,
                               const acc_t* __restrict skip, const acc_t* __restrict emit,
                               move_t* __restrict moves, int64_t S) {
  const acc_t* a = prev + 2;
  acc_t* out = next + 2;
#pragma omp simd
  for (int64_t s = 0; s < S; ++s) {
    const acc_t stay = a[s], one = a[s - 1], two = a[s - 2] + skip[s];
    acc_t best = stay;
    move_t move = 0;
    const bool from_one = one > best;
    best = from_one ? one : best;
    move = from_one ? move_t(1) : move;
    const bool from_two = two > best;
    best = from_two ? two : best;
    move = from_two ? move_t(2) : move;
    out[s] = best + emit[s];
    moves[s] = move;
  }
}

// Built for several x86-64 levels where the compiler can (AVX-512, AVX2,
// baseline), picked at load time: the same arithmetic in every build.
#if defined(__x86_64__) && defined(__GNUC__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define CTCX_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#endif
#endif
#ifndef CTCX_CLONES
#define CTCX_CLONES
#endif

CTCX_CLONES void viterbi_frame(const float* prev, float* next, const float* skip, const float* emit,
                               int32_t* moves, int64_t S) {
  viterbi_frame_body(prev, next, skip, emit, moves, S);
}
CTCX_CLONES void viterbi_frame(const double* prev, double* next, const double* skip, const double* emit,
                               int64_t* moves, int64_t S) {
  viterbi_frame_body(prev, next, skip, emit, moves, S);
}

// Packs one frame's moves, 2 bits per state, into row (S + 3) / 4 bytes;
// moves is zero past S up to a multiple of 4.
template <typename move_t>
inline void pack_moves_body(const move_t* __restrict moves, uint8_t* __restrict row, int64_t row_bytes) {
  for (int64_t j = 0; j < row_bytes; ++j) {
    const move_t* m = moves + 4 * j;
    row[j] = static_cast<uint8_t>(m[0] | (m[1] << 2) | (m[2] << 4) | (m[3] << 6));
  }
}
CTCX_CLONES void pack_moves(const int32_t* moves, uint8_t* row, int64_t row_bytes) {
  pack_moves_body(moves, row, row_bytes);
}
CTCX_CLONES void pack_moves(const int64_t* moves, uint8_t* row, int64_t row_bytes) {
  pack_moves_body(moves, row, row_bytes);
}

// One frame's value of every state: the blank's b at even states, the
// target's labels (row[target[i]], gathered through 32-bit indices into lab)
// at odd ones.
template <typename scalar_t, typename acc_t>
inline void gather_emit_body(const scalar_t* __restrict row, const int32_t* __restrict target,
                             acc_t* __restrict lab, acc_t* __restrict emit, int64_t L, acc_t b) {
  for (int64_t i = 0; i < L; ++i) lab[i] = static_cast<acc_t>(row[target[i]]);
  for (int64_t i = 0; i < L; ++i) {
    emit[2 * i] = b;
    emit[2 * i + 1] = lab[i];
  }
  emit[2 * L] = b;
}
CTCX_CLONES void gather_emit(const float* row, const int32_t* target, float* lab, float* emit, int64_t L,
                             float b) {
  gather_emit_body(row, target, lab, emit, L, b);
}
CTCX_CLONES void gather_emit(const double* row, const int32_t* target, double* lab, double* emit, int64_t L,
                             double b) {
  gather_emit_body(row, target, lab, emit, L, b);
}
template <typename scalar_t, typename acc_t>
inline void gather_emit(const scalar_t* row, const int32_t* target, acc_t* lab, acc_t* emit, int64_t L,
                        acc_t b) {
  gather_emit_body(row, target, lab, emit, L, b);  // float16 and bfloat16: converted as they are read
}

template <typename scalar_t>
void forced_align_cpu_impl(const at::Tensor& x, const int64_t* targets, int64_t target_stride,
                           const int64_t* input_lengths, const int64_t* target_lengths,
                           int64_t blank, bool with_star, at::opmath_type<scalar_t> star_penalty,
                           int64_t* labels, scalar_t* scores, at::opmath_type<scalar_t>* path_scores) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr acc_t kNegInf = -std::numeric_limits<acc_t>::infinity();
  const int64_t T = x.size(0), N = x.size(1), C = x.size(2);
  const int64_t st = x.stride(0), sn = x.stride(1);
  const scalar_t* data = x.const_data_ptr<scalar_t>();
  using move_t = std::conditional_t<sizeof(acc_t) == 8, int64_t, int32_t>;
  at::parallel_for(0, N, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> prev, next, skip, emit, lab, top_values;
    std::vector<int32_t> target32;  // the labels as 32-bit indices (C fits: checked by the op)
    std::vector<int64_t> top_classes;
    std::vector<move_t> step;
    std::vector<int64_t> ext, gap_before, gap_after;
    std::vector<uint8_t> moves;
    for (int64_t n = begin; n < end; ++n) {
      const int64_t frames = input_lengths[n], L = target_lengths[n], S = 2 * L + 1;
      const int64_t* target = targets + n * target_stride;
      const scalar_t* lp = data + n * sn;
      // The frame's three best non-blank classes (values plus the penalty;
      // class -1 and -inf where C is too small), kept per frame for the trace.
      acc_t* top_v = nullptr;
      int64_t* top_c = nullptr;
      const auto use_top = [&](int64_t t) {
        top_v = top_values.data() + 3 * t;
        top_c = top_classes.data() + 3 * t;
      };
      const auto find_top = [&](const scalar_t* row) {
        acc_t v0 = kNegInf, v1 = kNegInf, v2 = kNegInf;
        int64_t c0 = -1, c1 = -1, c2 = -1;
        const auto ranks_above = [](acc_t x, acc_t y) { return x > y || (std::isnan(x) && !std::isnan(y)); };
        for (int64_t c = 0; c < C; ++c) {
          const acc_t v = static_cast<acc_t>(row[c]);
          if (c == blank || !ranks_above(v, v2)) continue;
          if (ranks_above(v, v1)) {
            v2 = v1;
            c2 = c1;
            if (ranks_above(v, v0)) {
              v1 = v0;
              c1 = c0;
              v0 = v;
              c0 = c;
            } else {
              v1 = v;
              c1 = c;
            }
          } else {
            v2 = v;
            c2 = c;
          }
        }
        top_v[0] = v0 + star_penalty;
        top_v[1] = v1 + star_penalty;
        top_v[2] = v2 + star_penalty;
        top_c[0] = c0;
        top_c[1] = c1;
        top_c[2] = c2;
      };
      // The wildcard's score in gap i (blank state 2 i), after find_top: the
      // first candidate that is neither label beside the gap.
      const auto star = [&](int64_t i) -> acc_t {
        const int64_t before = gap_before[i], after = gap_after[i];
        const bool ok0 = top_c[0] >= 0 && top_c[0] != before && top_c[0] != after;
        const bool ok1 = top_c[1] >= 0 && top_c[1] != before && top_c[1] != after;
        const bool ok2 = top_c[2] >= 0 && top_c[2] != before && top_c[2] != after;
        return ok0 ? top_v[0] : ok1 ? top_v[1] : ok2 ? top_v[2] : kNegInf;
      };
      // Every state's value at frame t: its class's log-probability, or for a
      // blank state with a wildcard the larger of that and the wildcard's.
      // (only states lo <= s < hi are needed: see the window below)
      const auto fill_emit = [&](int64_t t, int64_t lo, int64_t hi) {
        const scalar_t* row = lp + t * st;
        const acc_t b = static_cast<acc_t>(row[blank]);
        const int64_t first = lo / 2, last = std::min(L, (hi + 1) / 2);  // labels first..last-1, blanks first..last
        gather_emit(row, target32.data() + first, lab.data() + first, emit.data() + 2 * first, last - first, b);
        if (with_star) {
          use_top(t);
          find_top(row);
          for (int64_t i = first; i <= last; ++i) {
            const acc_t w = star(i);
            emit[2 * i] = w > b ? w : b;
          }
        }
      };
      int64_t* out_labels = labels + n * T;
      scalar_t* out_scores = scores + n * T;
      for (int64_t t = 0; t < T; ++t) {
        out_labels[t] = blank;
        out_scores[t] = scalar_t(0);
      }
      ext.assign(S, blank);
      for (int64_t i = 0; i < L; ++i) ext[2 * i + 1] = target[i];
      target32.assign(target, target + L);
      lab.resize(L);
      if (with_star) {  // the labels beside each gap (-1 at the ends)
        top_values.resize(3 * frames);
        top_classes.resize(3 * frames);
        gap_before.assign(L + 1, -1);
        gap_after.assign(L + 1, -1);
        for (int64_t i = 0; i < L; ++i) {
          gap_before[i + 1] = target[i];
          gap_after[i] = target[i];
        }
      }
      if (frames == 0) {
        path_scores[n] = L == 0 ? acc_t(0) : kNegInf;
        continue;
      }
      const int64_t row_bytes = (S + 3) / 4;
      moves.resize(frames * row_bytes);
      std::fill(moves.begin(), moves.begin() + row_bytes, uint8_t(0));  // frame 0 has no moves
      prev.assign(S + 2, kNegInf);
      next.assign(S + 2, kNegInf);
      skip.assign(S, kNegInf);
      for (int64_t s = 3; s < S; s += 2) {
        if (ext[s] != ext[s - 2]) skip[s] = acc_t(0);
      }
      emit.assign(S, kNegInf);
      step.assign(4 * row_bytes, move_t(0));
      fill_emit(0, 0, std::min<int64_t>(S, 2));
      prev[2] = emit[0];
      if (S > 1) prev[3] = emit[1];
      for (int64_t t = 1; t < frames; ++t) {
        // The window of live states: s <= 2 t + 1 can be reached from the
        // start (the others are -inf and stay so in both buffers), and only
        // s >= S - 2 (frames - t) can still reach the end; every predecessor
        // of a live state is live, so the states outside (left stale) are
        // never read by one, nor visited by the trace. Same path, fewer states.
        const int64_t lo = std::max<int64_t>(0, S - 2 * (frames - t)), hi = std::min<int64_t>(S, 2 * t + 2);
        fill_emit(t, lo, hi);
        viterbi_frame(prev.data() + lo, next.data() + lo, skip.data() + lo, emit.data() + lo, step.data() + lo,
                      hi - lo);
        pack_moves(step.data(), moves.data() + t * row_bytes, row_bytes);
        prev.swap(next);
      }
      const acc_t* alpha = prev.data() + 2;
      int64_t s = S - 1;
      if (S > 1 && alpha[S - 2] > alpha[S - 1]) s = S - 2;
      path_scores[n] = alpha[s];
      if (!(alpha[s] > kNegInf)) {  // no alignment with a finite log-probability (or NaN input)
        continue;
      }
      for (int64_t t = frames - 1; t >= 0; --t) {
        const scalar_t v = lp[t * st + ext[s]];
        acc_t w = kNegInf;
        if (with_star && !(s & 1)) {
          use_top(t);
          w = star(s / 2);
        }
        if (w > static_cast<acc_t>(v)) {
          out_labels[t] = C;
          out_scores[t] = static_cast<scalar_t>(w);
        } else {
          out_labels[t] = ext[s];
          out_scores[t] = v;
        }
        s -= get_move(moves.data() + t * row_bytes, s);
      }
    }
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ctc_forced_align_cpu(
    const at::Tensor& log_probs, const at::Tensor& targets, const at::Tensor& input_lengths,
    const at::Tensor& target_lengths, int64_t blank, std::optional<double> star_penalty) {
  const char* fn = "ctcx.forced_align";
  check_forced_align_layout(fn, log_probs, targets, input_lengths, target_lengths, blank, star_penalty);
  const at::Tensor il = input_lengths.contiguous(), tl = target_lengths.contiguous();
  const at::Tensor tg = targets.contiguous();
  check_forced_align_values_cpu(fn, log_probs, tg, il, tl, blank);
  const int64_t T = log_probs.size(0), N = log_probs.size(1);
  const auto acc = log_probs.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  at::Tensor labels = at::empty({N, T}, log_probs.options().dtype(at::kLong));
  at::Tensor scores = at::empty({N, T}, log_probs.options());
  at::Tensor path_scores = at::empty({N}, log_probs.options().dtype(acc));
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, log_probs.scalar_type(), "ctcx_forced_align_cpu", [&] {
        forced_align_cpu_impl<scalar_t>(
            log_probs, tg.const_data_ptr<int64_t>(), tg.size(1), il.const_data_ptr<int64_t>(),
            tl.const_data_ptr<int64_t>(), blank,
            star_penalty.has_value(), static_cast<at::opmath_type<scalar_t>>(star_penalty.value_or(0.0)),
            labels.mutable_data_ptr<int64_t>(),
            scores.mutable_data_ptr<scalar_t>(),
            path_scores.mutable_data_ptr<at::opmath_type<scalar_t>>());
      });
  return {labels, scores, path_scores};
}

}  // namespace
}  // namespace ctcx

TORCH_LIBRARY_IMPL(ctcx, CPU, m) {
  m.impl("ctc_forced_align", &ctcx::ctc_forced_align_cpu);
}
