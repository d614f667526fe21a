// CUDA glue of forced alignment: layout checks, device guard, stream, outputs
// and workspace, then the kernel through a plain parameter struct
// (forced_align_cuda.h). Nothing here reads tensor values on the host; value
// checks are ctcx/align.py's job on CUDA; the kernel clamps lengths and finds
// no alignment for out-of-range labels, memory-safe without them.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <optional>
#include <tuple>

#include "ctcx/forced_align_checks.h"
#include "forced_align_cuda.h"

namespace ctcx {
namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor> ctc_forced_align_cuda(
    const at::Tensor& log_probs, const at::Tensor& targets, const at::Tensor& input_lengths,
    const at::Tensor& target_lengths, int64_t blank, std::optional<double> star_penalty) {
  const char* fn = "ctcx.forced_align";
  check_forced_align_layout(fn, log_probs, targets, input_lengths, target_lengths, blank, star_penalty);
  const c10::cuda::CUDAGuard guard(log_probs.device());
  const at::Tensor il = input_lengths.contiguous(), tl = target_lengths.contiguous();
  const at::Tensor tg = targets.contiguous();
  // The wildcard's candidates: each frame's min(4, C) best classes (values
  // plus the penalty, in the op math type), read by ctcx/forced_align_star.h.
  at::Tensor sv, sc;
  if (star_penalty.has_value()) {
    auto [values, classes] = at::topk(log_probs, std::min<int64_t>(4, log_probs.size(2)), 2);
    sv = (values.to(log_probs.scalar_type() == at::kDouble ? at::kDouble : at::kFloat) + *star_penalty)
             .contiguous();
    sc = classes.contiguous();
  }
  const int64_t T = log_probs.size(0), N = log_probs.size(1);
  const auto acc = log_probs.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  at::Tensor labels = at::empty({N, T}, il.options());
  at::Tensor scores = at::empty({N, T}, log_probs.options());
  at::Tensor path_scores = at::empty({N}, log_probs.options().dtype(acc));
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, log_probs.scalar_type(), "ctcx_forced_align_cuda", [&] {
        using acc_t = typename cuda::AccType<scalar_t>::type;
        cuda::ForcedAlignParams<scalar_t> p{};
        p.log_probs = log_probs.const_data_ptr<scalar_t>();
        p.T = T;
        p.N = N;
        p.C = log_probs.size(2);
        p.stride_t = log_probs.stride(0);
        p.stride_n = log_probs.stride(1);
        p.targets = tg.const_data_ptr<int64_t>();
        p.S = tg.size(1);
        p.input_lengths = il.const_data_ptr<int64_t>();
        p.target_lengths = tl.const_data_ptr<int64_t>();
        p.blank = blank;
        p.star_values = sv.defined() ? sv.const_data_ptr<acc_t>() : nullptr;
        p.star_classes = sc.defined() ? sc.const_data_ptr<int64_t>() : nullptr;
        p.K = sv.defined() ? sv.size(2) : 0;
        p.labels = labels.mutable_data_ptr<int64_t>();
        p.scores = scores.mutable_data_ptr<scalar_t>();
        p.path_scores = path_scores.mutable_data_ptr<acc_t>();
        const at::Tensor workspace = at::empty(
            {static_cast<int64_t>(cuda::forced_align_workspace_bytes(p))}, log_probs.options().dtype(at::kByte));
        p.workspace = workspace.mutable_data_ptr();
        const cudaError_t err = cuda::forced_align_cuda(p, c10::cuda::getCurrentCUDAStream().stream());
        TORCH_CHECK(err == cudaSuccess, fn, ": CUDA kernel launch failed: ", cudaGetErrorString(err));
      });
  return {labels, scores, path_scores};
}

}  // namespace
}  // namespace ctcx

TORCH_LIBRARY_IMPL(ctcx, CUDA, m) {
  m.impl("ctc_forced_align", &ctcx::ctc_forced_align_cuda);
}
