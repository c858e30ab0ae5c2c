"""`data.augment`: what train batches go through, as settings. Torch-free, so that `cnnlab <verb>` checks the keys
(`cnnlab.data.checks.check_augment`) before torch is imported; `cnnlab.data.augment.Augment` adds the batched ops."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, TypeVar

POLICIES = ("randaugment", "trivialaugment")  # cnnlab.data.policies has torchvision's op table of each
NUM_BINS = 31  # the magnitude bins of RandAugment / TrivialAugment: torchvision's num_magnitude_bins
Settings = TypeVar("Settings", bound="AugmentConfig")


@dataclass(frozen=True)
class AugmentConfig:
    """`data.augment`: what train batches go through (validation and test batches never do)."""

    translate: int = 0  # max shift in pixels, each axis: pad by this much (fill) and crop back at random
    hflip: bool = False  # mirror half the images left-right (not for digits or text)
    erase: float = 0.0  # probability that an image gets one random box filled (random erasing)
    erase_area: tuple[float, float] = (0.02, 0.25)  # the box's share of the image
    erase_ratio: tuple[float, float] = (0.3, 3.3)  # the box's height / width
    fill: Sequence[int] | int = 0  # value of padded, erased and uncovered pixels, 0..255, one or one per channel
    policy: str | None = None  # randaugment | trivialaugment: per-image ops before the above (cnnlab.data.policies)
    policy_ops: int = 2  # randaugment: ops per image
    policy_magnitude: int = 9  # randaugment: the magnitude bin, 0..NUM_BINS - 1

    @classmethod
    def from_config(cls: type[Settings], config: Mapping[str, Any] | AugmentConfig | None) -> Settings:
        """`cls` (`Augment`, for the batched ops) from a `data.augment` mapping or from settings made in Python."""
        if config is None:
            return cls()
        if isinstance(config, AugmentConfig):
            return config if isinstance(config, cls) else cls(**vars(config))
        values = dict(config)  # already checked by cnnlab.data.checks.check_augment
        for key in ("erase_area", "erase_ratio"):
            if key in values:
                values[key] = tuple(float(v) for v in values[key])
        if isinstance(values.get("fill"), Sequence):
            values["fill"] = tuple(int(v) for v in values["fill"])
        return cls(**values)

    @property
    def active(self) -> bool:
        return bool(self.translate or self.hflip or self.erase or self.policy)


AUGMENT_KEYS = tuple(f.name for f in fields(AugmentConfig))
