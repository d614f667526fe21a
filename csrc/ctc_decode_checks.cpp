#include "ctcx/ctc_decode_checks.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <limits>

#include "ctcx/ctc_decode.h"

namespace ctcx {

void check_decode_layout(const char* fn, const at::Tensor& log_probs,
                         const at::Tensor& input_lengths, int64_t blank) {
  TORCH_CHECK_VALUE(log_probs.dim() == 3, fn, ": log_probs must be (T, N, C), got ",
                    log_probs.dim(), " dims");
  TORCH_CHECK_VALUE(at::isFloatingType(log_probs.scalar_type()), fn,
                    ": log_probs must be floating point, got ", log_probs.scalar_type());
  const int64_t T = log_probs.size(0), N = log_probs.size(1), C = log_probs.size(2);
  // With C <= 1 or no elements the stride over C is never used (and .contiguous() keeps any).
  TORCH_CHECK_VALUE(C <= 1 || log_probs.numel() == 0 || log_probs.stride(2) == 1, fn,
                    ": log_probs must have unit stride over C");
  constexpr int64_t kMaxSize = std::numeric_limits<int32_t>::max() - 1;
  TORCH_CHECK_VALUE(T <= kMaxSize && C <= kMaxSize, fn, ": T = ", T, " and C = ", C,
                    " must not exceed ", kMaxSize);
  TORCH_CHECK_VALUE(blank >= 0 && blank < C, fn, ": blank = ", blank,
                    " is out of range; expected 0 <= blank < C = ", C);
  TORCH_CHECK_VALUE(input_lengths.scalar_type() == at::kLong, fn,
                    ": input_lengths must be int64, got ", input_lengths.scalar_type());
  TORCH_CHECK_VALUE(input_lengths.dim() == 1 && input_lengths.size(0) == N, fn,
                    ": input_lengths must have shape (N,) = (", N, ",), got ",
                    input_lengths.sizes());
  TORCH_CHECK_VALUE(input_lengths.device() == log_probs.device(), fn,
                    ": input_lengths must be on log_probs' device ", log_probs.device(),
                    ", got ", input_lengths.device());
}

void check_beam_search_options(const at::Tensor& log_probs, int64_t beam_width, int64_t top_k,
                               int64_t min_length, int64_t max_length,
                               const std::optional<at::Tensor>& allowed_tokens,
                               std::optional<double> blank_skip_threshold) {
  const char* fn = "ctcx.beam_search";
  TORCH_CHECK_VALUE(beam_width >= 1 && beam_width <= decode::kMaxBeamWidth, fn,
                    ": beam_width = ", beam_width, " is out of range; expected 1 <= beam_width <= ",
                    decode::kMaxBeamWidth);
  TORCH_CHECK_VALUE(top_k >= 1 && top_k <= beam_width, fn, ": top_k = ", top_k,
                    " is out of range; expected 1 <= top_k <= beam_width = ", beam_width);
  TORCH_CHECK_VALUE(min_length >= 0 && max_length >= 0, fn, ": min_length = ", min_length,
                    " and max_length = ", max_length, " must be >= 0");
  if (allowed_tokens) {
    const at::Tensor& a = *allowed_tokens;
    TORCH_CHECK_VALUE(a.scalar_type() == at::kBool, fn, ": allowed_tokens must be bool, got ",
                      a.scalar_type());
    TORCH_CHECK_VALUE(a.dim() == 1 && a.size(0) == log_probs.size(2), fn,
                      ": allowed_tokens must have shape (C,) = (", log_probs.size(2), ",), got ",
                      a.sizes());
    TORCH_CHECK_VALUE(a.device() == log_probs.device(), fn,
                      ": allowed_tokens must be on log_probs' device ", log_probs.device(),
                      ", got ", a.device());
  }
  if (blank_skip_threshold) {
    const double v = *blank_skip_threshold;
    TORCH_CHECK_VALUE(v > 0 && v <= 1, fn, ": blank_skip_threshold = ", v,
                      " is out of range; expected 0 < threshold <= 1");
  }
}

void check_input_lengths_cpu(const char* fn, const at::Tensor& input_lengths, int64_t T) {
  const int64_t* il = input_lengths.const_data_ptr<int64_t>();
  for (int64_t n = 0; n < input_lengths.numel(); ++n) {
    TORCH_CHECK_VALUE(il[n] >= 0 && il[n] <= T, fn, ": input_lengths[", n, "] = ", il[n],
                      " is out of range; expected 0 <= input_length <= T = ", T);
  }
}

}  // namespace ctcx
