// Argument checks of the forced alignment op, shared by every backend. They
// guard memory safety for direct torch.ops.ctcx calls; ctcx/align.py
// validates the user-facing arguments first.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>

namespace ctcx {

// log_probs (T, N, C) floating with unit class stride (as the decoders'),
// targets (N, S) int64 padded, input_lengths and target_lengths (N,) int64,
// all on log_probs' device; 0 <= blank < C; the wildcard's candidates, both or
// neither: star_values (T, N, K) of the op math type (float64 for float64
// log_probs, else float32) and star_classes (T, N, K) int64, 1 <= K <= 4, on
// that device. Reads no tensor data.
void check_forced_align_layout(const char* fn, const at::Tensor& log_probs,
                               const at::Tensor& targets, const at::Tensor& input_lengths,
                               const at::Tensor& target_lengths, int64_t blank,
                               const std::optional<at::Tensor>& star_values,
                               const std::optional<at::Tensor>& star_classes);

// Values of contiguous CPU tensors: input lengths in [0, T], target lengths in
// [0, S], labels of each target in [0, C) and not blank.
void check_forced_align_values_cpu(const char* fn, const at::Tensor& log_probs,
                                   const at::Tensor& targets, const at::Tensor& input_lengths,
                                   const at::Tensor& target_lengths, int64_t blank);

}  // namespace ctcx
