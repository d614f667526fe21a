// CUDA glue of the fused CTC loss ops: layout checks, device guard, stream,
// outputs and workspace, then the kernels of ctc_loss_kernel.cuh through a
// plain parameter struct.
//
// Nothing here reads tensor values on the host, so a call never synchronizes
// and can be captured in a CUDA graph. Value checks (label range, lengths) are
// ctcx/loss.py's job on CUDA; the kernels stay memory-safe without them and
// give the offending samples a NaN loss.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <optional>
#include <tuple>

#include "ctc_loss_cuda.h"
#include "ctcx/ctc_loss_checks.h"

namespace ctcx {
namespace {

template <typename scalar_t, typename target_t>
void run_ctc_loss_cuda(const at::Tensor& input, bool logits, const at::Tensor& targets,
                       const at::Tensor& input_lengths, const at::Tensor& target_lengths,
                       int64_t blank, bool zero_infinity, const at::Tensor* grad_weights,
                       at::Tensor& loss, at::Tensor* grad) {
  using acc_t = typename cuda::AccType<scalar_t>::type;
  cuda::CtcLossParams<scalar_t, target_t> p{};
  p.input = input.const_data_ptr<scalar_t>();
  p.T = input.size(0);
  p.N = input.size(1);
  p.C = input.size(2);
  p.input_stride_t = input.stride(0);
  p.input_stride_n = input.stride(1);
  p.logits = logits;
  p.targets = targets.const_data_ptr<target_t>();
  p.padded = targets.dim() == 2;
  p.S = p.padded ? targets.size(1) : 0;
  p.numel = targets.numel();
  p.input_lengths = input_lengths.const_data_ptr<int64_t>();
  p.target_lengths = target_lengths.const_data_ptr<int64_t>();
  p.blank = blank;
  p.zero_infinity = zero_infinity;
  p.loss = loss.mutable_data_ptr<acc_t>();
  if (grad) {
    p.grad = grad->mutable_data_ptr<scalar_t>();
    p.grad_stride_t = grad->stride(0);
    p.grad_stride_n = grad->stride(1);
    p.grad_weights = grad_weights->const_data_ptr<acc_t>();
  }
  const cuda::WorkspaceLayout layout = cuda::workspace_layout(p);
  const at::Tensor workspace =
      at::empty({static_cast<int64_t>(layout.total)}, input.options().dtype(at::kByte));
  p.workspace = workspace.mutable_data_ptr();
  const cudaError_t err = cuda::ctc_loss_cuda(p, c10::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(err == cudaSuccess, "ctcx.ctc_loss: CUDA kernel launch failed: ",
              cudaGetErrorString(err));
}

std::tuple<at::Tensor, at::Tensor> ctc_loss_cuda_common(
    const at::Tensor& input, bool logits, const at::Tensor& targets,
    const at::Tensor& input_lengths, const at::Tensor& target_lengths, int64_t blank,
    bool zero_infinity, const std::optional<at::Tensor>& grad_weights) {
  check_ctc_loss_layout(input, targets, input_lengths, target_lengths, blank);
  const bool compute_grad = grad_weights.has_value();
  if (compute_grad) check_grad_weights(*grad_weights, input);
  const c10::cuda::CUDAGuard guard(input.device());
  const at::Tensor il = input_lengths.contiguous();
  const at::Tensor tl = target_lengths.contiguous();
  const at::Tensor tg = targets.contiguous();
  const at::Tensor weights = compute_grad ? grad_weights->contiguous() : at::Tensor();

  at::Tensor loss =
      at::empty({input.size(1)}, input.options().dtype(at::toOpMathType(input.scalar_type())));
  // The kernels write every element (zeros past the input lengths) in the
  // input's layout when it is dense, like autograd's own gradients.
  at::Tensor grad = compute_grad ? at::empty_like(input) : at::empty({0}, input.options());

  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, input.scalar_type(), "ctcx_ctc_loss_cuda", [&] {
        if (tg.scalar_type() == at::kInt) {
          run_ctc_loss_cuda<scalar_t, int32_t>(input, logits, tg, il, tl, blank, zero_infinity,
                                               &weights, loss, compute_grad ? &grad : nullptr);
        } else {
          run_ctc_loss_cuda<scalar_t, int64_t>(input, logits, tg, il, tl, blank, zero_infinity,
                                               &weights, loss, compute_grad ? &grad : nullptr);
        }
      });
  return {loss, grad};
}

std::tuple<at::Tensor, at::Tensor> ctc_loss_cuda(const at::Tensor& log_probs,
                                                const at::Tensor& targets,
                                                const at::Tensor& input_lengths,
                                                const at::Tensor& target_lengths, int64_t blank,
                                                bool zero_infinity,
                                                const std::optional<at::Tensor>& grad_weights) {
  return ctc_loss_cuda_common(log_probs, false, targets, input_lengths, target_lengths, blank,
                              zero_infinity, grad_weights);
}

std::tuple<at::Tensor, at::Tensor> ctc_loss_with_logits_cuda(
    const at::Tensor& logits, const at::Tensor& targets, const at::Tensor& input_lengths,
    const at::Tensor& target_lengths, int64_t blank, bool zero_infinity,
    const std::optional<at::Tensor>& grad_weights) {
  return ctc_loss_cuda_common(logits, true, targets, input_lengths, target_lengths, blank,
                              zero_infinity, grad_weights);
}

}  // namespace
}  // namespace ctcx

TORCH_LIBRARY_IMPL(ctcx, CUDA, m) {
  m.impl("ctc_loss", &ctcx::ctc_loss_cuda);
  m.impl("ctc_loss_with_logits", &ctcx::ctc_loss_with_logits_cuda);
}
