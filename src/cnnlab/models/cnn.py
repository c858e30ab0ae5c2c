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
        width_mult: float = 1.0,
        pretrained: bool = False,
        weights: str | None = None,
    ) -> None:
        super().__init__()
        self.in_chans = in_chans
        self.mean = self.std = None  # normalise with the data's own statistics
        layers: list[nn.Module] = []
        channels = in_chans
        for width in (max(1, round(w * width_mult)) for w in widths):
            layers.append(nn.Conv2d(channels, width, kernel_size, padding=padding, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(width))
            layers += [nn.MaxPool2d(2), nn.ReLU(inplace=True)]
            channels = width
        layers.append(nn.Flatten())
        self.features = nn.Sequential(*layers)
        self.num_features = self._infer_num_features(in_chans, tuple(image_size))
        self.weights_source = None
        if pretrained:
            self._load_pretrained(weights)

    def _load_pretrained(self, weights: str | None) -> None:
        from cnnlab.errors import CnnlabError
        from cnnlab.models.weights import load_strict, read_weights_file

        if not weights:
            raise CnnlabError(
                "model.pretrained=true: the seed CNN has no published weights. Give a checkpoint of an earlier "
                "run with model.weights=<path/to/best.ckpt>, or train from scratch (model.pretrained=false)."
            )
        load_strict(self, read_weights_file(weights, prefix="backbone."), f"file {weights}")
        self.weights_source = f"file {weights}"

    def stages(self) -> list[list[str]]:
        """Parameter names per conv stage, input side first (what fine-tuning policies unfreeze)."""
        stages: list[list[str]] = []
        for index, layer in enumerate(self.features):
            if isinstance(layer, nn.Conv2d):
                stages.append([])  # each conv opens a stage; its BatchNorm joins it
            if stages:
                stages[-1].extend(f"features.{index}.{name}" for name, _ in layer.named_parameters())
        return stages

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
