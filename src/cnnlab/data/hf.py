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

import contextlib
import io
import logging
import os
import re
import socket
import stat
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlparse

import torch
from PIL import ExifTags, Image, ImageOps
from torch.utils.data import Dataset

from cnnlab.data.base import InMemoryDataModule
from cnnlab.data.checks import check_data
from cnnlab.data.image_folder import decoding_loader
from cnnlab.data.images import IMAGE_SUFFIXES, MAX_PIXELS, ImageRefused, image_to_tensor, open_image, png_bytes
from cnnlab.data.splits import stratified_split
from cnnlab.errors import CnnlabError, Problems
from cnnlab.utils.files import RefusedFile, file_kind, inside, open_regular_file, read_json, real_root

log = logging.getLogger(__name__)
SPLIT_NAMES = {"train": ("train",), "val": ("validation", "valid", "val", "dev"), "test": ("test",)}
HUB_PROBE_SECONDS = 3.0
URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:/")  # http://, https://, hf://, s3://, file:/, zip://...: never fetched
PROBE_ROWS = 16  # the first readable of these training rows gives the channels and size when they are not configured


class CellImages:
    """Decodes Hugging Face image cells (`{'bytes', 'path'}` of an `Image(decode=False)` column, or plain bytes or a
    path) as `datasets`' own Image feature would (EXIF orientation applied, converted to the feature's `mode`), but
    only from what the dataset holds: embedded bytes, or a regular file under one of `roots` (a relative path is taken
    relative to the first). Raises ImageRefused (a ValueError) naming the path and the reason, OSError for a file that
    cannot be read. Picklable, for DataLoader workers."""

    def __init__(self, roots: Sequence[str | Path], where: str, max_pixels: int = MAX_PIXELS,
                 mode: str | None = None) -> None:  # fmt: skip
        self.roots = tuple(real_root(root) for root in roots)
        self.where, self.max_pixels, self.mode = where, max_pixels, mode

    @contextlib.contextmanager
    def image(self, cell: Any) -> Iterator[Image.Image]:
        """The cell's image, decoded (after the header's checks)."""
        data, path = cell_parts(cell)
        with contextlib.ExitStack() as stack:
            source = io.BytesIO(data) if data is not None else stack.enter_context(self._open(path))
            image = stack.enter_context(open_image(source, self.max_pixels))
            image.load()
            if image.getexif().get(ExifTags.Base.Orientation) is not None:
                image = stack.enter_context(ImageOps.exif_transpose(image))
            if self.mode and self.mode != image.mode:
                image = stack.enter_context(image.convert(self.mode))
            yield image

    def decode(self, cell: Any, channels: int, size: Sequence[int]) -> torch.Tensor:
        """uint8 (channels, H, W) of the cell."""
        with self.image(cell) as image:
            return image_to_tensor(image, channels, size)

    def _open(self, path: str) -> IO[bytes]:
        if URL.match(path) or "::" in path:
            raise ImageRefused(f"path {path!r} is a URL: cnnlab fetches nothing a dataset names (embed the image "
                               "bytes in the dataset instead)")  # fmt: skip
        full = path if os.path.isabs(path) or not self.roots else os.path.join(self.roots[0], path)
        if not any(inside(full, root) for root in self.roots):
            raise ImageRefused(f"path {path!r} leads outside {self.where} (to {os.path.realpath(full)}): cnnlab reads "
                               "only the dataset's own files")  # fmt: skip
        try:
            return open_regular_file(full)
        except RefusedFile as err:
            raise ImageRefused(f"path {path!r} is {err}") from None


def cell_parts(cell: Any) -> tuple[bytes | None, str | None]:
    """(embedded bytes, None) or (None, path) of an image cell; ImageRefused for a cell that holds neither."""
    if isinstance(cell, dict):
        data, path = cell.get("bytes"), cell.get("path")
    elif isinstance(cell, bytes | bytearray | memoryview):
        data, path = cell, None
    elif isinstance(cell, str):
        data, path = None, cell
    else:
        raise ImageRefused(f"the cell is {'empty' if cell is None else f'a {type(cell).__name__}'}, not an image's "
                           "bytes or path")  # fmt: skip
    if data is not None:
        return bytes(data), None
    if not isinstance(path, str) or not path:
        raise ImageRefused("the cell holds neither image bytes nor a path")
    return None, path


def _reason(err: Exception) -> str:
    return f"{type(err).__name__}: {err}"


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
            log.warning("skipped unreadable row %d of %s: %s", named, self.split_name, _reason(err))
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
            _check_disk_folder(path)
        elif path.is_dir():
            _check_folder(path)
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
                reasons.append(f"row {row} of {own_name}: {_reason(err)}")
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
                errors[f"row {int(origin[1][row])} of {origin[0]}"] = _reason(err)
        if errors:
            names = "\n  ".join(f"{where}: {error}" for where, error in list(errors.items())[:20])
            more = f"\n  ... and {len(errors) - 20} more" if len(errors) > 20 else ""
            log.warning("skipped %d unreadable row(s) of %s:\n  %s%s", len(errors), self.display_name, names, more)
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
                                  f"{_reason(err)}") from None  # fmt: skip

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


