// The CPU loss with its reduction as one C++ autograd node: ctcx::ctc_loss_folded.
//
// ctcx.ctc_loss / ctc_loss_with_logits call it for plain eager CPU input that
// requires a gradient (ctcx/loss.py decides; torch.compile, tensor
// subclasses, functorch and CUDA keep the generic path of ctcx/ops.py). The
// fused kernel (ctc_loss_cpu.cpp) computes the losses and, with the
// reduction's per-sample weights folded in, the gradient in the forward
// pass; this node reduces the losses and, in backward, hands that gradient
// over when the incoming gradient is 1 (loss.backward()) or scales it
// otherwise. It does in C++ what a torch.autograd.Function in Python would,
// for the Python overhead: at the trainer's sizes (T, N, C, L) = (32, 64, 37, 5)
// that saves about 25 of the 175 microseconds a call took with a Python
// torch.autograd.Function and the reduction's weights computed by torch ops
// (forward and backward, one thread, 2026-12-07).
//
// The gradient leaves the node without a copy: the node drops its own
// reference in backward, so autograd's accumulation into .grad takes the
// tensor itself. A second backward through a retained graph recomputes it
// from the saved inputs.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/DispatchKeySet.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>

namespace ctcx {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

enum Reduction : int64_t { kNone = 0, kMean = 1, kSum = 2 };

using LossOp = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&,
                                                  const at::Tensor&, const at::Tensor&, int64_t,
                                                  bool, const std::optional<at::Tensor>&);

// The fused op's CPU kernel (ctc_loss or ctc_loss_with_logits), found once.
std::tuple<at::Tensor, at::Tensor> run_fused(bool logits, const at::Tensor& input,
                                             const at::Tensor& targets, const at::Tensor& il,
                                             const at::Tensor& tl, int64_t blank,
                                             bool zero_infinity, const at::Tensor& weights) {
  static const auto loss_op = c10::Dispatcher::singleton()
                                  .findSchemaOrThrow("ctcx::ctc_loss", "")
                                  .typed<LossOp>();
  static const auto logits_op = c10::Dispatcher::singleton()
                                    .findSchemaOrThrow("ctcx::ctc_loss_with_logits", "")
                                    .typed<LossOp>();
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  return (logits ? logits_op : loss_op).call(input, targets, il, tl, blank, zero_infinity, weights);
}

// Values of a plain CPU tensor may be read (not a subclass, fake, functorch
// or functionalization wrapper, where a value-dependent branch would be wrong).
// Functionality keys only: a backend key (Meta, CPU) in this set would match
// every dense tensor.
bool readable(const at::Tensor& t) {
  constexpr c10::DispatchKeySet wrappers({c10::DispatchKey::Python, c10::DispatchKey::PythonTLSSnapshot,
                                          c10::DispatchKey::FuncTorchBatched,
                                          c10::DispatchKey::FuncTorchGradWrapper,
                                          c10::DispatchKey::Functionalize});
  return t.defined() && t.device().is_cpu() && !t.key_set().has_any(wrappers);
}

