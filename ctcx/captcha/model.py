"""The CRNN (Shi et al. 2015): conv stack, bidirectional GRU, linear, log_softmax."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .config import TrainConfig

__all__ = ["CRNN", "build_model"]

# (height, width) pooling after each conv block: height shrinks 16x, width 4x
_POOLS = ((2, 2), (2, 2), (2, 1), (2, 1))


class CRNN(nn.Module):
    """Conv stack -> bidirectional GRU -> linear -> log_softmax over classes.

    Four blocks of 3x3 conv + BatchNorm + ReLU + max-pool shrink an image of
    (input_height, W) to (input_height / 16, W / 4); each of the W / 4 columns
    becomes one CTC frame whose features are the column's channels x rows.

    Args:
        num_classes: outputs per frame, blank (class 0) included.
        input_height: image height in pixels, a multiple of 16.
        conv_channels: output channels of the four conv blocks.
        rnn_hidden: GRU hidden size per direction.

    Raises:
        ValueError: if input_height is not a multiple of 16 or conv_channels
            does not hold four widths.
    """

    def __init__(self, num_classes: int, input_height: int, conv_channels: Sequence[int],
                 rnn_hidden: int) -> None:
        super().__init__()
        if input_height % 16:
            raise ValueError(f"CRNN: input_height must be a multiple of 16, got {input_height}")
        if len(conv_channels) != len(_POOLS):
            raise ValueError(f"CRNN: conv_channels must hold {len(_POOLS)} widths, "
                             f"got {tuple(conv_channels)}")
        layers = []
        in_channels = 1
        for out_channels, pool in zip(conv_channels, _POOLS):
            layers += [nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
                       nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True), nn.MaxPool2d(pool)]
            in_channels = out_channels
        self.conv = nn.Sequential(*layers)
        self.rnn = nn.GRU(in_channels * (input_height // 16), rnn_hidden, bidirectional=True)
        self.classifier = nn.Linear(2 * rnn_hidden, num_classes)

    @staticmethod
    def output_length(input_width: int) -> int:
        """Number of CTC frames T for images ``input_width`` pixels wide."""
        return input_width // 4

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Per-frame class log-probabilities.

        Args:
            images: float32 (N, 1, H, W), ink in [0, 1] (see ``data.to_model_input``).

        Returns:
            float32 log-probabilities (T, N, num_classes), T = W // 4, ready
            for ``ctcx.CTCLoss`` and ``ctcx.greedy_decode``.
        """
        features = self.conv(images)  # (N, C, H / 16, W / 4)
        n, c, h, w = features.shape
        frames = features.reshape(n, c * h, w).permute(2, 0, 1)  # (T, N, C * H / 16)
        hidden, _ = self.rnn(frames)
        return self.classifier(hidden).log_softmax(-1)


def build_model(config: TrainConfig) -> CRNN:
    """The CRNN that ``config`` describes, with fresh weights, in channels-last layout."""
    model = CRNN(config.num_classes, config.input_height, config.conv_channels, config.rnn_hidden)
    return model.to(memory_format=torch.channels_last)
