"""Registration of ctcx's C++ operators with PyTorch: fake kernels and autograd.

The schemas live in ``csrc/ops.cpp``; the kernels in ``csrc/cpu`` and
``csrc/cuda``. Importing this module loads the extension ``ctcx._C``.
"""
import torch
from torch.utils._python_dispatch import _get_current_dispatch_mode

from . import _C  # noqa: F401  (loads the library that registers torch.ops.ctcx)

__all__ = ["cuda_available"]


def cuda_available() -> bool:
    """Return True when ctcx was built with its CUDA kernels."""
    return torch._C._dispatch_has_kernel_for_dispatch_key("ctcx::ctc_loss", "CUDA")


FUSED_LOSS_OPS = ("ctcx::ctc_loss", "ctcx::ctc_loss_with_logits")


def _ctc_loss_fake(log_probs, targets, input_lengths, target_lengths, blank, zero_infinity,
                   grad_weights):
    torch._check(log_probs.dim() == 3, lambda: "log_probs must be (T, N, C)")
    loss_dtype = torch.float32 if log_probs.dtype in (torch.float16, torch.bfloat16) else log_probs.dtype
    loss = log_probs.new_empty((log_probs.shape[1],), dtype=loss_dtype)
    grad = torch.empty_like(log_probs) if grad_weights is not None else log_probs.new_empty((0,))
    return loss, grad


def _plain_eager(*tensors) -> bool:
    """True when the tensors hold real CPU data and nothing traces or transforms them.

    Only then may backward branch on tensor values: under torch.compile,
    make_fx, fake tensors or functorch a value-dependent branch would be baked
    into the trace or fail.
    """
    if torch.compiler.is_compiling() or _get_current_dispatch_mode() is not None:
        return False
    return all(type(t) is torch.Tensor and t.device.type == "cpu"
               and not torch._C._functorch.is_functorch_wrapped_tensor(t) for t in tensors)


def _ctc_loss_setup_context(ctx, inputs, output):
    _, grad = output
    x, targets, input_lengths, target_lengths, blank, zero_infinity, grad_weights = inputs
    ctx.mark_non_differentiable(grad)
    # Otherwise autograd fills a (T, N, C) zero tensor for grad's unused gradient.
    ctx.set_materialize_grads(False)
    ctx.blank, ctx.zero_infinity = blank, zero_infinity
    if grad_weights is None:
        # Loss only (ctcx.ctc_loss on CUDA): backward runs the op again with the
        # incoming gradient as the weights.
        ctx.save_for_backward(None, None, x, targets, input_lengths, target_lengths)
    else:
        ctx.save_for_backward(grad, grad_weights, None, None, None, None)


DOUBLE_BACKWARD_MESSAGE = (
    "{op}: the CTC loss can be differentiated once, not twice: its gradient is "
    "computed by the fused kernel, which has no derivative itself, so double "
    "backward (create_graph=True, e.g. a Hessian-vector product or a gradient "
    "penalty) is not supported (torch.nn.functional.ctc_loss does not support it "
    "either). Call backward / torch.autograd.grad without create_graph=True.")


def _ctc_loss_backward(ctx, grad_loss, _grad_of_grad):
    grad, weights, x, targets, input_lengths, target_lengths = ctx.saved_tensors
    if grad_loss is None:
        return None, None, None, None, None, None, None
    # The engine runs backward with grad mode on exactly when create_graph=True.
    # The gradient would then enter the graph as a constant and a second
    # derivative through it would be silently wrong: refuse instead.
    if torch.is_grad_enabled() and not torch.compiler.is_compiling():
        raise RuntimeError(DOUBLE_BACKWARD_MESSAGE.format(op=ctx.op_name))
    if weights is None:
        # The forward computed the loss only: one more fused call computes
        # d(sum_n grad_loss_n loss_n) / d input directly, the incoming gradient
        # read on the device as the kernel's weights. One (T, N, C) tensor is
        # written once; no value is read on the host, so this holds under
        # torch.compile and CUDA-graph capture and never synchronizes.
        weights = grad_loss.to(ctx.loss_dtype).contiguous()
        _, grad = ctx.op(x, targets, input_lengths, target_lengths, ctx.blank, ctx.zero_infinity, weights)
        return grad, None, None, None, None, None, None
    # grad already holds sum_n w_n d loss_n / d input. For loss.backward()
    # through ctcx.ctc_loss's reductions grad_loss equals w exactly, and grad is
    # returned without touching it (a free check on CPU tensors); otherwise one
    # pass rescales it.
    if _plain_eager(grad, grad_loss, weights) and torch.equal(grad_loss, weights):
        return grad, None, None, None, None, None, None
    scale = (grad_loss / weights).to(grad.dtype)
    return scale.view(1, -1, 1) * grad, None, None, None, None, None, None


