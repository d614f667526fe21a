"""Train a CRNN on drawn captchas with ``ctcx.CTCLoss``; evaluate; save and load checkpoints."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from tqdm import tqdm

import ctcx

from .config import TrainConfig
from .data import CaptchaPool, decode_label, to_model_input
from .metrics import character_error_rate, exact_match
from .model import CRNN, build_model

__all__ = [
    "CHECKPOINT_FORMAT", "DECODERS", "EvalResult", "TrainResult", "resolve_device", "predict", "evaluate",
    "save_checkpoint", "load_checkpoint", "train",
]

CHECKPOINT_FORMAT = "ctcx.captcha.crnn/1"
_LOG_EVERY = 20  # steps between loss readings (each one syncs with the device)


@dataclass
class EvalResult:
    """Scores of one evaluation: ``accuracy`` (exact match) and ``cer`` are fractions."""

    accuracy: float
    cer: float
    predictions: List[str]
    references: List[str]

    @property
    def count(self) -> int:
        return len(self.references)


@dataclass
class TrainResult:
    """What :func:`train` returns: the trained model (eval mode) and how it got there."""

    model: CRNN
    config: TrainConfig
    evaluation: EvalResult
    checkpoint: Path
    seconds: float
    history: List[Dict[str, float]] = field(default_factory=list)


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; ``"cpu"`` / ``"cuda"`` as given.

    Raises:
        ValueError: if ``name`` is ``"cuda"`` and CUDA is not available.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but torch.cuda.is_available() is False")
    return torch.device(name)


DECODERS = ("greedy", "beam", "constrained")
"""Ways to read labels off the CTC output: best path (:func:`ctcx.greedy_decode`),
prefix beam search (:func:`ctcx.beam_search`), and beam search constrained to
labels of exactly ``label_length`` characters."""


@torch.no_grad()
def predict(model: CRNN, images: torch.Tensor, charset: str, batch_size: int = 500,
            decoder: str = "greedy", beam_width: int = 10,
            label_length: Optional[int] = None) -> List[str]:
    """Decoded strings for preprocessed uint8 images (N, H, W).

    The model is put in eval mode and run on the device of its parameters.

    Args:
        decoder: one of :data:`DECODERS`. ``"constrained"`` needs ``label_length``.
        beam_width: beams kept per frame by ``"beam"`` and ``"constrained"``.

    Raises:
        ValueError: for an unknown decoder, or ``"constrained"`` without ``label_length``.
    """
    if decoder not in DECODERS:
        raise ValueError(f"decoder must be one of {DECODERS}, got {decoder!r}")
    if decoder == "constrained" and not label_length:
        raise ValueError("the constrained decoder needs label_length")
    model.eval()
    device = next(model.parameters()).device
    out: List[str] = []
    for start in range(0, len(images), batch_size):
        log_probs = model(to_model_input(images[start:start + batch_size]).to(device))
        if decoder == "greedy":
            out += [decode_label(seq, charset) for seq in ctcx.greedy_decode(log_probs, blank=0)]
            continue
        length = label_length if decoder == "constrained" else None
        beams = ctcx.beam_search(log_probs, beam_width=beam_width, blank=0, min_length=length,
                                 max_length=length)
        out += [texts[0] for texts in ctcx.decode_strings(beams.tokens, beams.lengths, charset)]
    return out


def evaluate(model: CRNN, images: torch.Tensor, references: Sequence[str], charset: str,
             batch_size: int = 500, decoder: str = "greedy", beam_width: int = 10,
             label_length: Optional[int] = None) -> EvalResult:
    """Exact-match accuracy and character error rate of ``model`` on labelled images.

    Args:
        images: uint8 (N, H, W), preprocessed as in training.
        references: N label strings; characters outside ``charset`` cannot be
            predicted and so count as errors.
        decoder, beam_width, label_length: as for :func:`predict`.

    Raises:
        ValueError: if the number of images and references differ, or N is 0,
            or the decoder arguments are bad.
    """
    if len(images) != len(references):
        raise ValueError(f"{len(images)} images but {len(references)} labels")
    predictions = predict(model, images, charset, batch_size, decoder, beam_width, label_length)
    return EvalResult(exact_match(predictions, references), character_error_rate(predictions, references),
                      predictions, list(references))


def _atomic_save(obj: Any, path: Path) -> None:
    """torch.save to a temp file beside ``path``, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # opened like any file: the umask applies
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_checkpoint(path: os.PathLike | str, model: CRNN, config: TrainConfig,
                    metrics: Optional[Dict[str, float]] = None,
                    history: Optional[List[Dict[str, float]]] = None) -> None:
    """Write a self-describing checkpoint atomically (replacing ``path`` if it exists).

    Contents: ``format``, ``state_dict`` (CPU tensors), ``charset``, ``config``
    (plain dict), ``metrics`` and ``history``: builtins and tensors only, so
    :func:`load_checkpoint` can use ``torch.load(weights_only=True)``.
    """
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    _atomic_save({
        "format": CHECKPOINT_FORMAT,
        "state_dict": state,
        "charset": config.charset,
        "config": config.to_dict(),
        "metrics": dict(metrics or {}),
        "history": list(history or []),
    }, Path(path))