struct FoldedLoss : public torch::autograd::Function<FoldedLoss> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input, const at::Tensor& targets,
                            const at::Tensor& il, const at::Tensor& tl, int64_t blank,
                            bool zero_infinity, const at::Tensor& weights, int64_t reduction,
                            bool logits) {
    auto [loss, grad] = run_fused(logits, input, targets, il, tl, blank, zero_infinity, weights);
    ctx->save_for_backward({input, targets, il, tl, weights});
    ctx->saved_data["grad"] = grad;
    ctx->saved_data["blank"] = blank;
    ctx->saved_data["zero_infinity"] = zero_infinity;
    ctx->saved_data["logits"] = logits;
    if (reduction == kNone) {
      return loss;
    }
    return reduction == kMean ? at::dot(loss, weights) : loss.sum();
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    // Grad mode is on in backward exactly under create_graph=True; the gradient
    // below has no derivative of its own (the message is ctcx/ops.py's).
    const bool logits = ctx->saved_data["logits"].toBool();
    TORCH_CHECK(!at::GradMode::is_enabled(), logits ? "ctcx.ctc_loss_with_logits" : "ctcx.ctc_loss",
                ": the CTC loss can be differentiated once, not twice: its gradient is "
                "computed by the fused kernel, which has no derivative itself, so double "
                "backward (create_graph=True, e.g. a Hessian-vector product or a gradient "
                "penalty) is not supported (torch.nn.functional.ctc_loss does not support it "
                "either). Call backward / torch.autograd.grad without create_graph=True.");
    at::Tensor grad = ctx->saved_data["grad"].toTensor();
    ctx->saved_data["grad"] = at::Tensor();  // hand it over: .grad takes it without a copy
    if (!grad.defined()) {                    // a second backward through a retained graph
      auto saved = ctx->get_saved_variables();
      grad = std::get<1>(run_fused(logits, saved[0], saved[1], saved[2],
                                   saved[3], ctx->saved_data["blank"].toInt(),
                                   ctx->saved_data["zero_infinity"].toBool(), saved[4]));
    }
    const at::Tensor& out = grad_outputs[0];
    if (out.defined()) {
      bool ones = false;
      if (readable(out)) {
        ones = out.dim() == 0 ? out.item<double>() == 1.0 : out.eq(1).all().item<bool>();
      }
      if (!ones) {
        at::Tensor scale = out.to(grad.scalar_type());
        grad = grad * (out.dim() == 0 ? scale : scale.view({1, -1, 1}));
      }
    } else {
      grad = at::Tensor();  // no gradient flows in
    }
    return {grad,         at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(),
            at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

// The reduction's per-sample weights, folded into the kernel's gradient:
// 1 / (N max(target_length, 1)) for 'mean' (PyTorch's definition), else 1;
// in the loss dtype (float32 for half and bfloat16 input).
at::Tensor reduction_weights(const at::Tensor& input, const at::Tensor& target_lengths,
                             int64_t reduction) {
  const auto dtype = input.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const int64_t n = input.size(1);
  if (reduction != kMean) {
    return at::ones({n}, input.options().dtype(dtype));
  }
  TORCH_CHECK(target_lengths.scalar_type() == at::kLong && target_lengths.dim() == 1 &&
                  target_lengths.size(0) == n && target_lengths.device().is_cpu(),
              "ctc_loss_folded: target_lengths must be (N,) int64 on the CPU");
  at::Tensor weights = at::empty({n}, input.options().dtype(dtype));
  const at::Tensor tl = target_lengths.contiguous();
  const int64_t* lengths = tl.const_data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES(dtype, "ctcx_reduction_weights", [&] {
    scalar_t* w = weights.mutable_data_ptr<scalar_t>();
    for (int64_t i = 0; i < n; ++i) {
      w[i] = scalar_t(1) / static_cast<scalar_t>(std::max<int64_t>(lengths[i], 1) * n);
    }
  });
  return weights;
}

at::Tensor ctc_loss_folded(const at::Tensor& input, const at::Tensor& targets,
                           const at::Tensor& input_lengths, const at::Tensor& target_lengths,
                           int64_t blank, bool zero_infinity, int64_t reduction, bool logits) {
  TORCH_CHECK(reduction == kNone || reduction == kMean || reduction == kSum,
              "ctc_loss_folded: reduction must be 0 (none), 1 (mean) or 2 (sum), got ", reduction);
  TORCH_CHECK(input.dim() == 3, "ctc_loss_folded: input must be (T, N, C)");
  at::Tensor weights = reduction_weights(input, target_lengths, reduction);
  return FoldedLoss::apply(input, targets, input_lengths, target_lengths, blank, zero_infinity,
                           weights, reduction, logits);
}

}  // namespace
}  // namespace ctcx

TORCH_LIBRARY_IMPL(ctcx, AutogradCPU, m) {
  m.impl("ctc_loss_folded", &ctcx::ctc_loss_folded);
}
