"""ONNX export of a trained CRNN, self-describing and checked against onnxruntime.

The exported graph takes what :func:`~ctcx.captcha.images.preprocess`
produces, so the only preprocessing outside it is (when ``crop_margins``
is true: cutting plain margins, :func:`~ctcx.captcha.images.crop_margins`)
convert + resize:

- input ``pixels``: uint8 (N, C, H, W), 255 = white; N and W are dynamic
  (W a multiple of 4; pad a batch on the right with 255);
- output ``logits``: float32 (N, T, num_classes), T = W / 4; class 0 is the
  CTC blank and class i is ``charset[i - 1]``.

The model's metadata (``metadata_props``) holds ``ctcx.charset``,
``ctcx.blank``, ``ctcx.preprocess`` (JSON: colour mode, height, width rule,
resampling), ``ctcx.config`` (the training config as JSON) and
``ctcx.temperature`` (the T of the confidences, see
:mod:`~ctcx.captcha.calibration`: probabilities are ``softmax(logits / T)``;
1 for an uncalibrated checkpoint, which also lacks ``ctcx.calibration``, the
checkpoint's calibration entry as JSON), so a reader needs nothing but the
.onnx file (see :class:`OnnxReader`).
"""
from __future__ import annotations

import copy
import json
import os
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from .calibration import check_temperature
from .checkpoint import atomic_write
from .config import TrainConfig
from .images import COLOR_MODES, WIDTH_MULTIPLE, pad_batch, preprocess
from .model import CRNN

__all__ = ["export_onnx", "OnnxReader", "check_onnx", "greedy_strings", "label_log_prob"]


class _PixelsToLogits(nn.Module):
    """uint8 pixels (N, C, H, W) -> logits (N, T, C): the preprocessing's last step, then the CRNN."""

    def __init__(self, model: CRNN) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model(1.0 - pixels.float() / 255.0).permute(1, 0, 2)


def _metadata(config: TrainConfig, calibration: Optional[Dict[str, Any]]) -> Dict[str, str]:
    preprocess_spec = {
        "color_mode": COLOR_MODES[config.channels],
        "height": config.input_height,
        "width": config.input_width or (f"keep aspect ratio times width_scale, rounded to a multiple of "
                                        f"{WIDTH_MULTIPLE}"),
        "width_multiple": WIDTH_MULTIPLE,
        "fixed_width": config.input_width,
        "width_scale": config.width_scale,
        "crop_margins": config.crop_margins,
        "resample": "bilinear (PIL Image.Resampling.BILINEAR)",
        "input": "uint8 pixels (N, C, H, W), 255 = white, batches padded on the right with 255",
        "output": "logits (N, T, num_classes), T = W / 4, class 0 = CTC blank, class i = charset[i - 1]",
    }
    meta = {"ctcx.charset": config.charset, "ctcx.blank": "0", "ctcx.preprocess": json.dumps(preprocess_spec),
            "ctcx.config": json.dumps(config.to_dict()), "ctcx.temperature": "1.0"}
    if calibration is not None:
        meta["ctcx.temperature"] = repr(check_temperature(calibration["temperature"]))
        meta["ctcx.calibration"] = json.dumps(calibration)
    return meta


