// CTC beam search kernels for float64 inputs, scored in float64 (one file per dtype family builds in parallel).
#include "ctc_beam_search_kernel.cuh"

namespace ctcx {
namespace cuda {
CTCX_INSTANTIATE_BEAM_SEARCH_CUDA(double)
}  // namespace cuda
}  // namespace ctcx
