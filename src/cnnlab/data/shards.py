"""Data that outgrows one machine: LitData shards. `write_shards` turns any of cnnlab's datasets into LitData chunks
(one folder per split, PNG or the original file bytes per item, local or `s3://`), with `cnnlab.json` beside them
holding the class names, image geometry and statistics; `StreamingDataModule` trains from them with LitData's
`StreamingDataset` / `StreamingDataLoader`: sharded across DDP ranks and nodes, decoded in the loader's workers,
augmented on the device like every other dataset, and resumable mid-epoch (the loader's state is saved in
Lightning's checkpoints; `cnnlab.callbacks.Resumable` restores it).
"""

from __future__ import annotations

import functools
import io
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from litdata import StreamingDataLoader, StreamingDataset, optimize
from PIL import Image

from cnnlab.data.augment import Augment, augment_if_training
from cnnlab.data.base import InMemoryDataModule
from cnnlab.data.checks import check_data
from cnnlab.data.images import image_to_tensor
from cnnlab.data.info import DataInfo
from cnnlab.errors import CnnlabError, Problems
from cnnlab.utils.io import write_json_atomic

META = "cnnlab.json"
SPLITS = ("train", "val", "test")


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
    meta = {**info.as_dict(), "counts": counts, "format": "cnnlab shards 1"}
    _write_meta(output_dir, meta)
    return meta


def _write_meta(output_dir: str, meta: Mapping[str, Any]) -> None:
    if "://" not in output_dir:
        write_json_atomic(Path(output_dir) / META, dict(meta))
        return
    import fsspec  # lazy: remote metadata only (s3fs must be installed for s3://)

    with fsspec.open(f"{output_dir.rstrip('/')}/{META}", "w") as handle:
        handle.write(json.dumps(dict(meta), indent=2, sort_keys=True))


def read_meta(input_dir: str) -> dict[str, Any]:
    """`cnnlab.json` of a shards folder, or an error saying how to make one."""
    try:
        if "://" in input_dir:
            import fsspec  # lazy: as in _write_meta

            with fsspec.open(f"{input_dir.rstrip('/')}/{META}", "r") as handle:
                return json.loads(handle.read())
        return json.loads((Path(input_dir) / META).read_text())
    except (OSError, ValueError, ImportError) as err:
        raise CnnlabError(
            f"data.input_dir={input_dir!r} holds no readable {META} ({type(err).__name__}: {err}): it is not a folder "
            "written by `cnnlab-optimize`. Make one with `cnnlab-optimize data=<any dataset> output_dir=<folder>`."
        ) from None


class ShardImages(StreamingDataset):
    """LitData's dataset, each item decoded to a uint8 tensor (in the loader's worker)."""

    def __init__(self, input_dir: str, channels: int, size: tuple[int, int], **kwargs: Any) -> None:
        super().__init__(input_dir, **kwargs)
        self.channels, self.size = channels, size

    def __getitem__(self, index: Any) -> tuple[torch.Tensor, int]:
        item = super().__getitem__(index)
        with Image.open(io.BytesIO(item["image"])) as image:
            return image_to_tensor(image, self.channels, self.size), int(item["label"])


class StreamingDataModule(L.LightningDataModule):
    """Trains from `cnnlab-optimize`'s shards: `input_dir` (a folder or `s3://` URI) with train/, val/, test/."""

    def __init__(self, input_dir: str, batch_size: int = 64, eval_batch_size: int | None = 512, num_workers: int = 2,
                 seed: int = 42, augment: Mapping[str, Any] | None = None,
                 max_cache_size: str = "10GB") -> None:  # fmt: skip
        super().__init__()
        problems = Problems()
        check_data(dict(input_dir=input_dir, batch_size=batch_size, eval_batch_size=eval_batch_size,
                        num_workers=num_workers, augment=augment, max_cache_size=max_cache_size), problems)  # fmt: skip
        problems.raise_if_any("invalid data=streaming configuration")
        self.input_dir = str(input_dir).rstrip("/")
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.num_workers, self.seed, self.max_cache_size = num_workers, seed, max_cache_size
        self.augment = Augment.from_config(augment)
        self._meta: dict[str, Any] | None = None

    @property
    def info(self) -> DataInfo:
        """From the shards' own cnnlab.json: the model is sized with no config."""
        if self._meta is None:
            self._meta = read_meta(self.input_dir)
        keys = DataInfo.__dataclass_fields__
        return DataInfo(**{k: tuple(v) if isinstance(v, list) else v for k, v in self._meta.items() if k in keys})

    @property
    def augments_training(self) -> bool:
        return self.augment.active

    def _loader(self, split: str, train: bool) -> StreamingDataLoader:
        info = self.info
        dataset = ShardImages(f"{self.input_dir}/{split}", info.in_chans, info.image_size, shuffle=train,
                              drop_last=train, seed=self.seed, max_cache_size=self.max_cache_size)  # fmt: skip
        # Training drops each rank's last partial batch: under DDP every rank must take the same number of steps
        # (LitData's shares can differ by a few samples; a rank with one more step would wait forever - measured).
        return StreamingDataLoader(dataset, batch_size=self.batch_size if train else self.eval_batch_size,
                                   num_workers=self.num_workers, drop_last=train)  # fmt: skip

    def train_dataloader(self) -> StreamingDataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> StreamingDataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> StreamingDataLoader:
        return self._loader("test", train=False)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Train batches are augmented on the device, after the transfer, as for in-memory data."""
        return augment_if_training(self.augment, self.trainer, batch)
