// Argument checks of the fused beam search (ctc_lm_beam_search), shared by
// every backend: they turn the op's tensor lists into an lm::Fusion after
// checking everything its kernels index with (shapes, dtypes, devices, and the
// tries' and tables' index ranges), so a direct torch.ops.ctcx call cannot
// read out of bounds. ctcx/beam_search.py, ctcx/lm.py and ctcx/lexicon.py
// build these lists and validate the user-facing arguments first.
#pragma once

#include <ATen/core/Tensor.h>

#include "ctcx/lm_fusion.h"

namespace ctcx {

// lm_tables: [] or [keys (S,) int64, values (S, 2) float32, token_units (C,)
//   int32 (a char LM) or (0,), vocab first (V + 1,), token (E,), node (E,),
//   word (V,) int32 (a word LM; empty for a char LM)];
// lm_info: [order, bos, eos, unk, word_lm, mask] (empty without an LM);
// lexicon: [] or [first (V + 1,), token (E,), node (E,), end (V,)] int32;
// hotwords: [] or [first, token, node int32, partial (V,), full (V,) float32];
// word_delimiter: a class id or -1. lm_weight >= 0, max_gain >= 0 finite.
lm::Fusion make_fusion(const at::Tensor& log_probs, at::TensorList lm_tables, at::IntArrayRef lm_info,
                       at::TensorList lexicon, at::TensorList hotwords, int64_t word_delimiter,
                       double lm_weight, double insertion_bonus, double max_gain);

}  // namespace ctcx
