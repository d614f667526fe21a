// Argument checks of the ctc_loss op, shared by every backend. They guard
// memory safety for direct torch.ops.ctcx calls; ctcx/loss.py validates the
// user-facing arguments first with friendlier messages.
#pragma once

#include <ATen/core/Tensor.h>

namespace ctcx {

// Shapes, dtypes and devices only: reads no tensor data.
void check_ctc_loss_layout(const at::Tensor& log_probs, const at::Tensor& targets,
                           const at::Tensor& input_lengths, const at::Tensor& target_lengths,
                           int64_t blank);

// grad_weights: (N,) in the loss dtype (float32 for half inputs), on log_probs' device.
void check_grad_weights(const at::Tensor& grad_weights, const at::Tensor& log_probs);

// Values of lengths and labels of CPU tensors (targets contiguous). Returns the
// (N,) int64 offset of each sample's first label in `targets`.
at::Tensor check_ctc_loss_values_cpu(const at::Tensor& log_probs, const at::Tensor& targets,
                                     const at::Tensor& input_lengths,
                                     const at::Tensor& target_lengths, int64_t blank);

}  // namespace ctcx