def load_checkpoint(path: os.PathLike | str, device: str | torch.device = "cpu"
                    ) -> Tuple[CRNN, TrainConfig, Dict[str, Any]]:
    """Rebuild the model a checkpoint describes.

    Returns:
        (model in eval mode on ``device``, its TrainConfig, the raw checkpoint dict).

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if the file is not a ctcx captcha checkpoint, or its
            weights do not fit its config.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling errors come in many types, with pages of advice
        raise ValueError(f"{path} is not a ctcx captcha checkpoint: torch.load(weights_only=True) "
                         f"failed with {type(err).__name__}") from err
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        found = checkpoint.get("format") if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise ValueError(f"{path} is not a ctcx captcha checkpoint (format {found!r}, "
                         f"expected {CHECKPOINT_FORMAT!r})")
    missing = sorted({"state_dict", "charset", "config"} - set(checkpoint))
    if missing:
        raise ValueError(f"{path} lacks the entries {missing}")
    config = TrainConfig.from_dict(checkpoint["config"])
    if checkpoint["charset"] != config.charset:
        raise ValueError(f"{path}: charset {checkpoint['charset']!r} disagrees with its config")
    model = build_model(config)
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as err:
        raise ValueError(f"{path}: weights do not fit the model its config describes: {err}") from err
    return model.to(device).eval(), config, checkpoint


def train(config: TrainConfig, overwrite: bool = False, progress: bool = True,
          log: Callable[[str], None] = tqdm.write) -> TrainResult:
    """Train the CRNN that ``config`` describes, evaluate it, save a checkpoint.

    Images come from a :class:`~ctcx.captcha.data.CaptchaPool`; a held-out
    set of ``config.eval_size`` further drawn images is scored at the end
    (and every ``config.eval_every`` steps). The checkpoint goes to
    ``config.checkpoint``.

    Args:
        overwrite: replace an existing checkpoint file instead of refusing.
        progress: show tqdm progress bars.
        log: where one-line status messages go.

    Returns:
        TrainResult; its ``history`` holds one dict per logged step: ``step``,
        ``seconds`` since the start, and ``loss`` (smoothed) and/or
        ``accuracy`` (held-out exact match).

    Raises:
        FileExistsError: if the checkpoint exists and ``overwrite`` is False
            (checked before any work).
    """
    checkpoint = Path(config.checkpoint)
    if checkpoint.exists() and not overwrite:
        raise FileExistsError(f"{checkpoint} exists; pass overwrite=True (--overwrite) or "
                              f"choose another checkpoint path")
    start = time.perf_counter()
    device = resolve_device(config.device)
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    sampler = torch.Generator().manual_seed(config.seed)

    model = build_model(config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=config.steps,
                                                   pct_start=0.15)
    criterion = ctcx.CTCLoss(blank=0, reduction="mean")
    input_lengths = torch.full((config.batch_size,), CRNN.output_length(config.input_width), dtype=torch.long)
    log(f"training on {device}, {sum(p.numel() for p in model.parameters()):,} parameters, "
        f"{config.steps} steps of {config.batch_size}")

    history: List[Dict[str, float]] = []
    result = EvalResult(float("nan"), float("nan"), [], [])
    with CaptchaPool(config.pool_size, config.charset, config.label_length,
                     (config.image_width, config.image_height), (config.input_height, config.input_width),
                     workers=config.workers, seed=config.seed) as pool:
        eval_images, eval_targets = pool.take(config.eval_size)
        eval_labels = [decode_label(t.tolist(), config.charset) for t in eval_targets]
        with tqdm(total=config.pool_size, desc="drawing captchas", unit="img", disable=not progress,
                  leave=False) as bar:
            pool.fill(bar.update)
        model.train()
        running = None
        with tqdm(total=config.steps, desc="training", unit="step", disable=not progress) as bar:
            for step in range(1, config.steps + 1):
                pool.refresh(config.fresh_per_step)
                images, targets, target_lengths = pool.sample(config.batch_size, sampler)
                log_probs = model(to_model_input(images).to(device, non_blocking=True))
                loss = criterion(log_probs, targets.to(device), input_lengths, target_lengths)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
                optimizer.step()
                schedule.step()
                bar.update()

                last = step == config.steps
                record: Dict[str, float] = {}
                if step % _LOG_EVERY == 0 or last:
                    running = loss.item() if running is None else 0.9 * running + 0.1 * loss.item()
                    record["loss"] = running
                    bar.set_postfix(loss=f"{running:.3f}", drawn=pool.drawn)
                if config.eval_size and (last or (config.eval_every and step % config.eval_every == 0)):
                    result = evaluate(model, eval_images, eval_labels, config.charset)
                    record["accuracy"] = result.accuracy
                    model.train()
                    if not last:
                        log(f"step {step}: held-out accuracy {result.accuracy:.2%}, "
                            f"{time.perf_counter() - start:.0f} s")
                if record:
                    history.append({"step": step, "seconds": time.perf_counter() - start, **record})
    seconds = time.perf_counter() - start
    save_checkpoint(checkpoint, model, config,
                    metrics={"accuracy": result.accuracy, "cer": result.cer, "eval_size": result.count,
                             "seconds": seconds, "images_drawn": pool.drawn},
                    history=history)
    return TrainResult(model.eval(), config, result, checkpoint, seconds, history)
