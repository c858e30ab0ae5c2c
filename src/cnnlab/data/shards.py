"""Data that outgrows one machine: LitData shards. `write_shards` turns any of cnnlab's datasets into LitData chunks
(one folder per split, PNG or the original file bytes per item, local or `s3://`), with `cnnlab.json` beside them
holding the class names, image geometry and statistics; `StreamingDataModule` trains from them with LitData's
`StreamingDataset` / `StreamingDataLoader`: sharded across DDP ranks and nodes, decoded in the loader's workers,
augmented on the device like every other dataset, and resumable mid-epoch (the loader's state is saved in
Lightning's checkpoints; `cnnlab.run.callbacks.Resumable` restores it).

A shards folder is hostile input: each split's index.json and the folder's cnnlab.json are checked before LitData
opens anything (`cnnlab.data.shard_index`), and each item's bytes are decoded only by `decode_image_bytes` (the
listed formats, a pixel limit checked before decoding), an unreadable item skipped by name like an unreadable file
of an image folder.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Callable, Mapping
from numbers import Integral
from pathlib import Path
from typing import Any

import lightning as L
import torch
from litdata import StreamingDataLoader, StreamingDataset, optimize

from cnnlab.data.augment import Augment, augment_if_training
from cnnlab.data.base import InMemoryDataModule
from cnnlab.data.checks import check_data
from cnnlab.data.image_folder import collate_readable
from cnnlab.data.images import MAX_PIXELS, decode_image_bytes
from cnnlab.data.info import DataInfo
from cnnlab.data.shard_index import (
    INDEX,
    LOCKED_SERIALIZERS,
    META,
    SHARDS_FORMAT,
    SPLITS,
    check_index,
    read_json_at,
    read_meta,
)
from cnnlab.errors import CnnlabError, Problems
from cnnlab.utils.io import UnsafeFileError, write_json_atomic

log = logging.getLogger(__name__)


def _item(encode: Callable[[int], bytes], labels: torch.Tensor, index: int) -> dict[str, Any]:
    return {"index": index, "image": encode(index), "label": int(labels[index])}


def write_shards(datamodule: InMemoryDataModule, output_dir: str, chunk_bytes: str = "64MB",
                 num_workers: int = 1) -> dict[str, Any]:  # fmt: skip
    """Every split of `datamodule` (as it splits them: seed, val_fraction, train_size) as LitData chunks under
    `output_dir/<split>/`, and `output_dir/cnnlab.json`. Returns what cnnlab.json holds."""
    info = datamodule.info
    counts = {}
    for split in SPLITS:
        count, encode, labels = datamodule.stored_items(split)
        counts[split] = count
        optimize(fn=functools.partial(_item, encode, labels), inputs=list(range(count)),
                 output_dir=f"{output_dir.rstrip('/')}/{split}", chunk_bytes=chunk_bytes, num_workers=num_workers,
                 mode="overwrite", verbose=False, start_method="fork")  # fmt: skip
    meta = {**info.as_dict(), "counts": counts, "format": SHARDS_FORMAT}
    _write_meta(output_dir, meta)
    return meta


def _write_meta(output_dir: str, meta: Mapping[str, Any]) -> None:
    if "://" not in output_dir:
        write_json_atomic(Path(output_dir) / META, dict(meta))
        return
    import fsspec  # lazy: remote metadata only (s3fs must be installed for s3://)

    with fsspec.open(f"{output_dir.rstrip('/')}/{META}", "w") as handle:
        handle.write(json.dumps(dict(meta), indent=2, sort_keys=True))


# --- reading ------------------------------------------------------------------------------------------------------
class ShardImages(StreamingDataset):
    """LitData's dataset of a checked split, each item decoded to a uint8 tensor (in the loader's worker) by
    `decode_image_bytes`. An item that is not a readable image of a listed format under the pixel limit, or whose
    label is not a class, yields None (dropped by `collate_readable`, logged by chunk and item): one bad item costs
    one sample, not the run; the loader still counts it, so DDP step counts and mid-epoch resume are unchanged."""

    def __init__(self, input_dir: str, channels: int, size: tuple[int, int], num_classes: int,
                 chunk_names: list[str], max_pixels: int = MAX_PIXELS, **kwargs: Any) -> None:  # fmt: skip
        super().__init__(input_dir, serializers=LOCKED_SERIALIZERS, **kwargs)
        self.channels, self.size, self.num_classes, self.chunk_names = channels, size, num_classes, chunk_names
        self.split_dir, self.max_pixels = input_dir, max_pixels

    def _where(self, index: Any) -> str:
        """The item, named by chunk file and position (`index` is LitData's ChunkedIndex when iterating)."""
        chunk = getattr(index, "chunk_index", None)
        ok = isinstance(chunk, Integral) and 0 <= chunk < len(self.chunk_names)
        name = self.chunk_names[int(chunk)] if ok else "?"
        return f"{self.split_dir}/{name} item {getattr(index, 'index', index)}"

    def __getitem__(self, index: Any) -> tuple[torch.Tensor, torch.Tensor] | None:
        try:
            item = super().__getitem__(index)
        except UnsafeFileError as err:  # a serializer cnnlab does not write (LOCKED_SERIALIZERS): nothing was decoded
            raise UnsafeFileError(f"{self._where(index)} was refused: {err}") from None
        except Exception as err:  # a damaged chunk: stop, naming it (skipping would hide a broken folder)
            raise CnnlabError(f"{self._where(index)} could not be read ({type(err).__name__}: {err}): the chunk is "
                              "damaged. Rewrite the shards with `cnnlab shards`.") from err  # fmt: skip
        try:
            label = item["label"]
            if not (isinstance(label, Integral) and 0 <= label < self.num_classes):
                raise ValueError(f"label {label!r} is not a class (0..{self.num_classes - 1})")
            image = decode_image_bytes(item["image"], self.channels, self.size, self.max_pixels)
            return image, torch.tensor(int(label))
        except Exception as err:  # PIL raises many types for broken images; ImageRefused for refused ones
            log.warning("skipped unreadable shard item %s: %s: %s", self._where(index), type(err).__name__, err)
            return None


class StreamingDataModule(L.LightningDataModule):
    """Trains from `cnnlab shards`'s shards: `input_dir` (a folder or `s3://` URI) with train/, val/, test/."""

    def __init__(self, input_dir: str, batch_size: int = 64, eval_batch_size: int | None = 512, num_workers: int = 2,
                 seed: int = 42, augment: Mapping[str, Any] | None = None,
                 max_cache_size: str = "10GB", max_pixels: int = MAX_PIXELS) -> None:  # fmt: skip
        super().__init__()
        problems = Problems()
        check_data(dict(input_dir=input_dir, batch_size=batch_size, eval_batch_size=eval_batch_size,
                        num_workers=num_workers, augment=augment, max_cache_size=max_cache_size,
                        max_pixels=max_pixels), problems)  # fmt: skip
        problems.raise_if_any("invalid data=streaming configuration")
        self.input_dir = str(input_dir).rstrip("/")
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.num_workers, self.seed, self.max_cache_size = num_workers, seed, max_cache_size
        self.max_pixels = max_pixels  # the most pixels an item's image may declare; larger ones are skipped
        self.augment = Augment.from_config(augment)
        self._meta: dict[str, Any] | None = None

    @property
    def info(self) -> DataInfo:
        """From the shards' own cnnlab.json (checked): the model is sized with no config."""
        if self._meta is None:
            self._meta = read_meta(self.input_dir)
        meta = self._meta
        return DataInfo(name=meta["name"], num_classes=len(meta["class_names"]), in_chans=meta["in_chans"],
                        image_size=tuple(meta["image_size"]), class_names=tuple(meta["class_names"]),
                        mean=tuple(meta["mean"]), std=tuple(meta["std"]))  # fmt: skip

    @property
    def augments_training(self) -> bool:
        return self.augment.active

    def _dataset(self, split: str, train: bool) -> ShardImages:
        """The split's dataset, made only after its index.json passed `check_index`; LitData's own copy of the index
        (the one its workers read: for `s3://`, downloaded to its cache) must then be the one that was checked."""
        info, split_dir = self.info, f"{self.input_dir}/{split}"
        index = check_index(split_dir, self._meta["counts"][split])
        dataset = ShardImages(split_dir, info.in_chans, info.image_size, info.num_classes,
                              [chunk["filename"] for chunk in index["chunks"]], shuffle=train, drop_last=train,
                              max_pixels=self.max_pixels, seed=self.seed,
                              max_cache_size=self.max_cache_size)  # fmt: skip
        used = os.path.join(dataset.input_dir.path or split_dir, INDEX)
        try:
            same = read_json_at(used) == index
        except (OSError, ValueError) as err:
            same, used = False, f"{used} ({type(err).__name__}: {err})"
        if not same:
            raise UnsafeFileError(f"{split_dir}/{INDEX} was refused: the index LitData would read, {used}, is not the "
                                  "one cnnlab checked (it changed while being read). Nothing was decoded or run. "
                                  "Rewrite the shards with `cnnlab shards`.")  # fmt: skip
        return dataset

    def _loader(self, split: str, train: bool) -> StreamingDataLoader:
        dataset = self._dataset(split, train)
        # Training drops each rank's last partial batch: under DDP every rank must take the same number of steps
        # (LitData's shares can differ by a few samples; a rank with one more step would wait forever - measured).
        # Unreadable items are dropped from their batch (collate_readable), never from the loader's count.
        return StreamingDataLoader(dataset, batch_size=self.batch_size if train else self.eval_batch_size,
                                   num_workers=self.num_workers, drop_last=train,
                                   collate_fn=collate_readable)  # fmt: skip

    def train_dataloader(self) -> StreamingDataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> StreamingDataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> StreamingDataLoader:
        return self._loader("test", train=False)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Train batches are augmented on the device, after the transfer, as for in-memory data."""
        return augment_if_training(self.augment, self.trainer, batch)
