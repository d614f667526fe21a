// Argument checks of the forced alignment op, shared by every backend. They
// guard memory safety for direct torch.ops.ctcx calls; ctcx/align.py
// validates the user-facing arguments first.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>

namespace ctcx {

// log_probs (T, N, C) floating with unit class stride (as the decoders'),
// targets (N, S) int64 padded, input_lengths and target_lengths (N,) int64,
// all on log_probs' device; 0 <= blank < C; star_penalty, when given, not NaN
// and below +inf. Reads no tensor data.
void check_forced_align_layout(const char* fn, const at::Tensor& log_probs,
                               const at::Tensor& targets, const at::Tensor& input_lengths,
                               const at::Tensor& target_lengths, int64_t blank,
                               std::optional<double> star_penalty);

// Values of contiguous CPU tensors: input lengths in [0, T], target lengths in
// [0, S], labels of each target in [0, C) and not blank.
void check_forced_align_values_cpu(const char* fn, const at::Tensor& log_probs,
                                   const at::Tensor& targets, const at::Tensor& input_lengths,
                                   const at::Tensor& target_lengths, int64_t blank);

}  // namespace ctcx
