// The fused beam search kernel for float16 and bfloat16 (scored in float32) inputs (one file per dtype family builds in parallel).
#include "ctc_lm_beam_search_kernel.cuh"

namespace ctcx {
namespace cuda {
CTCX_INSTANTIATE_LM_BEAM_SEARCH_CUDA(c10::Half)
CTCX_INSTANTIATE_LM_BEAM_SEARCH_CUDA(c10::BFloat16)
}  // namespace cuda
}  // namespace ctcx
