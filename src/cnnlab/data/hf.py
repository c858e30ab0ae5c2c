"""Hugging Face datasets: a hub id (`name`, online, pinned with `revision`) or a local copy (`path`): a
`save_to_disk` folder, parquet files, or an `imagefolder`. The image and label columns are found by their feature
types (`Image`, `ClassLabel`), class names come from the `ClassLabel`; the dataset's own train / validation / test
splits are used, with seeded stratified fallbacks as for image folders. Decoded once into the in-memory uint8 tensor
when that fits in `cache_max_gb`, else decoded per batch by DataLoader workers from the (memory-mapped) Arrow table.

Every cell is hostile input (anyone may have made the dataset): cnnlab decodes the image column itself, read as
`Image(decode=False)` so that `datasets` opens nothing a cell names. A cell's embedded bytes are decoded (formats of
`IMAGE_FORMATS`, at most `max_pixels`, checked from the header); a cell with only a `path` is read when that is a
regular file inside the dataset's own folder (data.path's folder; for data.name, the Hugging Face caches), never a
URL (http://, hf://, ...), a file elsewhere, a FIFO or a device. A refused or unreadable cell is skipped with a warning
naming its row, path and reason, as an image folder's unreadable files are. The files `datasets` itself opens (a
save_to_disk folder's Arrow files, the parquet and metadata files of a folder) must be regular files inside it too.
"""

from __future__ import annotations

import logging
import os
import socket
import stat
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch.utils.data import Dataset

from cnnlab.data.base import InMemoryDataModule
from cnnlab.data.checks import check_data
from cnnlab.data.hf_files import CellImages, check_disk_folder, check_folder, reason_of
from cnnlab.data.image_folder import decoding_loader
from cnnlab.data.images import MAX_PIXELS, png_bytes
from cnnlab.data.splits import stratified_split
from cnnlab.errors import CnnlabError, Problems
from cnnlab.utils.files import file_kind, real_root

log = logging.getLogger(__name__)
SPLIT_NAMES = {"train": ("train",), "val": ("validation", "valid", "val", "dev"), "test": ("test",)}
HUB_PROBE_SECONDS = 3.0
PROBE_ROWS = 16  # the first readable of these training rows gives the channels and size when they are not configured


class RowImages(Dataset):
    """Rows of a Hugging Face split decoded one by one (streaming): an unreadable or refused image yields None,
    which `collate_readable` drops, with a warning naming the row (`origin`: the dataset's split name and each table
    row's index in it) and the reason."""

    def __init__(self, table: Any, rows: Sequence[int], labels: torch.Tensor, column: str, channels: int,
                 size: Sequence[int], cells: CellImages | None = None,
                 origin: tuple[str, Sequence[int]] | None = None) -> None:  # fmt: skip
        self.table, self.rows, self.labels = table, list(rows), labels
        self.column, self.channels, self.size = column, channels, tuple(size)
        self.cells = cells or CellImages((), "the dataset (no folder given: only embedded bytes are read)")
        self.split_name, self.origin = origin if origin is not None else ("the table", None)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        row = self.rows[index]
        try:
            return self.cells.decode(self.table[row][self.column], self.channels, self.size), self.labels[index]
        except Exception as err:  # a broken image comes in many types
            named = int(self.origin[row]) if self.origin is not None else row
            log.warning("skipped unreadable row %d of %s: %s", named, self.split_name, reason_of(err))
            return None


