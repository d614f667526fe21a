#include "ctcx/ctc_loss_checks.h"

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>
#include <c10/util/Exception.h>

namespace ctcx {

void check_ctc_loss_layout(const at::Tensor& log_probs, const at::Tensor& targets,
                           const at::Tensor& input_lengths, const at::Tensor& target_lengths,
                           int64_t blank) {
  TORCH_CHECK_VALUE(log_probs.dim() == 3, "ctcx.ctc_loss: log_probs must be (T, N, C), got ",
                    log_probs.dim(), " dims");
  TORCH_CHECK_VALUE(at::isFloatingType(log_probs.scalar_type()),
                    "ctcx.ctc_loss: log_probs must be floating point, got ",
                    log_probs.scalar_type());
  // With C <= 1 or no elements the stride over C is never used (and .contiguous() keeps any).
  TORCH_CHECK_VALUE(log_probs.size(2) <= 1 || log_probs.numel() == 0 || log_probs.stride(2) == 1,
                    "ctcx.ctc_loss: log_probs must have unit stride over C");
  const int64_t N = log_probs.size(1);
  const int64_t C = log_probs.size(2);
  TORCH_CHECK_VALUE(blank >= 0 && blank < C, "ctcx.ctc_loss: blank = ", blank,
                    " is out of range; expected 0 <= blank < C = ", C);
  TORCH_CHECK_VALUE(targets.scalar_type() == at::kLong || targets.scalar_type() == at::kInt,
                    "ctcx.ctc_loss: targets must be int32 or int64, got ", targets.scalar_type());
  TORCH_CHECK_VALUE(targets.dim() == 1 || (targets.dim() == 2 && targets.size(0) == N),
                    "ctcx.ctc_loss: targets must be (N, S) padded with N = ", N,
                    " or 1-D concatenated, got shape ", targets.sizes());
  for (const auto* t : {&input_lengths, &target_lengths}) {
    const char* name = t == &input_lengths ? "input_lengths" : "target_lengths";
    TORCH_CHECK_VALUE(t->scalar_type() == at::kLong, "ctcx.ctc_loss: ", name,
                      " must be int64, got ", t->scalar_type());
    TORCH_CHECK_VALUE(t->dim() == 1 && t->size(0) == N, "ctcx.ctc_loss: ", name,
                      " must have shape (N,) = (", N, ",), got ", t->sizes());
  }
  for (const auto* t : {&targets, &input_lengths, &target_lengths}) {
    TORCH_CHECK_VALUE(t->device() == log_probs.device(),
                      "ctcx.ctc_loss: all tensors must be on log_probs' device ",
                      log_probs.device(), ", got one on ", t->device());
  }
}

void check_grad_weights(const at::Tensor& grad_weights, const at::Tensor& log_probs) {
  const auto acc_dtype = at::toOpMathType(log_probs.scalar_type());
  TORCH_CHECK_VALUE(grad_weights.dim() == 1 && grad_weights.size(0) == log_probs.size(1),
                    "ctcx.ctc_loss: grad_weights must have shape (N,) = (", log_probs.size(1),
                    ",), got ", grad_weights.sizes());
  TORCH_CHECK_VALUE(grad_weights.scalar_type() == acc_dtype, "ctcx.ctc_loss: grad_weights must be ",
                    acc_dtype, ", got ", grad_weights.scalar_type());
  TORCH_CHECK_VALUE(grad_weights.device() == log_probs.device(),
                    "ctcx.ctc_loss: grad_weights must be on log_probs' device");
}

at::Tensor check_ctc_loss_values_cpu(const at::Tensor& log_probs, const at::Tensor& targets,
                                     const at::Tensor& input_lengths,
                                     const at::Tensor& target_lengths, int64_t blank) {
  const int64_t T = log_probs.size(0);
  const int64_t N = log_probs.size(1);
  const int64_t C = log_probs.size(2);
  const int64_t* il = input_lengths.const_data_ptr<int64_t>();
  const int64_t* tl = target_lengths.const_data_ptr<int64_t>();
  const bool padded = targets.dim() == 2;
  const int64_t S = padded ? targets.size(1) : 0;
  at::Tensor offsets = at::empty({N}, input_lengths.options());
  int64_t* off = offsets.mutable_data_ptr<int64_t>();
  int64_t total = 0;
  for (int64_t n = 0; n < N; ++n) {
    TORCH_CHECK_VALUE(il[n] >= 0 && il[n] <= T, "ctcx.ctc_loss: input_lengths[", n, "] = ", il[n],
                      " is out of range; expected 0 <= input_length <= T = ", T);
    TORCH_CHECK_VALUE(tl[n] >= 0, "ctcx.ctc_loss: target_lengths[", n, "] = ", tl[n],
                      " is negative");
    TORCH_CHECK_VALUE(!padded || tl[n] <= S, "ctcx.ctc_loss: target_lengths[", n, "] = ", tl[n],
                      " exceeds the padded targets' width S = ", S);
    off[n] = padded ? n * S : total;
    total += tl[n];
  }
  TORCH_CHECK_VALUE(padded || total == targets.numel(),
                    "ctcx.ctc_loss: concatenated targets have ", targets.numel(),
                    " labels but sum(target_lengths) = ", total);
  AT_DISPATCH_INDEX_TYPES(targets.scalar_type(), "ctcx_check_targets", [&] {
    const index_t* tg = targets.const_data_ptr<index_t>();
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t k = 0; k < tl[n]; ++k) {
        const int64_t c = tg[off[n] + k];
        TORCH_CHECK_VALUE(c >= 0 && c < C && c != blank, "ctcx.ctc_loss: targets label ", c,
                          " (sample ", n, ", position ", k,
                          ") is invalid; expected 0 <= label < C = ", C,
                          " and label != blank = ", blank);
      }
    }
  });
  return offsets;
}

}  // namespace ctcx
