// Fused CTC loss kernels for float32 inputs (one file per dtype family builds in parallel).
#include "ctc_loss_kernel.cuh"

namespace ctcx {
namespace cuda {
CTCX_INSTANTIATE_CTC_LOSS_CUDA(float)
}  // namespace cuda
}  // namespace ctcx