def _setup_context_of(public_name, op):
    def setup_context(ctx, inputs, output):
        ctx.op_name, ctx.op, ctx.loss_dtype = public_name, op, output[0].dtype
        _ctc_loss_setup_context(ctx, inputs, output)
    return setup_context


for _name, _public, _op in zip(FUSED_LOSS_OPS, ("ctcx.ctc_loss", "ctcx.ctc_loss_with_logits"),
                               (torch.ops.ctcx.ctc_loss.default, torch.ops.ctcx.ctc_loss_with_logits.default)):
    torch.library.register_fake(_name)(_ctc_loss_fake)
    torch.library.register_autograd(_name, _ctc_loss_backward, setup_context=_setup_context_of(_public, _op))


@torch.library.register_fake("ctcx::ctc_greedy_decode")
def _ctc_greedy_decode_fake(log_probs, input_lengths, blank):
    torch._check(log_probs.dim() == 3, lambda: "log_probs must be (T, N, C)")
    T, N, _ = log_probs.shape
    return log_probs.new_empty((N, T), dtype=torch.long), log_probs.new_empty((N,), dtype=torch.long)


@torch.library.register_fake("ctcx::ctc_beam_search")
def _ctc_beam_search_fake(log_probs, input_lengths, beam_width, top_k, blank, min_length, max_length,
                          allowed_tokens, blank_skip_threshold):
    torch._check(log_probs.dim() == 3, lambda: "log_probs must be (T, N, C)")
    torch._check(1 <= top_k <= beam_width, lambda: "expected 1 <= top_k <= beam_width")
    T, N, _ = log_probs.shape
    score_dtype = torch.float64 if log_probs.dtype == torch.float64 else torch.float32
    tokens = log_probs.new_empty((N, top_k, T), dtype=torch.long)
    lengths = log_probs.new_empty((N, top_k), dtype=torch.long)
    scores = log_probs.new_empty((N, top_k), dtype=score_dtype)
    return tokens, lengths, scores, torch.empty_like(tokens)


@torch.library.register_fake("ctcx::ctc_lm_beam_search")
def _ctc_lm_beam_search_fake(log_probs, input_lengths, beam_width, top_k, blank, min_length, max_length,
                             allowed_tokens, blank_skip_threshold, lm_tables, lm_info, lexicon, hotwords,
                             word_delimiter, lm_weight, insertion_bonus, max_gain, beam_threshold):
    tokens, lengths, scores, timesteps = _ctc_beam_search_fake(
        log_probs, input_lengths, beam_width, top_k, blank, min_length, max_length, allowed_tokens,
        blank_skip_threshold)
    return tokens, lengths, scores, timesteps, torch.empty_like(scores), torch.empty_like(scores)


@torch.library.register_fake("ctcx::ctc_forced_align")
def _ctc_forced_align_fake(log_probs, targets, input_lengths, target_lengths, blank, star_penalty=None):
    torch._check(log_probs.dim() == 3, lambda: "log_probs must be (T, N, C)")
    T, N, _ = log_probs.shape
    score_dtype = torch.float64 if log_probs.dtype == torch.float64 else torch.float32
    return (log_probs.new_empty((N, T), dtype=torch.long), log_probs.new_empty((N, T)),
            log_probs.new_empty((N,), dtype=score_dtype))
