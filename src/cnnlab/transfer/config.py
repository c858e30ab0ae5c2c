"""`transfer.*`: what a transfer config holds and its rules. Torch-free, so that `cnnlab <verb>` checks it before
torch is imported; `cnnlab.transfer.policy` carries it out."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from cnnlab.errors import Problems, is_number

MODES = ("scratch", "frozen", "finetune")


@dataclass(frozen=True)
class TransferConfig:
    mode: str = "scratch"  # scratch | frozen | finetune
    pretrained: bool = False  # read by the model config: load pretrained backbone weights
    backbone_lr_scale: float = 1.0  # backbone LR = head LR x this (discriminative fine-tuning)
    layer_decay: float | None = None  # each stage further from the head: LR x this again
    freeze_epochs: int = 0  # finetune: train the head only for this many epochs, then unfreeze
    trainable_stages: int | None = None  # finetune: unfreeze only the last N backbone stages (null = all)
    freeze_bn: bool = False  # finetune: keep every backbone BatchNorm in eval mode throughout
    cache_features: bool = True  # frozen, no augmentation: embed the data once, train the head on it

    @classmethod
    def check(cls, values: Mapping[str, Any] | None, problems: Problems) -> None:
        """The rules for `transfer.*`."""
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            problems.add(f"unknown transfer keys {unknown}; known: {', '.join(sorted(known))}")
        problems.one_of("transfer.mode", values.get("mode", "scratch"), MODES)
        scale = values.get("backbone_lr_scale", 1.0)
        problems.check(is_number(scale) and scale >= 0, "transfer.backbone_lr_scale", scale, "a number >= 0")
        decay = values.get("layer_decay")
        problems.check(decay is None or (is_number(decay) and 0 < decay <= 1), "transfer.layer_decay", decay,
                       "null or a number in (0, 1]")  # fmt: skip
        problems.int_at_least("transfer.freeze_epochs", values.get("freeze_epochs", 0), 0)
        problems.int_at_least("transfer.trainable_stages", values.get("trainable_stages"), 0, null_ok=True,
                              note=" (null = all)")  # fmt: skip
        for key in ("pretrained", "freeze_bn", "cache_features"):
            problems.flag(f"transfer.{key}", values.get(key, False))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> TransferConfig:
        problems = Problems()
        cls.check(values, problems)
        problems.raise_if_any("invalid transfer configuration")
        return cls(**dict(values or {}))
