"""The CRNN (Shi et al. 2015): conv stack, sequence head, linear; presets by size.

Two sequence heads: ``"conv"`` (the default since 2026-12-07), a stack of
1-D convolutions over the frames, and ``"gru"``, the classic bidirectional
GRU. A captcha's characters are read from a few neighbouring columns, which a
conv head sees as well as a GRU does, and on a CPU its frames run in parallel
instead of 40 small sequential steps each way. Two block orders:
``pool_first`` (the default) orders every block conv -> max-pool ->
BatchNorm -> ReLU, so normalisation and activation touch a quarter (blocks 1
and 2) or half (blocks 3 and 4) of the elements; the classic order
(conv -> BatchNorm -> ReLU -> max-pool in every block) is what checkpoints
written before 2026-12-07 hold.
"""
from __future__ import annotations

from typing import Dict, Sequence

import torch
from torch import nn

__all__ = ["PRESETS", "HEADS", "CRNN", "build_model", "count_parameters"]

HEADS = ("conv", "gru")
"""Sequence heads: 1-D convolutions over the frames, or a bidirectional GRU."""

# (height, width) pooling after each conv block: height shrinks 16x, width 4x
_POOLS = ((2, 2), (2, 2), (2, 1), (2, 1))

PRESETS: Dict[str, Dict] = {
    "tiny": dict(conv_channels=(16, 32, 64, 96), rnn_hidden=128, rnn_layers=2, head="conv", pool_first=True),
    "small": dict(conv_channels=(32, 64, 128, 192), rnn_hidden=128, rnn_layers=2, head="gru", pool_first=False),
    "base": dict(conv_channels=(64, 128, 256, 256), rnn_hidden=256, rnn_layers=2, head="gru", pool_first=False),
}
"""Model sizes (every field can be overridden: ``--conv-channels``, ``--head``, ...).
``tiny`` (the CPU default) has the conv head and pool-first blocks since 2026-12-07
(before: (16, 48, 96, 128) channels, a GRU of 96, the classic blocks); ``small`` and
``base`` keep the GRU head and the classic blocks that their recipes were measured with.
Parameters with 37 classes (0-9A-Z + blank), grayscale, input height 48 (the default):
tiny 243,925 (the CPU default), small 1,162,629, base 3,738,085 (the GPU recipe);
at height 32: 207,061, 1,015,173 and 3,344,869. ``count_parameters`` gives the figure for any configuration."""


class CRNN(nn.Module):
    """Conv stack -> sequence head -> linear: per-frame class logits.

    Four conv blocks shrink an image of (input_height, W) to
    (input_height / 16, W / 4); each of the W / 4 columns becomes one CTC
    frame whose features are the column's channels x rows. The head then mixes
    neighbouring frames: ``"conv"`` is ``rnn_layers`` blocks of a 1-D
    convolution of width 3 (``rnn_hidden`` channels) + BatchNorm + ReLU, each
    widening a frame's view by 8 pixels; ``"gru"`` is a bidirectional GRU of
    ``rnn_hidden`` units per direction and ``rnn_layers`` layers.

    Args:
        num_classes: outputs per frame, blank (class 0) included.
        input_height: image height in pixels, a multiple of 16.
        in_channels: 1 (grayscale) or 3 (RGB).
        conv_channels: output channels of the four conv blocks.
        rnn_hidden: the head's width (conv channels, or GRU units per direction).
        rnn_layers: the head's depth (conv blocks or stacked GRU layers).
        dropout: between GRU layers and before the classifier (training only).
        head: ``"conv"`` or ``"gru"`` (see above).
        pool_first: True: every block is conv + max-pool + BatchNorm + ReLU
            (pooling before normalising); False: conv + BatchNorm + ReLU +
            max-pool (checkpoints before 2026-12-07).

    Raises:
        ValueError: if input_height is not a multiple of 16, conv_channels
            does not hold four widths, or head is unknown.
    """

    def __init__(self, num_classes: int, input_height: int, conv_channels: Sequence[int],
                 rnn_hidden: int, rnn_layers: int = 1, in_channels: int = 1, dropout: float = 0.0,
                 head: str = "gru", pool_first: bool = False) -> None:
        super().__init__()
        if input_height % 16:
            raise ValueError(f"CRNN: input_height must be a multiple of 16, got {input_height}")
        if len(conv_channels) != len(_POOLS):
            raise ValueError(f"CRNN: conv_channels must hold {len(_POOLS)} widths, "
                             f"got {tuple(conv_channels)}")
        if head not in HEADS:
            raise ValueError(f"CRNN: head must be one of {HEADS}, got {head!r}")
        layers = []
        channels = in_channels
        for out_channels, pool in zip(conv_channels, _POOLS):
            conv = nn.Conv2d(channels, out_channels, 3, padding=1, bias=False)
            norm = [nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]
            layers += [conv, nn.MaxPool2d(pool), *norm] if pool_first else [conv, *norm, nn.MaxPool2d(pool)]
            channels = out_channels
        self.conv = nn.Sequential(*layers)
        self.head_kind = head
        features = channels * (input_height // 16)
        if head == "gru":
            self.rnn = nn.GRU(features, rnn_hidden, num_layers=rnn_layers,
                              bidirectional=True, dropout=dropout if rnn_layers > 1 else 0.0)
            features = 2 * rnn_hidden
        else:
            blocks = []
            for _ in range(rnn_layers):
                blocks += [nn.Conv1d(features, rnn_hidden, 3, padding=1, bias=False),
                           nn.BatchNorm1d(rnn_hidden), nn.ReLU(inplace=True)]
                features = rnn_hidden
            self.head = nn.Sequential(*blocks)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(features, num_classes)

    @staticmethod
    def output_lengths(widths: torch.Tensor) -> torch.Tensor:
        """CTC frames T of images ``widths`` pixels wide (one frame per 4 columns)."""
        return widths // 4

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Per-frame class logits.

        Args:
            images: float (N, in_channels, H, W), ink in [0, 1]
                (see :func:`~ctcx.captcha.images.to_model_input`).

        Returns:
            logits (T, N, num_classes), T = W // 4; feed them to
            ``ctcx.ctc_loss_with_logits``, or ``log_softmax(-1)`` them for decoding.
        """
        features = self.conv(images)  # (N, C, H / 16, W / 4)
        n, c, h, w = features.shape
        columns = features.reshape(n, c * h, w)  # (N, C * H / 16, T)
        if self.head_kind == "gru":
            hidden, _ = self.rnn(columns.permute(2, 0, 1))  # (T, N, 2 * rnn_hidden)
        else:
            hidden = self.head(columns).permute(2, 0, 1)  # (T, N, rnn_hidden)
        return self.classifier(self.dropout(hidden))


def build_model(config) -> CRNN:
    """The CRNN that a :class:`~ctcx.captcha.config.TrainConfig` describes, fresh weights, channels-last."""
    model = CRNN(config.num_classes, config.input_height, config.conv_channels, config.rnn_hidden,
                 config.rnn_layers, config.channels, config.dropout, config.head, config.pool_first)
    return model.to(memory_format=torch.channels_last)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
