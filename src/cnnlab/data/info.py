"""What a DataModule tells the model: the contract every DataModule used with cnnlab meets, ours and yours.

The model config never repeats what the data knows (classes, channels, size, statistics): cnnlab reads it
from the DataModule's `info` after `prepare_data()` / `setup()`, and sizes the network from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Protocol, runtime_checkable

import torch

from cnnlab.errors import CnnlabError, Problems, is_int, is_number


@dataclass(frozen=True)
class DataInfo:
    """What the model needs to know about the data; the model config never repeats it."""

    name: str  # shown in logs and reports
    num_classes: int  # the head's width; class i is class_names[i] and label i
    in_chans: int  # channels of the images the batches hold (1 grey, 3 RGB, ...)
    image_size: tuple[int, int]  # (height, width) of the images the batches hold
    class_names: tuple[str, ...]  # one per class, in label order: they reach checkpoints and predictions
    mean: tuple[float, ...]  # per-channel mean of the training images in 0..1 (normalisation)
    std: tuple[float, ...]  # per-channel standard deviation, likewise

    def as_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


INFO_FIELDS = tuple(f.name for f in fields(DataInfo))


@runtime_checkable
class DescribesItsData(Protocol):
    """The contract: a LightningDataModule whose `info` (after `prepare_data()` and `setup()`, or loading on first
    use as ours do) is a `DataInfo`, or a mapping with its fields, and whose dataloaders yield `(images, labels)`:
    images (N, C, H, W) as uint8 0..255 or float 0..1, labels int64 class indices (N,)."""

    @property
    def info(self) -> DataInfo | Mapping[str, Any]: ...


def describe_data(datamodule: Any, target: str) -> DataInfo:
    """The `DataInfo` of any DataModule, checked; `target` (its `_target_`) names it in the error."""
    if not isinstance(datamodule, DescribesItsData):
        raise CnnlabError(
            f"data._target_={target}: {type(datamodule).__name__} has no `info`, so cnnlab cannot size the model. "
            f"Give it a property `info` returning cnnlab.data.DataInfo({', '.join(INFO_FIELDS)}) - see the README, "
            "'Your own DataModule'."
        )
    info = datamodule.info
    if isinstance(info, Mapping):
        missing = [name for name in INFO_FIELDS if name not in info]
        if missing:
            raise CnnlabError(f"data._target_={target}: its `info` lacks {', '.join(missing)}; it needs "
                              f"{', '.join(INFO_FIELDS)} (see cnnlab.data.DataInfo).")  # fmt: skip
        info = DataInfo(**{name: info[name] for name in INFO_FIELDS})
    if not isinstance(info, DataInfo):
        raise CnnlabError(f"data._target_={target}: `info` is a {type(info).__name__}; it must be a "
                          "cnnlab.data.DataInfo or a mapping with its fields.")  # fmt: skip
    _check_info(info, target)
    return DataInfo(name=str(info.name), num_classes=int(info.num_classes), in_chans=int(info.in_chans),
                    image_size=tuple(int(s) for s in info.image_size), class_names=tuple(map(str, info.class_names)),
                    mean=tuple(float(m) for m in info.mean), std=tuple(float(s) for s in info.std))  # fmt: skip


def _check_info(info: DataInfo, target: str) -> None:
    problems = Problems()
    problems.int_at_least("info.num_classes", info.num_classes, 2)
    problems.int_at_least("info.in_chans", info.in_chans, 1)
    size = info.image_size
    ok = isinstance(size, list | tuple) and len(size) == 2 and all(is_int(s) and s >= 1 for s in size)
    problems.check(ok, "info.image_size", size, "(height, width), two integers >= 1")
    names = info.class_names
    ok = isinstance(names, list | tuple) and is_int(info.num_classes) and len(names) == info.num_classes
    problems.check(ok, "info.class_names", names, f"a list of num_classes={info.num_classes!r} names, in label order")
    for key, low in (("mean", 0.0), ("std", 1e-12)):
        values = getattr(info, key)
        ok = isinstance(values, list | tuple) and len(values) in (1, info.in_chans)
        ok = ok and all(is_number(v) and v >= low for v in values)
        problems.check(ok, f"info.{key}", values, f"one number >= {low:g} per channel (0..1 scale), or one for all")
    problems.raise_if_any(f"data._target_={target}: its `info` does not describe the data")


def train_class_counts(datamodule: Any, num_classes: int) -> torch.Tensor:
    """Images per class in the training split: from the DataModule's `train_labels()` when it has one (ours that hold
    their labels do), else by one pass over its training loader."""
    if hasattr(datamodule, "train_labels"):
        labels = datamodule.train_labels()
    else:
        datamodule.setup("fit")
        labels = torch.cat([torch.as_tensor(batch[1]) for batch in datamodule.train_dataloader()])
    return torch.bincount(labels.long().flatten(), minlength=num_classes)[:num_classes]
