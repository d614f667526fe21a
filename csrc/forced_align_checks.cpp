#include "ctcx/forced_align_checks.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <limits>

#include "ctcx/ctc_decode_checks.h"

namespace ctcx {

void check_forced_align_layout(const char* fn, const at::Tensor& log_probs,
                               const at::Tensor& targets, const at::Tensor& input_lengths,
                               const at::Tensor& target_lengths, int64_t blank,
                               std::optional<double> star_penalty) {
  check_decode_layout(fn, log_probs, input_lengths, blank);
  const int64_t N = log_probs.size(1);
  TORCH_CHECK_VALUE(targets.scalar_type() == at::kLong && targets.dim() == 2 && targets.size(0) == N,
                    fn, ": targets must be (N, S) int64 with N = ", N, ", got ", targets.sizes(),
                    " of ", targets.scalar_type());
  TORCH_CHECK_VALUE(target_lengths.scalar_type() == at::kLong && target_lengths.dim() == 1 &&
                        target_lengths.size(0) == N,
                    fn, ": target_lengths must be (N,) int64 with N = ", N, ", got ",
                    target_lengths.sizes(), " of ", target_lengths.scalar_type());
  for (const at::Tensor* t : {&targets, &target_lengths}) {
    TORCH_CHECK_VALUE(t->device() == log_probs.device(), fn,
                      ": targets and target_lengths must be on log_probs' device ",
                      log_probs.device(), ", got ", t->device());
  }
  if (star_penalty.has_value()) {
    const double p = *star_penalty;
    TORCH_CHECK_VALUE(!std::isnan(p) && p < std::numeric_limits<double>::infinity(), fn,
                      ": star_penalty must be a real number below +inf, got ", p);
  }
}

void check_forced_align_values_cpu(const char* fn, const at::Tensor& log_probs,
                                   const at::Tensor& targets, const at::Tensor& input_lengths,
                                   const at::Tensor& target_lengths, int64_t blank) {
  const int64_t T = log_probs.size(0), C = log_probs.size(2), S = targets.size(1);
  check_input_lengths_cpu(fn, input_lengths, T);
  const int64_t* tl = target_lengths.const_data_ptr<int64_t>();
  const int64_t* tg = targets.const_data_ptr<int64_t>();
  for (int64_t n = 0; n < target_lengths.numel(); ++n) {
    TORCH_CHECK_VALUE(tl[n] >= 0 && tl[n] <= S, fn, ": target_lengths[", n, "] = ", tl[n],
                      " is out of range; expected 0 <= target_length <= S = ", S);
    for (int64_t i = 0; i < tl[n]; ++i) {
      const int64_t c = tg[n * S + i];
      TORCH_CHECK_VALUE(c >= 0 && c < C && c != blank, fn, ": targets[", n, "][", i, "] = ", c,
                        " must be a class in [0, C = ", C, ") other than blank = ", blank);
    }
  }
}

}  // namespace ctcx