class HuggingFaceDataModule(InMemoryDataModule):
    display_name = "Hugging Face dataset"

    def __init__(self, name: str | None = None, path: str | None = None, revision: str | None = None,
                 format: str = "auto", image_column: str | None = None, label_column: str | None = None,
                 image_size: int | Sequence[int] | None = None, channels: int | None = None,
                 test_fraction: float = 0.2, cache_max_gb: float = 4.0, num_workers: int = 2,
                 max_pixels: int = MAX_PIXELS, **kwargs) -> None:  # fmt: skip
        super().__init__(**kwargs)
        problems = Problems()
        check_data(dict(name=name, path=path, format=format, image_column=image_column, image_size=image_size,
                        channels=channels, test_fraction=test_fraction, cache_max_gb=cache_max_gb,
                        num_workers=num_workers, max_pixels=max_pixels), problems)  # fmt: skip
        problems.raise_if_any("invalid data=hf configuration")
        self.name, self.path, self.revision, self.format = name, path, revision, format
        self.image_column, self.label_column = image_column, label_column
        self.size = (int(image_size),) * 2 if isinstance(image_size, int) else image_size
        self.channels, self.test_fraction = channels, test_fraction
        self.cache_max_gb, self.num_workers, self.max_pixels = cache_max_gb, num_workers, max_pixels
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
        mode = path.stat().st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise CnnlabError(f"data.path={str(path)!r} is {file_kind(mode)}: give a folder or a parquet file.")
        kind = self.format if self.format != "auto" else _local_format(path)
        if kind == "disk":
            check_disk_folder(path)
        elif path.is_dir():
            check_folder(path)
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

    def _cell_images(self, feature: Any) -> CellImages:
        """How this dataset's cells are read: inside data.path's folder (a parquet file's own), or for a hub id
        inside the Hugging Face caches, where `datasets` keeps what it downloaded and extracted."""
        mode = getattr(feature, "mode", None)
        if self.path is not None:
            folder = real_root(self.path)
            folder = os.path.dirname(folder) if os.path.isfile(folder) else folder
            return CellImages([folder], f"the dataset's folder {folder}", self.max_pixels, mode)
        import datasets  # lazy: as in _open
        from huggingface_hub import constants  # lazy: as datasets'

        roots = [datasets.config.HF_DATASETS_CACHE, datasets.config.DOWNLOADED_DATASETS_PATH,
                 datasets.config.EXTRACTED_DATASETS_PATH, constants.HF_HUB_CACHE]  # fmt: skip
        where = "the Hugging Face caches (" + ", ".join(dict.fromkeys(real_root(r) for r in roots)) + ")"
        return CellImages(roots, where, self.max_pixels, mode)

    def _undecoded(self, split: Any, label: str) -> Any:
        """The split's image and label columns alone, the images as undecoded cells: `datasets` opens nothing."""
        import datasets  # lazy: as in _open

        split = split.select_columns(list(dict.fromkeys([self._image_key, label]))).with_format(None)
        feature = split.features[self._image_key]
        if isinstance(feature, datasets.Image):
            return split.cast_column(self._image_key, datasets.Image(mode=feature.mode, decode=False))
        if datasets.features.features.require_decoding(feature):
            raise CnnlabError(f"data.image_column={self._image_key!r} is a {type(feature).__name__} column; give an "
                              "Image column (or one of image bytes or file names).")  # fmt: skip
        return split

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
        named = _named_splits(opened)
        self._image_key, label_key = self._columns(named["train"][1])
        self._cells = self._cell_images(named["train"][1].features[self._image_key])
        splits = {name: self._undecoded(split, label_key) for name, (_, split) in named.items()}
        train = splits["train"]
        self.class_names = self._class_names(train, label_key)
        if self.channels is None or self.size is None:
            mode, height, width = self._probe(train, named["train"][0])
            self.channels = self.channels or (1 if mode in ("L", "I;16", "I", "F", "1") else 3)
            self.size = tuple(self.size or (height, width))
        labelled = {name: (split, self._labels(split, label_key)) for name, split in splits.items()}
        origins = {name: (named[name][0], torch.arange(len(split))) for name, split in splits.items()}
        if "test" not in labelled:
            split, labels = labelled["train"]
            rest, held = stratified_split(labels, self.test_fraction, self.seed + 1)
            labelled["train"] = (split.select(rest.tolist()), labels[rest])
            labelled["test"] = (split.select(held.tolist()), labels[held])
            origins["train"], origins["test"] = (origins["train"][0], rest), (origins["train"][0], held)
        self._origins = origins
        total = sum(len(labels) for _, labels in labelled.values())
        needed_gb = total * self.channels * self.size[0] * self.size[1] / 1e9
        self.streaming = needed_gb > self.cache_max_gb
        log.info("%s: %d images, %d classes, %s (%.2f GB at %dx%dx%d)", self.display_name, total,
                 len(self.class_names), "streamed" if self.streaming else "cached in memory", needed_gb,
                 self.channels, *self.size)  # fmt: skip
        self._tables = {name: split for name, (split, _) in labelled.items()}
        read = self._row_indices if self.streaming else self._decode
        if "val" in labelled:
            self.explicit_val = read(*labelled["val"], origins["val"])
        return read(*labelled["train"], origins["train"]) + read(*labelled["test"], origins["test"])

    def _probe(self, train: Any, own_name: str) -> tuple[str, int, int]:
        """(mode, height, width) of the first readable of the first training rows, decoded as every row is."""
        reasons = []
        for row in range(min(PROBE_ROWS, len(train))):
            try:
                with self._cells.image(train[row][self._image_key]) as image:
                    return image.mode, image.height, image.width
            except Exception as err:  # a broken image comes in many types
                reasons.append(f"row {row} of {own_name}: {reason_of(err)}")
        raise CnnlabError(f"{self.display_name}: none of its first {len(reasons)} training rows holds an image cnnlab "
                          "reads, so its channels and size are unknown:\n  " + "\n  ".join(reasons))  # fmt: skip

    def _cells_of(self, split: Any) -> Iterator[Any]:
        for batch in split.select_columns([self._image_key]).iter(batch_size=256):
            yield from batch[self._image_key]

    def _decode(self, split: Any, labels: torch.Tensor, origin: tuple[str, torch.Tensor]
                ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """Every row decoded into memory; a refused or unreadable one is left out (with its label), named in one
        warning. A split of which no row is readable is an error."""
        images, kept, errors = [], [], {}
        for row, cell in enumerate(self._cells_of(split)):
            try:
                images.append(self._cells.decode(cell, self.channels, self.size))
                kept.append(row)
            except Exception as err:  # a broken image comes in many types
                errors[f"row {int(origin[1][row])} of {origin[0]}"] = reason_of(err)
        if errors:
            names = "; ".join(f"{where}: {error}" for where, error in list(errors.items())[:20])
            more = f"; ... and {len(errors) - 20} more" if len(errors) > 20 else ""
            log.warning("skipped %d unreadable row(s) of %s: %s%s", len(errors), self.display_name, names, more)
        if errors and not images:
            raise CnnlabError(f"{self.display_name}: none of the {len(errors)} rows of {origin[0]} holds an image "
                              f"cnnlab reads (see the warning above), e.g. {next(iter(errors.items()))}.")  # fmt: skip
        empty = torch.empty(0, self.channels, *self.size, dtype=torch.uint8)
        return (torch.stack(images) if images else empty), labels[kept] if errors else labels

    def _row_indices(self, split: Any, labels: torch.Tensor, origin: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Streaming: the 'images' tensor holds row indices; batches decode the rows themselves."""
        return torch.arange(len(labels)).view(-1, 1, 1, 1), labels

    # --- streaming batches ------------------------------------------------------------------------------
    def _describe(self, train_images: torch.Tensor):
        if not self.streaming:
            return super()._describe(train_images)
        sample = self._tables["train"].select(range(min(512, len(self._tables["train"]))))
        return super()._describe(self._decode(sample, torch.zeros(len(sample)), self._origins["train"])[0])

    def _split_rows(self, split: str) -> tuple[Any, list[int]]:
        """Streaming: the Arrow table a split's rows live in (val may be cut from train), and the rows."""
        table = self._tables[self._table_name(split)]
        return table, getattr(self.splits, split)[0].flatten().tolist()

    def _table_name(self, split: str) -> str:
        return "train" if split == "val" and "val" not in self._tables else split

    def stored_items(self, split: str) -> tuple[int, Callable[[int], bytes], torch.Tensor]:
        """Streaming: each row decoded to the configured channels and size, as PNG."""
        if not self.streaming:
            return super().stored_items(split)
        (table, rows), labels = self._split_rows(split), getattr(self.splits, split)[1]
        key, channels, size, cells = self._image_key, self.channels, self.size, self._cells
        dataset, (own_name, origin) = self.display_name, self._origins[self._table_name(split)]

        def encode(i: int) -> bytes:
            try:
                return png_bytes(cells.decode(table[rows[i]][key], channels, size))
            except Exception as err:  # a broken image comes in many types
                raise CnnlabError(f"{dataset}: row {int(origin[rows[i]])} of {own_name} cannot be stored: "
                                  f"{reason_of(err)}") from None  # fmt: skip

        return len(labels), encode, labels

    def _batches(self, split: str, train: bool):
        if not self.streaming:
            return super()._batches(split, train)
        if self.splits is None:
            self.setup()
        table, rows = self._split_rows(split)
        dataset = RowImages(table, rows, getattr(self.splits, split)[1], self._image_key, self.channels, self.size,
                            self._cells, self._origins[self._table_name(split)])  # fmt: skip
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


def _named_splits(opened: Any) -> dict[str, tuple[str, Any]]:
    """{train, val?, test?: (the dataset's own split name, the split)} from a DatasetDict's split names (a lone
    Dataset is the training split)."""
    if not hasattr(opened, "keys"):
        return {"train": (str(opened.split or "train"), opened)}
    found = {}
    for ours, names in SPLIT_NAMES.items():
        name = next((n for n in names if n in opened), None)
        if name is not None:
            found[ours] = (name, opened[name])
    if "train" not in found:
        raise CnnlabError(f"the dataset has splits {', '.join(opened)} but none called train: cnnlab trains on "
                          "`train` (and validates / tests on validation / test when present).")  # fmt: skip
    return found
