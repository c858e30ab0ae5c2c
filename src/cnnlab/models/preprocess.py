"""Input adaptation inside the model, so a checkpoint carries its exact preprocessing.

Batches arrive as uint8 (or float in [0, 1]); this module converts, resizes, adapts channels and
normalises on whatever device the model is on, batched.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class InputAdapter(nn.Module):
    def __init__(
        self,
        in_chans: int,
        model_chans: int,
        image_size: Sequence[int] | None,
        mean: Sequence[float],
        std: Sequence[float],
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.in_chans, self.model_chans = in_chans, model_chans
        self.image_size = tuple(image_size) if image_size is not None else None
        self.channels_last = channels_last
        self.register_buffer("mean", _per_channel(mean, model_chans), persistent=False)
        self.register_buffer("std", _per_channel(std, model_chans), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float().div_(255) if x.dtype == torch.uint8 else x.float()
        if self.image_size is not None and tuple(x.shape[-2:]) != self.image_size:
            x = F.interpolate(x, size=self.image_size, mode="bilinear", align_corners=False, antialias=True)
        if self.model_chans != x.shape[1]:
            x = x.expand(-1, self.model_chans, -1, -1) if x.shape[1] == 1 else x[:, : self.model_chans]
        x = (x - self.mean) / self.std
        # channels_last: oneDNN's convolutions and max-pool run several times faster in NHWC on CPU (and
        # tensor cores want it on GPU); the math is the same.
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


def _per_channel(values: Sequence[float], channels: int) -> torch.Tensor:
    values = list(values)
    if len(values) == 1:
        values = values * channels
    return torch.tensor(values[:channels], dtype=torch.float32).view(1, channels, 1, 1)
