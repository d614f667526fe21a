// CTC beam search kernels for float16 and bfloat16 inputs, scored in float32
// (one file per dtype family builds in parallel).
#include "ctc_beam_search_kernel.cuh"

namespace ctcx {
namespace cuda {
CTCX_INSTANTIATE_BEAM_SEARCH_CUDA(c10::Half)
CTCX_INSTANTIATE_BEAM_SEARCH_CUDA(c10::BFloat16)
}  // namespace cuda
}  // namespace ctcx
