"""Captcha reading with ctcx: a CRNN trained with ``ctcx.ctc_loss_with_logits``.

- :mod:`.config`: :class:`TrainConfig`, the one object describing a run.
- :mod:`.labels`: charset presets, label encoding, labels from file names.
- :mod:`.images`: the preprocessing shared by training, evaluation and export; augmentation.
- :mod:`.drawn`: captchas drawn reproducibly with the ``captcha`` library.
- :mod:`.folder`: folders of labelled images; train/validation split.
- :mod:`.stream`: resumable training batches (DataLoader workers, optional pool).
- :mod:`.model`: the CRNN and its size presets.
- :mod:`.metrics`: exact match and character error rate.
- :mod:`.evaluate`: prediction with confidences and per-character probabilities; scores.
- :mod:`.calibration`: the probability of a reading, temperature scaling, calibration error.
- :mod:`.checkpoint`: self-describing, resumable, atomically written checkpoints.
- :mod:`.curves`: the CSV log and the PNG plot of a run.
- :mod:`.train`: the training loop (AMP, DDP under torchrun, resume).
- :mod:`.export`: ONNX export, checked against onnxruntime.
- :mod:`.pretrained`: readers shipped with ctcx; ``ctcx.captcha.pretrained("general")`` loads one.
- :mod:`.cli`: the command line behind ``examples/train_captcha.py``.
"""
from .checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from .config import TrainConfig
from .evaluate import EvalResult, Prediction, evaluate, predict
from .images import preprocess, to_model_input
from .labels import CHARSETS, decode_label, encode_label, label_from_filename, resolve_charset
from .metrics import character_error_rate, edit_distance, exact_match
from .model import CRNN, PRESETS, build_model, count_parameters
from .train import TrainResult, train
from .pretrained import PRETRAINED, pretrained  # noqa: E402  (the name now means the loader, not the module)

__all__ = [
    "load_checkpoint", "read_checkpoint", "save_checkpoint", "TrainConfig", "EvalResult", "Prediction",
    "evaluate", "predict", "preprocess", "to_model_input", "CHARSETS", "decode_label", "encode_label",
    "label_from_filename", "resolve_charset", "character_error_rate", "edit_distance", "exact_match",
    "CRNN", "PRESETS", "build_model", "count_parameters", "TrainResult", "train", "PRETRAINED", "pretrained",
]
