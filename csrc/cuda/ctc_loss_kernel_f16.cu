// Fused CTC loss kernels for float16 and bfloat16 inputs, accumulated in float32
// (one file per dtype family builds in parallel).
#include "ctc_loss_kernel.cuh"

namespace ctcx {
namespace cuda {
CTCX_INSTANTIATE_CTC_LOSS_CUDA(c10::Half)
CTCX_INSTANTIATE_CTC_LOSS_CUDA(c10::BFloat16)
}  // namespace cuda
}  // namespace ctcx