def export_onnx(model: CRNN, config: TrainConfig, path: os.PathLike | str, opset: int = 17,
                calibration: Optional[Dict[str, Any]] = None) -> Path:
    """Write ``model`` as ONNX to ``path`` (atomically) with dynamic batch and width and metadata.

    Uses torch's TorchScript-based exporter (``dynamo=False``): in torch
    2.13 the torch.export-based one cannot decompose ``nn.GRU``.

    Args:
        calibration: the checkpoint's ``calibration`` entry (None: not
            calibrated, ``ctcx.temperature`` is 1).

    Raises:
        ValueError: if the calibration's temperature is not a finite number > 0.

    Returns:
        the path written.
    """
    import onnx

    wrapper = _PixelsToLogits(copy.deepcopy(model).float().cpu()).eval()
    width = max(8, config.input_width or 2 * config.input_height)
    example = torch.full((2, config.channels, config.input_height, width), 255, dtype=torch.uint8)

    meta = _metadata(config, calibration)

    def write(tmp: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice and GRU batch advice
            torch.onnx.export(wrapper, (example,), str(tmp), input_names=["pixels"], output_names=["logits"],
                              dynamic_axes={"pixels": {0: "batch", 3: "width"},
                                            "logits": {0: "batch", 1: "frames"}},
                              opset_version=opset, dynamo=False)
        graph = onnx.load(str(tmp))
        for key, value in meta.items():
            graph.metadata_props.add(key=key, value=value)
        onnx.checker.check_model(graph)
        onnx.save(graph, str(tmp))
    return atomic_write(path, write)


def greedy_strings(logits: np.ndarray, charset: str, blank: int = 0) -> List[str]:
    """Best-path decoding of (N, T, C) scores: argmax per frame, merge repeats, drop blanks."""
    best = np.asarray(logits).argmax(-1)
    out = []
    for row in best:
        keep = np.concatenate([[True], row[1:] != row[:-1]]) & (row != blank)
        out.append("".join(charset[c - 1 if c > blank else c] for c in row[keep]))
    return out


def label_log_prob(log_probs: np.ndarray, tokens: Sequence[int], blank: int = 0) -> float:
    """log P(tokens | frames) of one sample, summed over all CTC alignments, in numpy (float64).

    The same quantity as ``-ctcx.ctc_loss`` (Graves et al. 2006's forward
    recursion over the label with blanks between and around its tokens), for
    a reader without torch.

    Args:
        log_probs: (T, C) log-probabilities of one sample.
        tokens: the label's class indices (none equal to ``blank``; may be empty).

    Returns:
        the log-probability in nats, ``-inf`` if no alignment fits in T frames.
    """
    lp = np.asarray(log_probs, dtype=np.float64)
    if not len(lp):
        return 0.0 if not len(tokens) else -np.inf
    extended = [blank]
    for c in tokens:
        extended += [int(c), blank]
    alpha = np.full(len(extended), -np.inf)
    alpha[:2] = lp[0, extended[:2]]
    # a token may follow the token two places back (skipping the blank between) unless they are equal
    skip = np.array([s >= 2 and extended[s] != blank and extended[s] != extended[s - 2]
                     for s in range(len(extended))])
    for t in range(1, len(lp)):
        padded = np.concatenate([[-np.inf, -np.inf], alpha])  # stay, step one place, or jump two
        jump = np.where(skip, padded[:-2], -np.inf)
        alpha = np.logaddexp(np.logaddexp(padded[2:], padded[1:-1]), jump) + lp[t, extended]
    return float(np.logaddexp(alpha[-1], alpha[-2]) if len(extended) > 1 else alpha[-1])


class OnnxReader:
    """Read captchas with an exported model and onnxruntime alone (no torch needed at run time).

    ``temperature`` comes from the metadata (1.0 in files exported before it
    was written there); ``calibrated`` says whether it was fitted.

    Args:
        path: a .onnx file written by :func:`export_onnx`.

    Raises:
        ValueError: if the file lacks ctcx metadata, or its temperature is not a number > 0.
    """

    def __init__(self, path: os.PathLike | str) -> None:
        import onnxruntime

        self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        meta = self.session.get_modelmeta().custom_metadata_map
        if "ctcx.charset" not in meta or "ctcx.preprocess" not in meta:
            raise ValueError(f"{path} has no ctcx metadata (ctcx.charset, ctcx.preprocess): "
                             f"not exported by ctcx.captcha.export")
        self.charset = meta["ctcx.charset"]
        self.blank = int(meta.get("ctcx.blank", "0"))
        self.preprocess = json.loads(meta["ctcx.preprocess"])
        try:
            self.temperature = check_temperature(float(meta.get("ctcx.temperature", "1.0")))
        except ValueError as err:
            raise ValueError(f"{path}: ctcx.temperature {meta['ctcx.temperature']!r} is not a number > 0") from err
        self.calibrated = "ctcx.calibration" in meta

    def logits(self, pixels: np.ndarray) -> np.ndarray:
        """Run the graph on uint8 pixels (N, C, H, W); float32 logits (N, T, C)."""
        return self.session.run(["logits"], {"pixels": np.ascontiguousarray(pixels, dtype=np.uint8)})[0]

    def log_probs(self, pixels: np.ndarray) -> np.ndarray:
        """float64 log-probabilities (N, T, C) of uint8 pixels (N, C, H, W): ``log_softmax(logits / T)``."""
        return self._tempered(self.logits(pixels))

    def _tempered(self, logits: np.ndarray) -> np.ndarray:
        scaled = logits.astype(np.float64) / self.temperature
        top = scaled.max(-1, keepdims=True)
        return scaled - top - np.log(np.exp(scaled - top).sum(-1, keepdims=True))

    def _pixels(self, image) -> np.ndarray:
        spec = self.preprocess
        channels = {v: k for k, v in COLOR_MODES.items()}[spec["color_mode"]]
        return preprocess(image, spec["height"], channels, spec["fixed_width"], spec.get("width_scale", 1.0),
                          spec.get("crop_margins", False))[None]

    def read(self, images: Sequence) -> List[str]:
        """Labels of PIL images, preprocessed as the metadata says, one image at a time."""
        return [greedy_strings(self.logits(self._pixels(image)), self.charset, self.blank)[0] for image in images]

    def read_with_confidence(self, images: Sequence) -> List[Tuple[str, float]]:
        """(label, confidence) of PIL images: the greedy label and its probability in [0, 1] under
        the metadata's temperature, summed over its alignments (as
        :attr:`~ctcx.captcha.evaluate.Prediction.confidence`)."""
        classes = {c: i if i < self.blank else i + 1 for i, c in enumerate(self.charset)}  # greedy_strings' map
        out = []
        for image in images:
            logits = self.logits(self._pixels(image))
            text = greedy_strings(logits, self.charset, self.blank)[0]
            log_prob = label_log_prob(self._tempered(logits[0]), [classes[c] for c in text], self.blank)
            out.append((text, float(np.exp(log_prob))))
        return out


def check_onnx(path: os.PathLike | str, model: CRNN, charset: str, images: Sequence[np.ndarray],
               tolerance: float = 1e-4) -> Tuple[float, int]:
    """Compare onnxruntime with torch on preprocessed uint8 images (C, H, W), batched by width.

    Returns:
        (largest absolute logit difference, number of images).

    Raises:
        AssertionError: if a logit differs by more than ``tolerance`` or a
            greedy reading differs (the message says which).
    """
    reader = OnnxReader(path)
    wrapper = _PixelsToLogits(copy.deepcopy(model).float().cpu()).eval()
    by_width: Dict[int, List[np.ndarray]] = {}
    for image in images:
        by_width.setdefault(image.shape[-1], []).append(image)
    worst = 0.0
    for group in by_width.values():
        pixels, _ = pad_batch(group)
        with torch.no_grad():
            expected = wrapper(pixels).numpy()
        got = reader.logits(pixels.numpy())
        worst = max(worst, float(np.abs(got - expected).max()))
        if worst > tolerance:
            raise AssertionError(f"onnxruntime logits differ from torch by {worst:.3g} > {tolerance}")
        theirs, ours = greedy_strings(got, charset), greedy_strings(expected, charset)
        if theirs != ours:
            bad = next(i for i, (a, b) in enumerate(zip(theirs, ours)) if a != b)
            raise AssertionError(f"onnxruntime reads {theirs[bad]!r} where torch reads {ours[bad]!r}")
    return worst, len(images)
