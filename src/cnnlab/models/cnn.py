"""The classic CNN of the Keras MNIST example: (conv -> max-pool -> ReLU) per stage, then flatten.

Max-pool runs before ReLU: both are monotone, so relu(maxpool(x)) == maxpool(relu(x)) exactly, and the
ReLU then touches 4x fewer values. The dense part (Dense 128 -> Dropout -> Dense classes) is the head.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class SeedCNN(nn.Module):
    """Feature extractor: one (Conv `kernel_size`, [BatchNorm], MaxPool 2, ReLU) stage per width."""

    def __init__(
        self,
        in_chans: int,
        image_size: Sequence[int],
        widths: Sequence[int] = (32, 64),
        kernel_size: int = 3,
        padding: int = 0,
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_chans
        for width in widths:
            layers.append(nn.Conv2d(channels, width, kernel_size, padding=padding, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(width))
            layers += [nn.MaxPool2d(2), nn.ReLU(inplace=True)]
            channels = width
        layers.append(nn.Flatten())
        self.features = nn.Sequential(*layers)
        self.num_features = self._infer_num_features(in_chans, tuple(image_size))

    def _infer_num_features(self, in_chans: int, image_size: tuple[int, int]) -> int:
        from cnnlab.errors import CnnlabError

        try:
            with torch.no_grad():
                out = self.features(torch.zeros(1, in_chans, *image_size))
        except RuntimeError as err:
            raise CnnlabError(
                f"image size {image_size} is too small for the CNN "
                f"({len(self.features) // 3} stages of conv + 2x2 pooling): {err}. "
                "Use fewer model.backbone.widths, padding=1, or a larger model.image_size."
            ) from err
        return int(out.shape[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)
