"""Mixup and CutMix (`model.mix`): pairs of training images blended, or a box of one pasted into the other, with the
labels mixed in the same proportion.

Done in the model, not the DataModule: mixing changes the targets, so it belongs beside the loss that reads them,
and every DataModule (ours, a user's, the streamed ones) gets it for free. It runs on the device, on the normalised
float batch (normalisation is affine, so mixing normalised images equals normalising mixed ones), with
torchvision's `transforms.v2.MixUp` / `CutMix`: one mixing ratio per batch (timm's default "batch" mode), each image
paired with its neighbour by rolling the batch, so an odd batch size is fine (timm asserts an even one).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.transforms import v2

from cnnlab.models.mix_config import Mix


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
