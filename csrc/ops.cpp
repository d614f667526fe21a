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
  // grad_weights is None (no gradient work at all). Folding the reduction's
  // weights into the kernel lets backward return grad as is for the usual
  // loss.backward() (see ctcx/ops.py).
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
}

// The extension is loaded as a Python module only to run the registrations
// above; it exposes no Python functions of its own (ops live in torch.ops).
extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
