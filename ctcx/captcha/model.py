"""The CRNN (Shi et al. 2015): conv stack, bidirectional GRU, linear; presets by size."""
from __future__ import annotations

from typing import Dict, Sequence

import torch
from torch import nn

__all__ = ["PRESETS", "CRNN", "build_model", "count_parameters"]

# (height, width) pooling after each conv block: height shrinks 16x, width 4x
_POOLS = ((2, 2), (2, 2), (2, 1), (2, 1))

PRESETS: Dict[str, Dict] = {
    "tiny": dict(conv_channels=(16, 48, 96, 128), rnn_hidden=96, rnn_layers=1),
    "small": dict(conv_channels=(32, 64, 128, 192), rnn_hidden=128, rnn_layers=2),
    "base": dict(conv_channels=(64, 128, 256, 256), rnn_hidden=256, rnn_layers=2),
}
"""Model sizes. Parameters with 37 classes (0-9A-Z + blank), grayscale, input height 48
(the default): tiny 444,469 (the CPU default), small 1,162,629, base 3,738,085 (the GPU
recipe); at height 32: 370,741, 1,015,173 and 3,344,869. ``count_parameters`` gives
the figure for any configuration."""


class CRNN(nn.Module):
    """Conv stack -> bidirectional GRU -> linear: per-frame class logits.

    Four blocks of 3x3 conv + BatchNorm + ReLU + max-pool shrink an image of
    (input_height, W) to (input_height / 16, W / 4); each of the W / 4 columns
    becomes one CTC frame whose features are the column's channels x rows.

    Args:
        num_classes: outputs per frame, blank (class 0) included.
        input_height: image height in pixels, a multiple of 16.
        in_channels: 1 (grayscale) or 3 (RGB).
        conv_channels: output channels of the four conv blocks.
        rnn_hidden: GRU hidden size per direction.
        rnn_layers: stacked bidirectional GRU layers.
        dropout: between GRU layers and before the classifier (training only).

    Raises:
        ValueError: if input_height is not a multiple of 16 or conv_channels
            does not hold four widths.
    """

    def __init__(self, num_classes: int, input_height: int, conv_channels: Sequence[int],
                 rnn_hidden: int, rnn_layers: int = 1, in_channels: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        if input_height % 16:
            raise ValueError(f"CRNN: input_height must be a multiple of 16, got {input_height}")
        if len(conv_channels) != len(_POOLS):
            raise ValueError(f"CRNN: conv_channels must hold {len(_POOLS)} widths, "
                             f"got {tuple(conv_channels)}")
        layers = []
        channels = in_channels
        for out_channels, pool in zip(conv_channels, _POOLS):
            layers += [nn.Conv2d(channels, out_channels, 3, padding=1, bias=False),
                       nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True), nn.MaxPool2d(pool)]
            channels = out_channels
        self.conv = nn.Sequential(*layers)
        self.rnn = nn.GRU(channels * (input_height // 16), rnn_hidden, num_layers=rnn_layers,
                          bidirectional=True, dropout=dropout if rnn_layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(2 * rnn_hidden, num_classes)

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
        frames = features.reshape(n, c * h, w).permute(2, 0, 1)  # (T, N, C * H / 16)
        hidden, _ = self.rnn(frames)
        return self.classifier(self.dropout(hidden))


def build_model(config) -> CRNN:
    """The CRNN that a :class:`~ctcx.captcha.config.TrainConfig` describes, fresh weights, channels-last."""
    model = CRNN(config.num_classes, config.input_height, config.conv_channels, config.rnn_hidden,
                 config.rnn_layers, config.channels, config.dropout)
    return model.to(memory_format=torch.channels_last)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
