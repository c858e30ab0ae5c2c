"""Test-time augmentation (`model.tta`): the logits of an image averaged with those of its mirror and / or 1-pixel
shifts - airbench's recipe (Keller Jordan, 2024: `infer_mirror_translate`). Used at test, by cnnlab eval,
cnnlab predict and in exported models; validation stays plain (it runs every epoch, and TTA costs 2-6 forwards)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

# The forward passes per image of each of cnnlab.models.checks.TTA_MODES (`model.tta`).
FORWARDS = {"none": 1, "flip": 2, "shift": 3, "flip_shift": 6}


def _mirrored(logits_of: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor) -> torch.Tensor:
    return 0.5 * (logits_of(images) + logits_of(images.flip(-1)))


def _shifted(images: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """The images moved by (dy, dx) pixels, edges padded by reflection (as airbench)."""
    padded = F.pad(images.float() if images.dtype == torch.uint8 else images, (1, 1, 1, 1), mode="reflect")
    h, w = images.shape[-2:]
    out = padded[..., 1 - dy : 1 - dy + h, 1 - dx : 1 - dx + w]
    return out.to(images.dtype)


def tta_logits(logits_of: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, mode: str) -> torch.Tensor:
    """`logits_of(images)` averaged over the views of `mode`: flip = (image + mirror) / 2; shift = the image at 0.5
    and shifted one pixel up-left and down-right at 0.25 each; flip_shift = shift with every view mirrored too."""
    if mode == "none":
        return logits_of(images)
    view = (lambda x: _mirrored(logits_of, x)) if mode in ("flip", "flip_shift") else logits_of
    if mode == "flip":
        return view(images)
    return 0.5 * view(images) + 0.25 * view(_shifted(images, -1, -1)) + 0.25 * view(_shifted(images, 1, 1))
