"""Mixup and CutMix (`model.mix`): pairs of training images blended, or a box of one pasted into the other, with the
labels mixed in the same proportion.

Done in the model, not the DataModule: mixing changes the targets, so it belongs beside the loss that reads them,
and every DataModule (ours, a user's, the streamed ones) gets it for free. It runs on the device, on the normalised
float batch (normalisation is affine, so mixing normalised images equals normalising mixed ones), with
torchvision's `transforms.v2.MixUp` / `CutMix`: one mixing ratio per batch (timm's default "batch" mode), each image
paired with its neighbour by rolling the batch, so an odd batch size is fine (timm asserts an even one).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torchvision.transforms import v2

from cnnlab.errors import Problems, is_int, is_number


@dataclass(frozen=True)
class Mix:
    """`model.mix`: what training batches go through before the backbone (validation and test never)."""

    mixup_alpha: float = 0.0  # Beta(alpha, alpha) draws the mixing ratio; 0 = no mixup (timm: 0.8)
    cutmix_alpha: float = 0.0  # likewise for CutMix's box area; 0 = no CutMix (timm: 1.0)
    prob: float = 1.0  # the share of batches mixed at all
    switch_prob: float = 0.5  # with both on: the share of mixed batches that get CutMix instead of mixup
    stop_epoch: int | None = None  # from this epoch on no mixing (timm: mixup_off_epoch), the last epochs clean

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> Mix:
        return cls(**dict(config or {}))  # already checked by check_mix

    @property
    def active(self) -> bool:
        return self.prob > 0 and (self.mixup_alpha > 0 or self.cutmix_alpha > 0)

    def on_at(self, epoch: int) -> bool:
        return self.active and (self.stop_epoch is None or epoch < self.stop_epoch)


MIX_KEYS = tuple(f.name for f in fields(Mix))


def check_mix(values: Mapping[str, Any] | None, problems: Problems) -> None:
    """The rules for `model.mix`."""
    if values is None:
        return
    if not isinstance(values, Mapping):
        problems.add(f"model.mix={values!r} is not a mapping: null, or e.g. {{mixup_alpha: 0.8, cutmix_alpha: 1.0}}.")
        return
    for key in values:
        problems.check(key in MIX_KEYS, f"model.mix.{key}", values[key], f"one of the keys {', '.join(MIX_KEYS)}")
    for key in ("mixup_alpha", "cutmix_alpha"):
        value = values.get(key, 0.0)
        problems.check(is_number(value) and value >= 0, f"model.mix.{key}", value, "a number >= 0 (0 = off)")
    for key in ("prob", "switch_prob"):
        problems.in_range(f"model.mix.{key}", values.get(key, 0.5), 0, 1, "[]")
    stop = values.get("stop_epoch")
    problems.check(stop is None or (is_int(stop) and stop >= 0), "model.mix.stop_epoch", stop,
                   "null (mix every epoch) or an epoch >= 0")  # fmt: skip


class Mixer:
    """Mixes a float batch and one-hot-encodes its labels as the mixed targets."""

    def __init__(self, mix: Mix, num_classes: int) -> None:
        self.mix = mix
        self.num_classes = num_classes
        self.mixup = v2.MixUp(alpha=mix.mixup_alpha, num_classes=num_classes) if mix.mixup_alpha > 0 else None
        self.cutmix = v2.CutMix(alpha=mix.cutmix_alpha, num_classes=num_classes) if mix.cutmix_alpha > 0 else None

    def __call__(self, images: torch.Tensor, labels: torch.Tensor, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(images, targets (N, classes) that sum to 1); unmixed batches get one-hot targets. Random draws come
        from torch's global generator (CPU), so they are seeded, and restored on resume, like the rest."""
        if len(labels) > 1 and self.mix.on_at(epoch) and float(torch.rand(())) < self.mix.prob:
            use_cutmix = self.cutmix is not None and (
                self.mixup is None or float(torch.rand(())) < self.mix.switch_prob
            )
            return (self.cutmix if use_cutmix else self.mixup)(images, labels)
        return images, F.one_hot(labels, self.num_classes).to(images.dtype)
