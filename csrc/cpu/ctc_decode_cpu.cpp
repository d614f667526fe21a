// CTC decoding on the CPU, one sample per task (at::parallel_for over the
// batch): best path, and the prefix beam search of ctcx/ctc_decode.h, its
// frame step pruned by bounds for one thread (ctcx/ctc_decode_serial.h).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <limits>
#include <optional>
#include <tuple>
#include <vector>

#include "ctcx/ctc_decode.h"
#include "ctcx/ctc_decode_checks.h"
#include "ctcx/ctc_decode_serial.h"

namespace ctcx {
namespace {

// The best-path class of a row of C >= 1 values, decode::argmax_better's (and
// torch.argmax's) answer: the first NaN if there is one, else the first
// index of the largest value. Two vectorizable passes (the maximum, then the
// block holding its first occurrence) instead of one compare-and-branch per
// class.
template <typename scalar_t, typename acc_t>
int64_t row_argmax(const scalar_t* row, int64_t C) {
  acc_t m = static_cast<acc_t>(row[0]);
  int nans = 0;  // an int, not a bool: GCC vectorizes a sum, not an or
#pragma omp simd reduction(max : m) reduction(+ : nans)
  for (int64_t c = 0; c < C; ++c) {
    const acc_t v = static_cast<acc_t>(row[c]);
    m = v > m ? v : m;
    nans += v != v;
  }
  if (nans) {
    for (int64_t c = 0;; ++c) {
      if (static_cast<acc_t>(row[c]) != static_cast<acc_t>(row[c])) return c;
    }
  }
  constexpr int64_t kBlock = 16;
  int64_t base = 0;
  for (; base + kBlock <= C; base += kBlock) {
    int hits = 0;
    for (int64_t i = 0; i < kBlock; ++i) hits += static_cast<acc_t>(row[base + i]) == m;
    if (hits) break;
  }
  for (int64_t c = base;; ++c) {
    if (static_cast<acc_t>(row[c]) == m) return c;  // m is one of the values
  }
}

template <typename scalar_t>
void greedy_decode_cpu_impl(const at::Tensor& x, const int64_t* input_lengths, int64_t blank,
                            int64_t* tokens, int64_t* lengths) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t T = x.size(0), N = x.size(1), C = x.size(2);
  const int64_t st = x.stride(0), sn = x.stride(1);
  const scalar_t* data = x.const_data_ptr<scalar_t>();
  at::parallel_for(0, N, 1, [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      int64_t* out = tokens + n * T;
      int64_t count = 0, prev = -1;
      for (int64_t t = 0; t < input_lengths[n]; ++t) {
        const int64_t best_c = row_argmax<scalar_t, acc_t>(data + t * st + n * sn, C);
        if (best_c != blank && best_c != prev) out[count++] = best_c;
        prev = best_c;
      }
      for (int64_t t = count; t < T; ++t) out[t] = -1;  // padding (tokens is left unfilled)
      lengths[n] = count;
    }
  });
}

std::tuple<at::Tensor, at::Tensor> ctc_greedy_decode_cpu(const at::Tensor& log_probs,
                                                         const at::Tensor& input_lengths,
                                                         int64_t blank) {
  const char* fn = "ctcx.greedy_decode";
  check_decode_layout(fn, log_probs, input_lengths, blank);
  const at::Tensor il = input_lengths.contiguous();
  const int64_t T = log_probs.size(0), N = log_probs.size(1);
  check_input_lengths_cpu(fn, il, T);
  at::Tensor tokens = at::empty({N, T}, il.options());
  at::Tensor lengths = at::empty({N}, il.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, log_probs.scalar_type(), "ctcx_greedy_decode_cpu", [&] {
        greedy_decode_cpu_impl<scalar_t>(log_probs, il.const_data_ptr<int64_t>(), blank,
                                         tokens.mutable_data_ptr<int64_t>(),
                                         lengths.mutable_data_ptr<int64_t>());
      });
  return {tokens, lengths};
}

struct BeamSearchOutputs {
  int64_t* tokens;     // (N, top_k, T)
  int64_t* timesteps;  // (N, top_k, T)
  int64_t* lengths;    // (N, top_k)
  void* scores;        // (N, top_k) acc_t
};

