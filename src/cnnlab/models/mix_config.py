"""`model.mix`: the settings of mixup / CutMix. Torch-free, so that `cnnlab <verb>` checks the keys
(`cnnlab.models.checks.check_mix`) before torch is imported; `cnnlab.models.mixing.Mixer` mixes by them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any


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
        return cls(**dict(config or {}))  # already checked by cnnlab.models.checks.check_mix

    @property
    def active(self) -> bool:
        return self.prob > 0 and (self.mixup_alpha > 0 or self.cutmix_alpha > 0)

    def on_at(self, epoch: int) -> bool:
        return self.active and (self.stop_epoch is None or epoch < self.stop_epoch)


MIX_KEYS = tuple(f.name for f in fields(Mix))
