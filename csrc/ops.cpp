// Schemas of every ctcx operator, declared once. Backends register their
// kernels in csrc/cpu/ and csrc/cuda/ with TORCH_LIBRARY_IMPL; the Python
// side (ctcx/ops.py) registers fake (meta) kernels and autograd formulas.
#include <Python.h>
#include <torch/library.h>

TORCH_LIBRARY(ctcx, m) {
  // Fused CTC loss (Graves et al. 2006). Canonical form, prepared by
  // ctcx/loss.py:
  //   log_probs      (T, N, C) floating, any strides with stride(2) == 1
  //   targets        (N, S) padded or (sum(target_lengths),) concatenated,
  //                  int32 or int64, contiguous
  //   input_lengths  (N,) int64, target_lengths (N,) int64
  //   grad_weights   (N,) positive weights w in the loss dtype, or None
  // Returns (loss (N,), grad). loss is float32 for half/bfloat16 inputs and
  // the input dtype otherwise. grad is d(sum_n w_n loss_n) / d log_probs,
  // (T, N, C) in the input dtype and layout; an empty (0,) tensor when
  // grad_weights is None (no gradient work at all). On the CPU, folding the
  // reduction's weights into the kernel lets backward return grad as is for
  // the usual loss.backward(); on CUDA ctcx.ctc_loss calls it without
  // grad_weights and backward calls it again with the incoming gradient as
  // grad_weights, read on the device (see ctcx/ops.py).
  m.def(
      "ctc_loss(Tensor log_probs, Tensor targets, Tensor input_lengths, "
      "Tensor target_lengths, int blank, bool zero_infinity, "
      "Tensor? grad_weights) -> (Tensor, Tensor)");
  // The same loss from raw logits (T, N, C): log_softmax is fused, computed
  // row by row on the fly and never materialized; grad is d(sum_n w_n
  // loss_n) / d logits = w_n (softmax - posterior occupancy).
  m.def(
      "ctc_loss_with_logits(Tensor logits, Tensor targets, Tensor input_lengths, "
      "Tensor target_lengths, int blank, bool zero_infinity, "
      "Tensor? grad_weights) -> (Tensor, Tensor)");
  // The CPU loss of either form with its reduction, as one C++ autograd node
  // (csrc/cpu/ctc_loss_folded_cpu.cpp), for plain eager calls that need a
  // gradient: runs ctc_loss (logits=False) or ctc_loss_with_logits with the
  // reduction's weights w as grad_weights (1 / (N max(target_length, 1)) for
  // reduction 1, 'mean'; else 1) and returns the losses (reduction 0, 'none'),
  // their dot product with w (1) or their sum (2, 'sum'); backward hands the
  // folded gradient over. Errors name ctcx.ctc_loss or ctcx.ctc_loss_with_logits.
  m.def(
      "ctc_loss_folded(Tensor input, Tensor targets, Tensor input_lengths, "
      "Tensor target_lengths, int blank, bool zero_infinity, int reduction, bool logits) -> Tensor");
  // Best-path decoding: the argmax of every frame, repeats merged, blanks
  // dropped. log_probs (T, N, C) floating with stride(2) == 1 (any scores:
  // only the argmax matters); input_lengths (N,) int64. Returns tokens (N, T)
  // int64 padded with -1 and lengths (N,) int64.
  m.def("ctc_greedy_decode(Tensor log_probs, Tensor input_lengths, int blank) -> (Tensor, Tensor)");
  // Prefix beam search (Hannun et al. 2014), prepared by ctcx/beam_search.py:
  //   log_probs (T, N, C) log-probabilities, stride(2) == 1; input_lengths (N,)
  //   int64; 1 <= top_k <= beam_width <= 1024; hypotheses keep
  //   min_length <= length <= max_length and emit only tokens with
  //   allowed_tokens[c] ((C,) bool, None: all); frames whose blank
  //   probability exceeds blank_skip_threshold (None: never) extend nothing.
  // Returns (tokens (N, K, T) int64 padded with -1, lengths (N, K) int64,
  // scores (N, K) log P(prefix | x) float32, float64 for float64 input, -inf
  // for missing hypotheses, timesteps (N, K, T) int64 frame at which each
  // token starts, padded with -1), K = top_k, best first.
  m.def(
      "ctc_beam_search(Tensor log_probs, Tensor input_lengths, int beam_width, int top_k, "
      "int blank, int min_length, int max_length, Tensor? allowed_tokens, "
      "float? blank_skip_threshold) -> (Tensor, Tensor, Tensor, Tensor)");
  // Prefix beam search with shallow fusion (ctcx/lm_fusion.h): the same
  // arguments as ctc_beam_search, plus an n-gram LM, a lexicon and hotwords as
  // tensor lists (their layout: ctcx/lm_beam_search_checks.h, built by
  // ctcx/lm.py and ctcx/lexicon.py), the class between words (-1: none), the
  // LM weight alpha >= 0, the insertion bonus beta per unit, and max_gain, an
  // upper bound of what one token adds to the fused score besides its CTC
  // log-probability (used for exact pruning), and beam_threshold (None: the
  // search is exact; else candidates more than this below the frame's best
  // are dropped, as flashlight's beam_threshold). Returns (tokens, lengths,
  // scores, timesteps) as ctc_beam_search, scores fused, plus ctc_scores
  // (N, K) ln P_ctc and lm_scores (N, K) ln P_lm (without alpha) of each
  // hypothesis.
  m.def(
      "ctc_lm_beam_search(Tensor log_probs, Tensor input_lengths, int beam_width, int top_k, "
      "int blank, int min_length, int max_length, Tensor? allowed_tokens, "
      "float? blank_skip_threshold, Tensor[] lm_tables, int[] lm_info, Tensor[] lexicon, "
      "Tensor[] hotwords, int word_delimiter, float lm_weight, float insertion_bonus, float max_gain, "
      "float? beam_threshold) "
      "-> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
  // CTC forced alignment (Viterbi; Graves et al. 2006's recursion with max
  // for sum), prepared by ctcx/align.py: log_probs (T, N, C) floating with
  // stride(2) == 1, targets (N, S) int64 padded, input_lengths and
  // target_lengths (N,) int64. Returns (labels (N, T) int64: the class of
  // every frame on the most probable alignment, blank past input_lengths and
  // for samples without one; scores (N, T) in log_probs' dtype: log_probs of
  // those classes, 0 where labels is padding; path_scores (N,) the path's
  // log-probability in the op math type, -inf (or NaN) where no alignment has
  // a finite one). Ties: see ctcx/align.py. star_penalty, optional: the
  // wildcard (ctcx/align.py): a blank state then scores the larger of the
  // blank's log-probability and the best class that is neither the blank nor
  // a label beside its gap, plus star_penalty (the blank's on a tie); frames
  // spent on the wildcard are labelled C with its score.
  m.def(
      "ctc_forced_align(Tensor log_probs, Tensor targets, Tensor input_lengths, "
      "Tensor target_lengths, int blank, float? star_penalty=None) -> (Tensor, Tensor, Tensor)");
}

// The extension is loaded as a Python module only to run the registrations
// above; it exposes no Python functions of its own (ops live in torch.ops).
extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