def _plain_name(name: Any) -> bool:
    """A file or folder name that stays in its folder: no separator, not . or .., not empty."""
    return isinstance(name, str) and name not in ("", ".", "..") and not any(c in name for c in "/\\\0")


def _check_disk_folder(path: Path) -> None:
    """A save_to_disk folder names its own files: dataset_dict.json its splits' folders, each split's state.json its
    Arrow files. Each must be a plain name of a regular file (a folder) inside `path`, checked before `datasets`
    opens any of them (`../elsewhere.arrow` is refused by name, a FIFO or a link leading out by what it is)."""
    root, problems = real_root(path), []

    def regular(file: Path) -> bool:
        if not inside(file, root):
            problems.append(f"{file} leads outside data.path (to {os.path.realpath(file)})")
            return False
        try:
            mode = os.stat(file).st_mode
        except OSError as err:
            problems.append(f"{file}: {err.strerror or err}")
            return False
        if not stat.S_ISREG(mode):
            problems.append(f"{file} is {file_kind(mode)}, not a regular file")
        return stat.S_ISREG(mode)

    def json_of(file: Path) -> Any:
        if not regular(file):
            return None
        try:
            return read_json(file)
        except Exception as err:  # unreadable, not JSON, nested past the recursion limit
            problems.append(f"{file} is not readable JSON ({_reason(err)})")
            return None

    def check_dataset(folder: Path) -> None:
        state = json_of(folder / "state.json")
        if (folder / "dataset_info.json").exists() or os.path.islink(folder / "dataset_info.json"):
            regular(folder / "dataset_info.json")
        files = state.get("_data_files") if isinstance(state, dict) else None
        if state is not None and not isinstance(files, list):
            problems.append(f"{folder / 'state.json'} lists no _data_files")
        for entry in files or []:
            name = entry.get("filename") if isinstance(entry, dict) else entry
            if not _plain_name(name):
                problems.append(f"{folder / 'state.json'} names the data file {name!r}: not a plain file name in its "
                                "folder")  # fmt: skip
            else:
                regular(folder / name)

    if os.path.lexists(path / "dataset_dict.json"):
        top = json_of(path / "dataset_dict.json")
        splits = top.get("splits") if isinstance(top, dict) else None
        if top is not None and not isinstance(splits, list):
            problems.append(f"{path / 'dataset_dict.json'} lists no splits")
        for split in splits or []:
            if not _plain_name(split):
                problems.append(f"{path / 'dataset_dict.json'} names the split {split!r}: not a plain folder name in "
                                "data.path")  # fmt: skip
            elif not inside(path / split, root):
                problems.append(f"{path / split} leads outside data.path (to {os.path.realpath(path / split)})")
            elif not (path / split).is_dir():
                problems.append(f"{path / split}: the split's folder is missing")
            else:
                check_dataset(path / split)
    elif os.path.lexists(path / "state.json"):
        check_dataset(path)
    if problems:
        raise CnnlabError(f"data.path={str(path)!r} is a save_to_disk folder cnnlab will not read (it reads only "
                          "regular files inside it, named plainly):\n  " + "\n  ".join(problems[:20]))  # fmt: skip


def _check_folder(path: Path) -> None:
    """A parquet or image folder: what `datasets` may open itself (its parquet files; an image folder's metadata files
    and archives: any file not named as an image) must be regular files inside `path`. Image files are left to the
    cells' own checks (a link leading out or a FIFO costs its row, named, not the run)."""
    root, problems = real_root(path), []
    for folder, dirs, files in os.walk(path):
        for name in dirs:
            full = os.path.join(folder, name)
            if os.path.islink(full) and not inside(full, root):
                problems.append(f"{full} is a link to a folder outside data.path ({os.path.realpath(full)})")
        for name in files:
            full = os.path.join(folder, name)
            if name.lower().endswith(IMAGE_SUFFIXES):  # read only as a cell names it, with the cell's checks
                continue
            if not inside(full, root):
                problems.append(f"{full} leads outside data.path (to {os.path.realpath(full)})")
                continue
            with contextlib.suppress(OSError):  # a dangling link: nothing to read
                mode = os.stat(full).st_mode
                if not stat.S_ISREG(mode):
                    problems.append(f"{full} is {file_kind(mode)}, not a regular file")
    if problems:
        raise CnnlabError(f"data.path={str(path)!r} holds files cnnlab will not let `datasets` open (it reads only "
                          "regular files inside data.path); remove them:\n  " + "\n  ".join(problems[:20]))  # fmt: skip