template <typename scalar_t>
void beam_search_cpu_impl(const at::Tensor& x, const int64_t* input_lengths, const bool* allowed,
                          const decode::SearchConfig& cfg, double log_skip_threshold,
                          int64_t top_k, const BeamSearchOutputs& out) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t T = x.size(0), N = x.size(1), C = x.size(2);
  const int64_t st = x.stride(0), sn = x.stride(1);
  const scalar_t* data = x.const_data_ptr<scalar_t>();
  const int32_t K = cfg.beam_width;
  const acc_t log_skip = static_cast<acc_t>(log_skip_threshold);
  acc_t* scores = static_cast<acc_t*>(out.scores);

  // Samples go frame by frame in groups of kGroup: with time-major input
  // ((T, N, C), the usual layout) the group's rows of one frame are adjacent
  // in memory, where one sample's frames are N * C apart.
  constexpr int64_t kGroup = 16;
  const int64_t row_bytes = C * static_cast<int64_t>(sizeof(scalar_t));
  at::parallel_for(0, N, kGroup, [&](int64_t begin, int64_t end) {
    decode::PrunedStep<acc_t> step;
    const size_t beam_words = (2 * decode::beam_bytes<acc_t>(K) + 7) / 8;
    // uint64_t words: 8-byte alignment, all the carved arrays need.
    std::vector<uint64_t> beam_mem(kGroup * beam_words);
    std::vector<decode::BeamView<acc_t>> beams(2 * kGroup);
    for (int64_t g = 0; g < kGroup; ++g) {
      decode::Carver carver{reinterpret_cast<unsigned char*>(beam_mem.data() + g * beam_words)};
      beams[2 * g] = decode::carve_beam<acc_t>(carver, K);
      beams[2 * g + 1] = decode::carve_beam<acc_t>(carver, K);
    }
    std::vector<int32_t> hist_pred[kGroup], hist_tok[kGroup];
    std::vector<int32_t> parent_mem(kGroup * K);
    decode::KnownParents known[kGroup];
    int32_t nb[kGroup];

    for (int64_t first = begin; first < end; first += kGroup) {
      const int64_t count = end - first < kGroup ? end - first : kGroup;
      int64_t longest = 0;
      for (int64_t g = 0; g < count; ++g) {
        const int64_t frames = input_lengths[first + g];
        longest = frames > longest ? frames : longest;
        nb[g] = decode::init_beam(beams[2 * g], frames, cfg.min_length);
        known[g] = {parent_mem.data() + g * K, false};
        hist_pred[g].resize(frames * K);
        hist_tok[g].resize(frames * K);
      }
      for (int64_t t = 0; t < longest; ++t) {
        for (int64_t g = 0; g < count; ++g) {
          const int64_t n = first + g, frames = input_lengths[n];
          if (t >= frames) continue;
          const scalar_t* row = data + t * st + n * sn;
          if (t + 1 < frames) {  // the start of the sample's next row (a small row: all of it)
            const char* next_row = reinterpret_cast<const char*>(row + st);
            for (int64_t b = 0; b < row_bytes && b < 256; b += 64) __builtin_prefetch(next_row + b);
          }
          const bool extend = !(decode::read_lp<acc_t>(row, cfg.blank) > log_skip);
          nb[g] = step.step(cfg, row, C, allowed, extend, static_cast<int32_t>(frames - 1 - t), nb[g],
                            beams[2 * g + (t & 1)], beams[2 * g + ((t + 1) & 1)],
                            hist_pred[g].data() + t * K, hist_tok[g].data() + t * K, known[g]);
        }
      }
      for (int64_t g = 0; g < count; ++g) {
        const int64_t n = first + g, frames = input_lengths[n];
        for (int64_t i = 0; i < top_k; ++i) {
          const int64_t at = n * top_k + i;
          decode::write_hypothesis(static_cast<int32_t>(i), nb[g], beams[2 * g + (frames & 1)],
                                   hist_pred[g].data(), hist_tok[g].data(), K, frames, T,
                                   out.tokens + at * T, out.timesteps + at * T, out.lengths + at,
                                   scores + at);
        }
      }
    }
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> ctc_beam_search_cpu(
    const at::Tensor& log_probs, const at::Tensor& input_lengths, int64_t beam_width,
    int64_t top_k, int64_t blank, int64_t min_length, int64_t max_length,
    const std::optional<at::Tensor>& allowed_tokens, std::optional<double> blank_skip_threshold) {
  const char* fn = "ctcx.beam_search";
  check_decode_layout(fn, log_probs, input_lengths, blank);
  check_beam_search_options(log_probs, beam_width, top_k, min_length, max_length, allowed_tokens,
                            blank_skip_threshold);
  const at::Tensor il = input_lengths.contiguous();
  const int64_t T = log_probs.size(0), N = log_probs.size(1), C = log_probs.size(2);
  check_input_lengths_cpu(fn, il, T);
  const at::Tensor allowed = allowed_tokens ? allowed_tokens->contiguous() : at::Tensor();

  const auto long_options = il.options();
  at::Tensor tokens = at::empty({N, top_k, T}, long_options);
  at::Tensor timesteps = at::empty({N, top_k, T}, long_options);
  at::Tensor lengths = at::empty({N, top_k}, long_options);
  at::Tensor scores =
      at::empty({N, top_k}, log_probs.options().dtype(at::toOpMathType(log_probs.scalar_type())));
  const decode::SearchConfig cfg =
      decode::make_config(beam_width, T, C, blank, min_length, max_length);
  const double log_skip = blank_skip_threshold ? std::log(*blank_skip_threshold)
                                               : std::numeric_limits<double>::infinity();
  const BeamSearchOutputs out{tokens.mutable_data_ptr<int64_t>(),
                              timesteps.mutable_data_ptr<int64_t>(),
                              lengths.mutable_data_ptr<int64_t>(), scores.mutable_data_ptr()};
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, log_probs.scalar_type(), "ctcx_beam_search_cpu", [&] {
        beam_search_cpu_impl<scalar_t>(log_probs, il.const_data_ptr<int64_t>(),
                                       allowed.defined() ? allowed.const_data_ptr<bool>() : nullptr,
                                       cfg, log_skip, top_k, out);
      });
  return {tokens, lengths, scores, timesteps};
}

}  // namespace
}  // namespace ctcx

TORCH_LIBRARY_IMPL(ctcx, CPU, m) {
  m.impl("ctc_greedy_decode", &ctcx::ctc_greedy_decode_cpu);
  m.impl("ctc_beam_search", &ctcx::ctc_beam_search_cpu);
}
