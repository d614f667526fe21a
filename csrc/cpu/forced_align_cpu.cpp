// CTC forced alignment on the CPU: the Viterbi recursion (Graves et al.
// 2006's forward recursion with max for sum) over each sample's extended
// label sequence, one sample per task (at::parallel_for over the batch),
// 2-bit backpointers, then the path traced back from the last frame.
//
// With a wildcard ("star", ctcx/align.py; scored by ctcx/forced_align_star.h),
// a blank state's value at a frame is the larger of the blank's
// log-probability and the wildcard's score in that gap (the blank's on a tie),
// and a frame spent on the wildcard is labelled C.
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

#include <cstdint>
#include <limits>
#include <optional>
#include <tuple>
#include <vector>

#include "ctcx/forced_align_checks.h"
#include "ctcx/forced_align_star.h"

namespace ctcx {
namespace {

// Moves are 2 bits: 0 stay, 1 from the previous state, 2 from two back.
inline void put_move(uint8_t* row, int64_t s, int move) {
  row[s >> 2] |= static_cast<uint8_t>(move << ((s & 3) * 2));
}
inline int get_move(const uint8_t* row, int64_t s) { return (row[s >> 2] >> ((s & 3) * 2)) & 3; }

template <typename scalar_t>
void forced_align_cpu_impl(const at::Tensor& x, const int64_t* targets, int64_t target_stride,
                           const int64_t* input_lengths, const int64_t* target_lengths,
                           int64_t blank, const at::opmath_type<scalar_t>* star_values,
                           const int64_t* star_classes, int64_t K, int64_t* labels, scalar_t* scores,
                           at::opmath_type<scalar_t>* path_scores) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr acc_t kNegInf = -std::numeric_limits<acc_t>::infinity();
  const int64_t T = x.size(0), N = x.size(1), C = x.size(2);
  const int64_t st = x.stride(0), sn = x.stride(1);
  const scalar_t* data = x.const_data_ptr<scalar_t>();
  at::parallel_for(0, N, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> alpha, next;
    std::vector<int64_t> ext;
    std::vector<uint8_t> moves;
    for (int64_t n = begin; n < end; ++n) {
      const int64_t frames = input_lengths[n], L = target_lengths[n], S = 2 * L + 1;
      const int64_t* target = targets + n * target_stride;
      const scalar_t* lp = data + n * sn;
      // The wildcard's score at frame t in the gap of blank state s.
      const auto star = [&](int64_t t, int64_t s) -> acc_t {
        const int64_t base = (t * N + n) * K;
        return star_score(star_values + base, star_classes + base, K, blank, s > 0 ? ext[s - 1] : -1,
                          s + 1 < S ? ext[s + 1] : -1);
      };
      // Extended state s's value at frame t: its class's log-probability, or
      // for a blank state with a wildcard the larger of that and the wildcard's.
      const auto value = [&](int64_t t, int64_t s) -> acc_t {
        const acc_t v = static_cast<acc_t>(lp[t * st + ext[s]]);
        if (star_values == nullptr || (s & 1)) return v;
        const acc_t w = star(t, s);
        return w > v ? w : v;
      };
      int64_t* out_labels = labels + n * T;
      scalar_t* out_scores = scores + n * T;
      for (int64_t t = 0; t < T; ++t) {
        out_labels[t] = blank;
        out_scores[t] = scalar_t(0);
      }
      ext.assign(S, blank);
      for (int64_t i = 0; i < L; ++i) ext[2 * i + 1] = target[i];
      if (frames == 0) {
        path_scores[n] = L == 0 ? acc_t(0) : kNegInf;
        continue;
      }
      const int64_t row_bytes = (S + 3) / 4;
      moves.assign(frames * row_bytes, 0);
      alpha.assign(S, kNegInf);
      next.assign(S, kNegInf);
      alpha[0] = value(0, 0);
      if (S > 1) alpha[1] = value(0, 1);
      for (int64_t t = 1; t < frames; ++t) {
        uint8_t* move_row = moves.data() + t * row_bytes;
        for (int64_t s = 0; s < S; ++s) {
          acc_t best = alpha[s];
          int move = 0;
          if (s >= 1 && alpha[s - 1] > best) {
            best = alpha[s - 1];
            move = 1;
          }
          if (s >= 2 && (s & 1) && ext[s] != ext[s - 2] && alpha[s - 2] > best) {
            best = alpha[s - 2];
            move = 2;
          }
          next[s] = best + value(t, s);
          if (move) put_move(move_row, s, move);
        }
        alpha.swap(next);
      }
      int64_t s = S - 1;
      if (S > 1 && alpha[S - 2] > alpha[S - 1]) s = S - 2;
      path_scores[n] = alpha[s];
      if (!(alpha[s] > kNegInf)) {  // no alignment with a finite log-probability (or NaN input)
        continue;
      }
      for (int64_t t = frames - 1; t >= 0; --t) {
        const scalar_t v = lp[t * st + ext[s]];
        const acc_t w = star_values != nullptr && !(s & 1) ? star(t, s) : kNegInf;
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
    const at::Tensor& target_lengths, int64_t blank, const std::optional<at::Tensor>& star_values,
    const std::optional<at::Tensor>& star_classes) {
  const char* fn = "ctcx.forced_align";
  check_forced_align_layout(fn, log_probs, targets, input_lengths, target_lengths, blank, star_values,
                            star_classes);
  const at::Tensor sv = star_values.has_value() ? star_values->contiguous() : at::Tensor();
  const at::Tensor sc = star_classes.has_value() ? star_classes->contiguous() : at::Tensor();
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
            sv.defined() ? sv.const_data_ptr<at::opmath_type<scalar_t>>() : nullptr,
            sc.defined() ? sc.const_data_ptr<int64_t>() : nullptr, sv.defined() ? sv.size(2) : 0,
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
