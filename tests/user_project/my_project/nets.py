"""A backbone of the user's own, and a subclass of cnnlab's ImageClassifier that uses it."""

import torch
from torch import nn

from cnnlab.models import ImageClassifier


class TinyNet(nn.Module):
    """The backbone contract: built from (in_chans, image_size, pretrained, weights, ...); says its output width
    (`num_features`), the channels it takes (`in_chans`) and its normalisation (`mean`/`std`, None = the data's)."""

    def __init__(self, in_chans: int, image_size, pretrained: bool = False, weights=None, width: int = 8) -> None:
        super().__init__()
        self.in_chans, self.num_features, self.mean, self.std = in_chans, width, None, None
        self.features = nn.Sequential(nn.Conv2d(in_chans, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
                                      nn.AdaptiveMaxPool2d(1), nn.Flatten())  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


class MyClassifier(ImageClassifier):
    """cnnlab's steps, optimizer and checkpoints, with the user's own loss: cross-entropy plus a small penalty on
    over-confident logits."""

    def loss(self, logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        penalty = 1e-3 * logits.pow(2).mean(1)
        base = super().loss(logits, labels, reduction="none") + penalty
        return base.mean() if reduction == "mean" else base.sum() if reduction == "sum" else base
