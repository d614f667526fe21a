// CUDA glue of the fused beam search (ctc_lm_beam_search): checks, device
// guard, stream, outputs and workspace, then the kernel through a plain
// parameter struct (ctc_lm_beam_search_cuda.h). Nothing here reads tensor
// values on the host (the tries' entries are not checked one by one; the
// kernel's lookups stay in bounds whatever they hold).
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

#include "ctc_lm_beam_search_cuda.h"
#include "ctcx/ctc_decode.h"
#include "ctcx/ctc_decode_checks.h"
#include "ctcx/lm_beam_search_checks.h"

namespace ctcx {
namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> ctc_lm_beam_search_cuda(
    const at::Tensor& log_probs, const at::Tensor& input_lengths, int64_t beam_width, int64_t top_k,
    int64_t blank, int64_t min_length, int64_t max_length, const std::optional<at::Tensor>& allowed_tokens,
    std::optional<double> blank_skip_threshold, at::TensorList lm_tables, at::IntArrayRef lm_info,
    at::TensorList lexicon, at::TensorList hotwords, int64_t word_delimiter, double lm_weight,
    double insertion_bonus, double max_gain, std::optional<double> beam_threshold) {
  const char* fn = "ctcx.beam_search";
  check_decode_layout(fn, log_probs, input_lengths, blank);
  check_beam_search_options(log_probs, beam_width, top_k, min_length, max_length, allowed_tokens,
                            blank_skip_threshold);
  TORCH_CHECK_VALUE(!beam_threshold || *beam_threshold > 0, fn, ": beam_threshold = ", *beam_threshold,
                    " must be None or > 0");
  const int64_t T = log_probs.size(0), N = log_probs.size(1), C = log_probs.size(2);
  TORCH_CHECK_VALUE(cuda::fused_candidates(beam_width, C) <= cuda::kMaxFusedCandidates, fn,
                    ": with an LM, lexicon or hotwords the CUDA search scores beam_width x C = ", beam_width, " x ",
                    C, " candidates per frame, more than its limit ", cuda::kMaxFusedCandidates,
                    "; use a smaller beam_width or the CPU");
  const c10::cuda::CUDAGuard guard(log_probs.device());
  const lm::Fusion fusion = make_fusion(log_probs, lm_tables, lm_info, lexicon, hotwords, word_delimiter,
                                        lm_weight, insertion_bonus, max_gain);
  const at::Tensor il = input_lengths.contiguous();
  const at::Tensor allowed = allowed_tokens ? allowed_tokens->contiguous() : at::Tensor();
  const auto long_options = il.options();
  at::Tensor tokens = at::empty({N, top_k, T}, long_options);
  at::Tensor timesteps = at::empty({N, top_k, T}, long_options);
  at::Tensor lengths = at::empty({N, top_k}, long_options);
  const auto score_options = log_probs.options().dtype(at::toOpMathType(log_probs.scalar_type()));
  at::Tensor scores = at::empty({N, top_k}, score_options);
  at::Tensor ctc_scores = at::empty({N, top_k}, score_options);
  at::Tensor lm_scores = at::empty({N, top_k}, score_options);
  const double log_skip = blank_skip_threshold ? std::log(*blank_skip_threshold)
                                               : std::numeric_limits<double>::infinity();
  const double threshold = beam_threshold ? *beam_threshold : std::numeric_limits<double>::infinity();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, log_probs.scalar_type(), "ctcx_lm_beam_search_cuda", [&] {
    using acc_t = typename cuda::AccType<scalar_t>::type;
    cuda::LmBeamSearchParams<scalar_t> p{};
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
    p.beam_threshold = static_cast<acc_t>(threshold);
    p.fusion = fusion;
    p.tokens = tokens.mutable_data_ptr<int64_t>();
    p.lengths = lengths.mutable_data_ptr<int64_t>();
    p.scores = scores.mutable_data_ptr<acc_t>();
    p.timesteps = timesteps.mutable_data_ptr<int64_t>();
    p.ctc_scores = ctc_scores.mutable_data_ptr<acc_t>();
    p.lm_scores = lm_scores.mutable_data_ptr<acc_t>();
    const cuda::LmBeamSearchLayout layout = cuda::lm_beam_search_layout(p);
    const at::Tensor workspace =
        at::empty({static_cast<int64_t>(layout.total)}, log_probs.options().dtype(at::kByte));
    p.workspace = workspace.mutable_data_ptr();
    const cudaError_t err = cuda::lm_beam_search_cuda(p, c10::cuda::getCurrentCUDAStream().stream());
    TORCH_CHECK(err == cudaSuccess, "ctcx.beam_search: CUDA kernel launch failed: ", cudaGetErrorString(err));
  });
  return {tokens, lengths, scores, timesteps, ctc_scores, lm_scores};
}

}  // namespace
}  // namespace ctcx

TORCH_LIBRARY_IMPL(ctcx, CUDA, m) { m.impl("ctc_lm_beam_search", &ctcx::ctc_lm_beam_search_cuda); }
