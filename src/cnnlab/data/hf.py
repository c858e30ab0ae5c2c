"""Hugging Face datasets: a hub id (`name`, online, pinned with `revision`) or a local copy (`path`): a
`save_to_disk` folder, parquet files, or an `imagefolder`. The image and label columns are found by their feature
types (`Image`, `ClassLabel`), class names come from the `ClassLabel`; the dataset's own train / validation / test
splits are used, with seeded stratified fallbacks as for image folders. Decoded once into the in-memory uint8 tensor
when that fits in `cache_max_gb`, else decoded per batch by DataLoader workers from the (memory-mapped) Arrow table.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch.utils.data import Dataset

from cnnlab.data.base import InMemoryDataModule
from cnnlab.data.checks import check_data
from cnnlab.data.image_folder import decoding_loader
from cnnlab.data.images import image_to_tensor, png_bytes
from cnnlab.data.splits import stratified_split
from cnnlab.errors import CnnlabError, Problems

log = logging.getLogger(__name__)
SPLIT_NAMES = {"train": ("train",), "val": ("validation", "valid", "val", "dev"), "test": ("test",)}
HUB_PROBE_SECONDS = 3.0


class RowImages(Dataset):
    """Rows of a Hugging Face split decoded one by one (streaming): an unreadable image yields None, which
    `collate_readable` drops."""

    def __init__(self, table: Any, rows: Sequence[int], labels: torch.Tensor, column: str, channels: int,
                 size: Sequence[int]) -> None:  # fmt: skip
        self.table, self.rows, self.labels = table, list(rows), labels
        self.column, self.channels, self.size = column, channels, tuple(size)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        try:
            return image_to_tensor(self.table[self.rows[index]][self.column], self.channels, self.size), self.labels[
                index
            ]
        except Exception as err:  # a broken image comes in many types
            log.warning("skipped unreadable row %d: %s: %s", self.rows[index], type(err).__name__, err)
            return None


class HuggingFaceDataModule(InMemoryDataModule):
    display_name = "Hugging Face dataset"

    def __init__(self, name: str | None = None, path: str | None = None, revision: str | None = None,
                 format: str = "auto", image_column: str | None = None, label_column: str | None = None,
                 image_size: int | Sequence[int] | None = None, channels: int | None = None,
                 test_fraction: float = 0.2, cache_max_gb: float = 4.0, num_workers: int = 2,
                 **kwargs) -> None:  # fmt: skip
        super().__init__(**kwargs)
        problems = Problems()
        check_data(dict(name=name, path=path, format=format, image_column=image_column, image_size=image_size,
                        channels=channels, test_fraction=test_fraction, cache_max_gb=cache_max_gb,
                        num_workers=num_workers), problems)  # fmt: skip
        problems.raise_if_any("invalid data=hf configuration")
        self.name, self.path, self.revision, self.format = name, path, revision, format
        self.image_column, self.label_column = image_column, label_column
        self.size = (int(image_size),) * 2 if isinstance(image_size, int) else image_size
        self.channels, self.test_fraction = channels, test_fraction
        self.cache_max_gb, self.num_workers = cache_max_gb, num_workers
        self.display_name = str(name or Path(str(path)).name)
        self.streaming = False

    # --- reading --------------------------------------------------------------------------------------
    def _open(self) -> Any:
        """The DatasetDict (or Dataset) of `name` or `path`."""
        import datasets  # lazy: the `hf` extra, imported for this route alone

        if self.path is not None:
            return self._open_local(datasets, Path(str(self.path)).expanduser())
        if not datasets.config.HF_HUB_OFFLINE:
            self._require_hub()
        try:
            return datasets.load_dataset(self.name, revision=self.revision)
        except Exception as err:  # the hub's and the cache's errors come in many types
            raise CnnlabError(f"data.name={self.name!r} could not be loaded ({type(err).__name__}: {err}). "
                              + OFFLINE_FIX.format(name=self.name)) from err  # fmt: skip

    def _open_local(self, datasets: Any, path: Path) -> Any:
        if not path.exists():
            raise CnnlabError(f"data.path={str(path)!r}: no such file or folder. " + OFFLINE_FIX.format(name="<id>"))
        kind = self.format if self.format != "auto" else _local_format(path)
        try:
            if kind == "disk":
                return datasets.load_from_disk(str(path))
            if kind == "parquet":
                files = [str(path)] if path.is_file() else None
                return datasets.load_dataset("parquet", data_files=files, data_dir=None if files else str(path))
            return datasets.load_dataset("imagefolder", data_dir=str(path))
        except Exception as err:  # datasets raises many types for unreadable folders
            raise CnnlabError(f"data.path={str(path)!r} could not be read as {kind} ({type(err).__name__}: {err}). "
                              "Give a save_to_disk folder, a parquet file or folder, or an image folder "
                              "(data.format says which).") from err  # fmt: skip

    def _require_hub(self) -> None:
        """A hub id needs the hub: checked in seconds, instead of `load_dataset`'s half minute of retries."""
        from huggingface_hub import constants  # lazy: as datasets'

        endpoint = urlparse(constants.ENDPOINT)
        try:
            socket.create_connection((endpoint.hostname, endpoint.port or 443), timeout=HUB_PROBE_SECONDS).close()
        except OSError as err:
            where = f"data.name={self.name!r}: the Hugging Face hub ({constants.ENDPOINT})"
            raise CnnlabError(f"{where} cannot be reached from here ({err}). "
                              + OFFLINE_FIX.format(name=self.name)) from None  # fmt: skip

    def _columns(self, split: Any) -> tuple[str, str]:
        """The image and label columns: as configured, else the first Image and ClassLabel features."""
        import datasets  # lazy: as in _open

        features = split.features
        image = self.image_column or next((k for k, f in features.items() if isinstance(f, datasets.Image)), None)
        label = self.label_column or next((k for k, f in features.items() if isinstance(f, datasets.ClassLabel)),
                                          next((k for k in ("label", "labels") if k in features), None))  # fmt: skip
        for key, column in (("image_column", image), ("label_column", label)):
            if column is None or column not in features:
                raise CnnlabError(f"data.{key}={column!r}: {self.display_name} has columns {', '.join(features)}; "
                                  f"name the {key.split('_')[0]} one with data.{key}=<column>.")  # fmt: skip
        return image, label

    def _class_names(self, split: Any, column: str) -> tuple[str, ...]:
        import datasets  # lazy: as in _open

        feature = split.features[column]
        if isinstance(feature, datasets.ClassLabel):
            return tuple(feature.names)
        values = sorted(set(split[column]))
        return tuple(map(str, values))

    def _labels(self, split: Any, column: str) -> torch.Tensor:
        values = split[column]
        if self.class_names and not isinstance(values[0], int):
            index = {name: i for i, name in enumerate(self.class_names)}
            values = [index[str(v)] for v in values]
        return torch.tensor(values, dtype=torch.long)

    def load(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        opened = self._open()
        splits = _named_splits(opened)
        train = splits["train"]
        self._image_key, label_key = self._columns(train)
        self.class_names = self._class_names(train, label_key)
        first = train[0][self._image_key]
        self.channels = self.channels or (1 if first.mode in ("L", "I;16", "I", "F", "1") else 3)
        self.size = tuple(self.size or (first.height, first.width))
        labelled = {name: (split, self._labels(split, label_key)) for name, split in splits.items()}
        if "test" not in labelled:
            split, labels = labelled["train"]
            rest, held = stratified_split(labels, self.test_fraction, self.seed + 1)
            labelled["train"] = (split.select(rest.tolist()), labels[rest])
            labelled["test"] = (split.select(held.tolist()), labels[held])
        total = sum(len(labels) for _, labels in labelled.values())
        needed_gb = total * self.channels * self.size[0] * self.size[1] / 1e9
        self.streaming = needed_gb > self.cache_max_gb
        log.info("%s: %d images, %d classes, %s (%.2f GB at %dx%dx%d)", self.display_name, total,
                 len(self.class_names), "streamed" if self.streaming else "cached in memory", needed_gb,
                 self.channels, *self.size)  # fmt: skip
        self._tables = {name: split for name, (split, _) in labelled.items()}
        read = self._row_indices if self.streaming else self._decode
        if "val" in labelled:
            self.explicit_val = read(*labelled["val"])
        return read(*labelled["train"]) + read(*labelled["test"])

    def _decode(self, split: Any, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        images = [image_to_tensor(row[self._image_key], self.channels, self.size) for row in split]
        return torch.stack(images), labels

    def _row_indices(self, split: Any, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Streaming: the 'images' tensor holds row indices; batches decode the rows themselves."""
        return torch.arange(len(labels)).view(-1, 1, 1, 1), labels

    # --- streaming batches ------------------------------------------------------------------------------
    def _describe(self, train_images: torch.Tensor):
        if not self.streaming:
            return super()._describe(train_images)
        sample = self._tables["train"].select(range(min(512, len(self._tables["train"]))))
        return super()._describe(self._decode(sample, torch.zeros(len(sample)))[0])

    def _split_rows(self, split: str) -> tuple[Any, list[int]]:
        """Streaming: the Arrow table a split's rows live in (val may be cut from train), and the rows."""
        table = self._tables["train" if split == "val" and "val" not in self._tables else split]
        return table, getattr(self.splits, split)[0].flatten().tolist()

    def stored_items(self, split: str) -> tuple[int, Callable[[int], bytes], torch.Tensor]:
        """Streaming: each row decoded to the configured channels and size, as PNG."""
        if not self.streaming:
            return super().stored_items(split)
        (table, rows), labels = self._split_rows(split), getattr(self.splits, split)[1]
        key, channels, size = self._image_key, self.channels, self.size
        return len(labels), lambda i: png_bytes(image_to_tensor(table[rows[i]][key], channels, size)), labels

    def _batches(self, split: str, train: bool):
        if not self.streaming:
            return super()._batches(split, train)
        if self.splits is None:
            self.setup()
        table, rows = self._split_rows(split)
        dataset = RowImages(table, rows, getattr(self.splits, split)[1], self._image_key, self.channels, self.size)
        return decoding_loader(dataset, self.batch_size if train else self.eval_batch_size, train, self.num_workers)


OFFLINE_FIX = (
    "Fix one of: on a machine with the internet, `datasets.load_dataset('{name}').save_to_disk('<folder>')` (or "
    "download its parquet files), copy the folder here and give data.path=<folder>; export HF_DATASETS_OFFLINE=1 to "
    "use a copy already in your Hugging Face cache; or check HF_ENDPOINT and your proxy."
)


def _local_format(path: Path) -> str:
    """disk (a save_to_disk folder), parquet, or imagefolder, from what `path` holds."""
    if path.is_file():
        return "parquet" if path.suffix == ".parquet" else "imagefolder"
    if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
        return "disk"
    return "parquet" if any(path.rglob("*.parquet")) else "imagefolder"


def _named_splits(opened: Any) -> dict[str, Any]:
    """{train, val?, test?} from a DatasetDict's split names (a lone Dataset is the training split)."""
    if not hasattr(opened, "keys"):
        return {"train": opened}
    found = {}
    for ours, names in SPLIT_NAMES.items():
        name = next((n for n in names if n in opened), None)
        if name is not None:
            found[ours] = opened[name]
    if "train" not in found:
        raise CnnlabError(f"the dataset has splits {', '.join(opened)} but none called train: cnnlab trains on "
                          "`train` (and validates / tests on validation / test when present).")  # fmt: skip
    return found
