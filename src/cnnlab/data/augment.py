"""Train-time augmentation as a few batched tensor ops on whatever device the batch is on.

Every sample draws its own shift, flip and erasing box, but the work is one `gather` (translation and flip
together) and one `masked_fill` (erasing) per batch: no per-sample Python, no DataLoader workers, and on a
GPU no host round trip. It runs on the uint8 batch, before the model's own preprocessing, so what a
checkpoint does at inference is unchanged. `policy` adds RandAugment / TrivialAugment first, batched the same
way (`cnnlab.data.policies`).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch
import torch.nn.functional as F

from cnnlab.data.augment_config import AugmentConfig
from cnnlab.data.policies import Policy
from cnnlab.errors import CnnlabError


class Augment(AugmentConfig):
    """`data.augment`'s settings (`AugmentConfig`, where its keys are defined) as batched tensor ops."""

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """A new batch (N, C, H, W), same dtype and device; each sample with its own random draw (from `generator`,
        on the images' device, else torch's global one)."""
        if not self.active or images.ndim != 4 or not len(images):
            return images
        if self.policy:
            if images.dtype != torch.uint8:
                raise CnnlabError(f"data.augment.policy={self.policy} works on uint8 images (0..255); this DataModule "
                                  f"gives {images.dtype}: give uint8 batches, or no policy.")  # fmt: skip
            policy = Policy(self.policy, self.policy_ops, self.policy_magnitude)
            images = policy(images, self._fills(images.shape[1]), generator)
        images = self._shift_and_flip(images, generator)
        if self.erase:
            images = self._erase(images, generator)
        return images

    def _fills(self, channels: int) -> tuple[int, ...]:
        fill = (self.fill,) if isinstance(self.fill, int) else tuple(self.fill)
        if len(fill) not in (1, channels):
            raise CnnlabError(f"data.augment.fill={list(fill)} has {len(fill)} values but the images have {channels} "
                              "channel(s): give one value, or one per channel.")  # fmt: skip
        return fill * channels if len(fill) == 1 else fill

    def _fill_value(self, images: torch.Tensor) -> torch.Tensor:
        return _fill_tensor(self._fills(images.shape[1]), images.dtype, images.device)

    def _shift_and_flip(self, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        if not (self.translate or self.hflip):
            return images
        n, c, h, w = images.shape
        pad, device = int(self.translate), images.device
        if pad:
            padded = F.pad(images, (pad, pad, pad, pad))
            if any(self._fills(c)):  # F.pad fills with 0: paint the border with the fill value instead
                fill = self._fill_value(images)
                border = torch.ones(1, 1, h + 2 * pad, w + 2 * pad, dtype=torch.bool, device=device)
                border[..., pad : pad + h, pad : pad + w] = False
                padded = torch.where(border, fill, padded)
        else:
            padded = images
        cols = torch.arange(w, device=device).expand(n, w)
        if self.hflip:
            flip = torch.rand(n, 1, device=device, generator=generator) < 0.5
            cols = torch.where(flip, w - 1 - cols, cols)
        rows = torch.arange(h, device=device).expand(n, h)
        if pad:
            rows = rows + torch.randint(0, 2 * pad + 1, (n, 1), device=device, generator=generator)
            cols = cols + torch.randint(0, 2 * pad + 1, (n, 1), device=device, generator=generator)
        index = (rows[:, :, None] * padded.shape[-1] + cols[:, None, :]).view(n, 1, h * w).expand(n, c, h * w)
        return padded.reshape(n, c, -1).gather(2, index).view(n, c, h, w)

    def _erase(self, images: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        n, _, h, w = images.shape
        device = images.device
        area = torch.empty(n, device=device).uniform_(*self.erase_area, generator=generator) * (h * w)
        log_low, log_high = math.log(self.erase_ratio[0]), math.log(self.erase_ratio[1])
        log_ratio = torch.empty(n, device=device).uniform_(log_low, log_high, generator=generator)
        box_h = (area * log_ratio.exp()).sqrt().round().clamp(1, h)
        box_w = (area / log_ratio.exp()).sqrt().round().clamp(1, w)
        top = (torch.rand(n, device=device, generator=generator) * (h - box_h + 1)).floor()
        left = (torch.rand(n, device=device, generator=generator) * (w - box_w + 1)).floor()
        apply = torch.rand(n, device=device, generator=generator) < self.erase
        ys = torch.arange(h, device=device).view(1, h, 1)
        xs = torch.arange(w, device=device).view(1, 1, w)
        inside = (
            (ys >= top.view(n, 1, 1)) & (ys < (top + box_h).view(n, 1, 1))
            & (xs >= left.view(n, 1, 1)) & (xs < (left + box_w).view(n, 1, 1))
            & apply.view(n, 1, 1)
        )  # fmt: skip
        return torch.where(inside[:, None], self._fill_value(images), images)


@functools.cache
def _fill_tensor(fill: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(1, C, 1, 1) fill values, made once per device: a copy to a GPU every step would be a host sync."""
    return torch.tensor(fill, dtype=dtype).view(1, -1, 1, 1).to(device)


def augment_if_training(augment: Augment, trainer: Any, batch: Any) -> Any:
    """A DataModule's `on_after_batch_transfer`: train batches augmented on the device, after the transfer."""
    if augment.active and trainer is not None and getattr(trainer, "training", False):
        images, labels = batch
        return augment(images, batch_generator(trainer, images.device)), labels
    return batch


def batch_generator(trainer: Any, device: torch.device) -> torch.Generator | None:
    """This training batch's own random stream, seeded by the run's seed, the rank and the number of training batches
    before it: what a batch draws depends on its place in the run alone. So a run resumed mid-epoch draws exactly
    what the uninterrupted run drew - torch's global generator is restored only at `on_train_batch_start`, after this
    hook, and Lightning builds the loader's iterator (which draws from it) at another moment after a restart - and
    DDP ranks draw differently. None (the global generator) outside a Lightning fit loop."""
    epoch_loop = getattr(getattr(trainer, "fit_loop", None), "epoch_loop", None)
    if epoch_loop is None:
        return None
    seen = epoch_loop.batch_progress.total.ready  # restored exactly on resume
    seed = (torch.initial_seed() * 1_000_003 + getattr(trainer, "global_rank", 0)) * 1_000_003 + seen
    return torch.Generator(device=device).manual_seed(seed % 2**63)
