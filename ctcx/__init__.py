"""ctcx: fused CTC loss and CTC decoding for PyTorch, on CPU and CUDA.

- :func:`ctc_loss` / :class:`CTCLoss`: drop-ins for ``torch.nn.functional.ctc_loss``
  / ``torch.nn.CTCLoss`` that compute loss and gradient in one fused pass.
- :func:`ctc_loss_with_logits` / :class:`CTCLossWithLogits`: the same from raw
  logits, with log_softmax fused in.
- :func:`greedy_decode`: best-path decoding.
- :func:`beam_search`: batched prefix beam search with top-k, timesteps and
  output constraints, and shallow fusion with an n-gram LM (:class:`NgramLM`),
  a :class:`Lexicon` and :class:`Hotwords`; :func:`decode_strings` maps its
  tokens to strings.
- :func:`forced_align`: the most probable alignment of known targets (Viterbi);
  :func:`merge_tokens` turns it into :class:`TokenSpan` s.
- :func:`cuda_available`: whether the CUDA kernels were compiled in.
"""
from .align import TokenSpan, forced_align, merge_tokens
from .beam_search import BeamSearchResult, FusedBeamSearchResult, beam_search, decode_strings
from .decode import greedy_decode
from .lexicon import Hotwords, Lexicon
from .lm import NgramLM
from .loss import CTCLoss, CTCLossWithLogits, ctc_loss, ctc_loss_with_logits
from .ops import cuda_available

__version__ = "0.1.0"
__all__ = ["ctc_loss", "CTCLoss", "ctc_loss_with_logits", "CTCLossWithLogits", "greedy_decode", "beam_search",
           "BeamSearchResult", "FusedBeamSearchResult", "decode_strings", "NgramLM", "Lexicon", "Hotwords", "forced_align", "merge_tokens", "TokenSpan", "cuda_available",
           "__version__"]
