"""Captcha reading with ctcx: a CRNN trained with ``ctcx.CTCLoss`` on drawn captchas.

- :mod:`.config`: :class:`TrainConfig`, the one object describing a run.
- :mod:`.data`: drawing, the refreshing image pool, folders of labelled images,
  and the preprocessing shared by training and evaluation.
- :mod:`.model`: the CRNN.
- :mod:`.metrics`: exact match and character error rate.
- :mod:`.train`: the training loop, evaluation, checkpoints.
- :mod:`.cli`: the command line behind ``examples/train_captcha.py``.
"""
from .config import CHARSET_36, TrainConfig
from .data import CaptchaPool, label_from_filename, load_folder, preprocess, to_model_input
from .metrics import character_error_rate, edit_distance, exact_match
from .model import CRNN, build_model
from .train import EvalResult, TrainResult, evaluate, load_checkpoint, predict, save_checkpoint, train

__all__ = [
    "CHARSET_36", "TrainConfig", "CaptchaPool", "label_from_filename", "load_folder", "preprocess",
    "to_model_input", "character_error_rate", "edit_distance", "exact_match", "CRNN", "build_model",
    "EvalResult", "TrainResult", "evaluate", "load_checkpoint", "predict", "save_checkpoint", "train",
]
