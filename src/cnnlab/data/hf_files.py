"""What a Hugging Face dataset may make cnnlab open: its image cells, decoded by cnnlab itself (`CellImages`: embedded
bytes, or a regular file inside the dataset's own folder - never a URL, a file elsewhere, a FIFO or a device), and the
files `datasets` opens of a local folder (`check_disk_folder`, `check_folder`: plain names of regular files inside
it). Every cell and file is hostile input: anyone may have made the dataset.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import torch
from PIL import ExifTags, Image, ImageOps

from cnnlab.data.images import IMAGE_SUFFIXES, MAX_PIXELS, ImageRefused, image_to_tensor, open_image
from cnnlab.errors import CnnlabError
from cnnlab.utils.files import RefusedFile, file_kind, inside, open_regular_file, read_json, real_root

URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:/")  # http://, https://, hf://, s3://, file:/, zip://...: never fetched


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


def reason_of(err: Exception) -> str:
    return f"{type(err).__name__}: {err}"


def plain_name(name: Any) -> bool:
    """A file or folder name that stays in its folder: no separator, not . or .., not empty."""
    return isinstance(name, str) and name not in ("", ".", "..") and not any(c in name for c in "/\\\0")


def check_disk_folder(path: Path) -> None:
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
            problems.append(f"{file} is not readable JSON ({reason_of(err)})")
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
            if not plain_name(name):
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
            if not plain_name(split):
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


def check_folder(path: Path) -> None:
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
