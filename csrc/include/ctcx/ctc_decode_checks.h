// Argument checks of the decoding ops, shared by every backend. They guard
// memory safety for direct torch.ops.ctcx calls; ctcx/decode.py and
// ctcx/beam_search.py validate the user-facing arguments first.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>

namespace ctcx {

// log_probs (T, N, C) floating with unit class stride, input_lengths (N,)
// int64 on its device, 0 <= blank < C. Reads no tensor data. fn names the
// caller in messages.
void check_decode_layout(const char* fn, const at::Tensor& log_probs,
                         const at::Tensor& input_lengths, int64_t blank);

// The beam search's options: beam_width in [1, kMaxBeamWidth], top_k in
// [1, beam_width], lengths >= 0, allowed_tokens (C,) bool on log_probs'
// device, blank_skip_threshold in (0, 1].
void check_beam_search_options(const at::Tensor& log_probs, int64_t beam_width, int64_t top_k,
                               int64_t min_length, int64_t max_length,
                               const std::optional<at::Tensor>& allowed_tokens,
                               std::optional<double> blank_skip_threshold);

// Values of CPU input_lengths (contiguous): each in [0, T].
void check_input_lengths_cpu(const char* fn, const at::Tensor& input_lengths, int64_t T);

}  // namespace ctcx
