"""The classic CNN of the Keras MNIST example: (conv -> max-pool -> ReLU) per stage, then flatten.

Max-pool runs before ReLU: both are monotone, so relu(maxpool(x)) == maxpool(relu(x)) exactly, and the
ReLU then touches 4x fewer values. The dense part (Dense 128 -> Dropout -> Dense classes) is the head.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from cnnlab.errors import CnnlabError, Problems
from cnnlab.models.checks import check_seed_cnn, feature_map_side
from cnnlab.models.weights import load_strict, read_weights_file


class SeedCNN(nn.Module):
    """Feature extractor: one stage per width, each (Conv `kernel_size`, [BatchNorm], ReLU) x (`convs_per_stage` - 1)
    then (Conv, [BatchNorm], MaxPool 2, ReLU) - the seed's one conv per stage by default, VGG's blocks with 2."""

    def __init__(
        self,
        in_chans: int,
        image_size: Sequence[int],
        widths: Sequence[int] = (32, 64),
        kernel_size: int = 3,
        padding: int = 0,
        batch_norm: bool = False,
        width_mult: float = 1.0,
        convs_per_stage: int = 1,
        pretrained: bool = False,
        weights: str | None = None,
    ) -> None:
        super().__init__()
        problems = Problems()
        check_seed_cnn(dict(widths=list(widths), kernel_size=kernel_size, padding=padding, width_mult=width_mult,
                            convs_per_stage=convs_per_stage), list(image_size), problems)  # fmt: skip
        problems.raise_if_any("invalid CNN")
        self.in_chans = in_chans
        self.mean = self.std = None  # normalise with the data's own statistics
        layers: list[nn.Module] = []
        channels = in_chans
        for width in (max(1, round(w * width_mult)) for w in widths):
            for index in range(convs_per_stage):
                layers.append(nn.Conv2d(channels, width, kernel_size, padding=padding, bias=not batch_norm))
                if batch_norm:
                    layers.append(nn.BatchNorm2d(width))
                if index + 1 < convs_per_stage:
                    layers.append(nn.ReLU(inplace=True))
                channels = width
            layers += [nn.MaxPool2d(2), nn.ReLU(inplace=True)]
        layers.append(nn.Flatten())
        self.features = nn.Sequential(*layers)
        height, width = (feature_map_side(s, kernel_size, padding, len(widths), convs_per_stage) for s in image_size)
        self.num_features = channels * height * width
        self.weights_source = None
        if pretrained:
            self._load_pretrained(weights)

    def _load_pretrained(self, weights: str | None) -> None:
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
        opens = True
        for index, layer in enumerate(self.features):
            if isinstance(layer, nn.Conv2d) and opens:
                stages.append([])  # the first conv after a pool opens a stage; its other convs and norms join it
            opens = isinstance(layer, nn.MaxPool2d) or (opens and not isinstance(layer, nn.Conv2d))
            if stages:
                stages[-1].extend(f"features.{index}.{name}" for name, _ in layer.named_parameters())
        return stages

    def forward(self, x):
        return self.features(x)
