// CUDA glue of the decoding ops: layout checks, device guard, stream, outputs
// and workspace, then the kernels through plain parameter structs
// (ctc_decode_cuda.h).
//
// Nothing here reads tensor values on the host, so a call never synchronizes
// inside the search. Value checks (input lengths) are the Python API's job on
// CUDA; the kernels clamp lengths into [0, T] and stay memory-safe without them.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <cmath>
#include <limits>
#include <optional>
#include <tuple>

#include "ctc_decode_cuda.h"
#include "ctcx/ctc_decode.h"
#include "ctcx/ctc_decode_checks.h"

namespace ctcx {
namespace {

std::tuple<at::Tensor, at::Tensor> ctc_greedy_decode_cuda(const at::Tensor& log_probs,
                                                          const at::Tensor& input_lengths,
                                                          int64_t blank) {
  check_decode_layout("ctcx.greedy_decode", log_probs, input_lengths, blank);
  const c10::cuda::CUDAGuard guard(log_probs.device());
  const at::Tensor il = input_lengths.contiguous();
  const int64_t T = log_probs.size(0), N = log_probs.size(1);
  at::Tensor tokens = at::empty({N, T}, il.options());
  at::Tensor lengths = at::empty({N}, il.options());
  at::Tensor best = at::empty({N * T}, il.options().dtype(at::kInt));
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, log_probs.scalar_type(), "ctcx_greedy_decode_cuda", [&] {
        cuda::GreedyDecodeParams<scalar_t> p{};
        p.log_probs = log_probs.const_data_ptr<scalar_t>();
        p.T = T;
        p.N = N;
        p.C = log_probs.size(2);
        p.stride_t = log_probs.stride(0);
        p.stride_n = log_probs.stride(1);
        p.input_lengths = il.const_data_ptr<int64_t>();
        p.blank = blank;
        p.tokens = tokens.mutable_data_ptr<int64_t>();
        p.lengths = lengths.mutable_data_ptr<int64_t>();
        p.best = best.mutable_data_ptr<int32_t>();
        const cudaError_t err =
            cuda::greedy_decode_cuda(p, c10::cuda::getCurrentCUDAStream().stream());
        TORCH_CHECK(err == cudaSuccess, "ctcx.greedy_decode: CUDA kernel launch failed: ",
                    cudaGetErrorString(err));
      });
  return {tokens, lengths};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> ctc_beam_search_cuda(
    const at::Tensor& log_probs, const at::Tensor& input_lengths, int64_t beam_width,
    int64_t top_k, int64_t blank, int64_t min_length, int64_t max_length,
    const std::optional<at::Tensor>& allowed_tokens, std::optional<double> blank_skip_threshold) {
  check_decode_layout("ctcx.beam_search", log_probs, input_lengths, blank);
  check_beam_search_options(log_probs, beam_width, top_k, min_length, max_length, allowed_tokens,
                            blank_skip_threshold);
  const c10::cuda::CUDAGuard guard(log_probs.device());
  const at::Tensor il = input_lengths.contiguous();
  const at::Tensor allowed = allowed_tokens ? allowed_tokens->contiguous() : at::Tensor();
  const int64_t T = log_probs.size(0), N = log_probs.size(1), C = log_probs.size(2);

  const auto long_options = il.options();
  at::Tensor tokens = at::empty({N, top_k, T}, long_options);
  at::Tensor timesteps = at::empty({N, top_k, T}, long_options);
  at::Tensor lengths = at::empty({N, top_k}, long_options);
  at::Tensor scores =
      at::empty({N, top_k}, log_probs.options().dtype(at::toOpMathType(log_probs.scalar_type())));
  int shared_optin = 0;
  const cudaError_t attr_err = cudaDeviceGetAttribute(
      &shared_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, log_probs.device().index());
  TORCH_CHECK(attr_err == cudaSuccess, "ctcx.beam_search: cannot query the GPU: ",
              cudaGetErrorString(attr_err));
  const double log_skip = blank_skip_threshold ? std::log(*blank_skip_threshold)
                                               : std::numeric_limits<double>::infinity();

  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, log_probs.scalar_type(), "ctcx_beam_search_cuda", [&] {
        using acc_t = typename cuda::AccType<scalar_t>::type;
        cuda::BeamSearchParams<scalar_t> p{};
        p.log_probs = log_probs.const_data_ptr<scalar_t>();
        p.T = T;
        p.N = N;
        p.C = C;
        p.stride_t = log_probs.stride(0);
        p.stride_n = log_probs.stride(1);
        p.input_lengths = il.const_data_ptr<int64_t>();
        p.cfg = decode::make_config(beam_width, T, C, blank, min_length, max_length);
        p.top_k = static_cast<int32_t>(top_k);
        p.allowed = allowed.defined() ? allowed.const_data_ptr<bool>() : nullptr;
        p.log_skip_threshold = static_cast<acc_t>(log_skip);
        p.tokens = tokens.mutable_data_ptr<int64_t>();
        p.lengths = lengths.mutable_data_ptr<int64_t>();
        p.scores = scores.mutable_data_ptr<acc_t>();
        p.timesteps = timesteps.mutable_data_ptr<int64_t>();
        p.max_shared_bytes = static_cast<size_t>(shared_optin);
        p.token_list_budget = cuda::kTokenListBudget;
        const cuda::BeamSearchLayout layout = cuda::beam_search_layout(p);
        TORCH_CHECK_VALUE(layout.top_shared_bytes <= p.max_shared_bytes,
                          "ctcx.beam_search: beam_width = ", beam_width, " with ",
                          log_probs.scalar_type(), " input needs ", layout.top_shared_bytes,
                          " bytes of shared memory per block; this GPU allows ",
                          p.max_shared_bytes, ": use a smaller beam_width");
        const at::Tensor workspace =
            at::empty({static_cast<int64_t>(layout.total)}, log_probs.options().dtype(at::kByte));
        p.workspace = workspace.mutable_data_ptr();
        const cudaError_t err =
            cuda::beam_search_cuda(p, c10::cuda::getCurrentCUDAStream().stream());
        TORCH_CHECK(err == cudaSuccess, "ctcx.beam_search: CUDA kernel launch failed: ",
                    cudaGetErrorString(err));
      });
  return {tokens, lengths, scores, timesteps};
}

}  // namespace
}  // namespace ctcx

TORCH_LIBRARY_IMPL(ctcx, CUDA, m) {
  m.impl("ctc_greedy_decode", &ctcx::ctc_greedy_decode_cuda);
  m.impl("ctc_beam_search", &ctcx::ctc_beam_search_cuda);
}
