"""The user's own images: `root/<class>/*` or `root/{train,val,test}/<class>/*`.

Missing splits are seeded, stratified splits of `train`. Every image is decoded once to `image_size` and
`channels` into one uint8 tensor when that fits in `cache_max_gb`; otherwise files are decoded per batch by
DataLoader workers (same uint8 batches, so the model is the same either way). Unreadable files (and those refused:
a format cnnlab does not read, more pixels than `max_pixels`) are skipped with a warning that names them; an empty
class folder is an error. Only files inside `root` are read: a file or class folder whose real path lies outside it
(a symlink leading elsewhere) is left out, named in one log line.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from cnnlab.data.base import InMemoryDataModule
from cnnlab.data.checks import check_data
from cnnlab.data.images import IMAGE_SUFFIXES, MAX_PIXELS, decode_image, decode_many, log_outside, open_image
from cnnlab.data.splits import stratified_split
from cnnlab.errors import CnnlabError, Problems
from cnnlab.utils.files import inside, open_regular_file, real_root

log = logging.getLogger(__name__)
SPLIT_DIRS = ("train", "val", "test")


def list_classes(folder: Path, root: str | None = None, outside: list[Path] | None = None) -> dict[str, list[Path]]:
    """{class name: its image files}, one sub-folder per class, sorted by name. Only what lies inside `root` (a
    `real_root`; `folder`'s own by default): class folders and files leading outside it are left out, and added to
    `outside` when given."""
    root = real_root(folder) if root is None else root
    outside = [] if outside is None else outside
    classes = {}
    for class_dir in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if not inside(class_dir, root):
            outside.append(class_dir)
            continue
        files = sorted(f for f in class_dir.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        kept = [inside(f, root) for f in files]
        outside += [f for f, keep in zip(files, kept, strict=True) if not keep]
        classes[class_dir.name] = [f for f, keep in zip(files, kept, strict=True) if keep]
    return classes


class FileImages(Dataset):
    """Decodes one file per item (for data too large to cache). An unreadable file yields None, which
    `collate_readable` drops, so one bad file costs one sample, not the run."""

    def __init__(self, files: Sequence[Path], labels: torch.Tensor, channels: int, size: Sequence[int],
                 max_pixels: int = MAX_PIXELS) -> None:  # fmt: skip
        self.files, self.labels, self.channels, self.size = list(files), labels, channels, tuple(size)
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        try:
            return decode_image(self.files[index], self.channels, self.size, self.max_pixels), self.labels[index]
        except Exception as err:  # PIL raises many types for broken files
            log.warning("skipped unreadable file %s: %s: %s", self.files[index], type(err).__name__, err)
            return None


def checked_file_bytes(path: Path, max_pixels: int) -> bytes:
    """An image file's own bytes for a shard, when its header passes `open_image`'s checks (a listed format, at most
    `max_pixels`): cnnlab shards stores no file cnnlab would refuse to decode. Otherwise one error naming it."""
    try:
        with open_regular_file(path) as handle:
            data = handle.read()
        open_image(io.BytesIO(data), max_pixels).close()
    except (OSError, ValueError) as err:
        raise CnnlabError(
            f"{path} cannot be stored in shards ({type(err).__name__}: {err}): remove it from the "
            "image folder (cnnlab train skips it with a warning; shards hold only readable images)."
        ) from None
    return data


def collate_readable(items: list) -> tuple[torch.Tensor, torch.Tensor]:
    items = [item for item in items if item is not None]
    if not items:
        return torch.empty(0, dtype=torch.uint8), torch.empty(0, dtype=torch.long)
    return torch.stack([image for image, _ in items]), torch.stack([label for _, label in items])


def decoding_loader(dataset: Dataset, batch_size: int, shuffle: bool, num_workers: int) -> DataLoader:
    """Batches of a dataset that decodes per item (too large to cache): workers, unreadable items dropped, pinned."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, collate_fn=collate_readable,
                      num_workers=num_workers, pin_memory=torch.cuda.is_available(),
                      persistent_workers=num_workers > 0)  # fmt: skip


class ImageFolderDataModule(InMemoryDataModule):
    display_name = "image folder"

    def __init__(
        self,
        root: str,
        image_size: int | Sequence[int] = 64,
        channels: int = 3,
        test_fraction: float = 0.2,
        cache_max_gb: float = 4.0,
        num_workers: int = 4,
        max_pixels: int = MAX_PIXELS,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        problems = Problems()
        check_data(dict(channels=channels, test_fraction=test_fraction, cache_max_gb=cache_max_gb,
                        num_workers=num_workers, max_pixels=max_pixels), problems)  # fmt: skip
        problems.raise_if_any("invalid image_folder configuration")
        self.root = Path(root).expanduser()
        self.size = (int(image_size), int(image_size)) if isinstance(image_size, int) else tuple(image_size)
        self.channels, self.test_fraction = channels, test_fraction
        self.cache_max_gb, self.num_workers, self.max_pixels = cache_max_gb, num_workers, max_pixels
        self.streaming = False
        self.skipped = 0  # unreadable files left out when decoding into memory (streaming skips them per batch)

    # --- discovering the files ------------------------------------------------------------------------
    def _split_folders(self) -> dict[str, Path]:
        if not self.root.is_dir():
            raise CnnlabError(
                f"data.root={str(self.root)!r} is not a directory. Point it at a folder of class folders."
            )
        present = {name: self.root / name for name in SPLIT_DIRS if (self.root / name).is_dir()}
        present = {name: folder for name, folder in present.items() if inside(folder, real_root(self.root))}
        if not present:
            return {"train": self.root}
        if "train" not in present:
            raise CnnlabError(f"{self.root} has {', '.join(present)}/ but no train/ folder of class folders.")
        return present

    def _files(self) -> dict[str, tuple[list[Path], torch.Tensor]]:
        folders = self._split_folders()
        root, outside = real_root(self.root), []
        outside += [self.root / name for name in SPLIT_DIRS if (self.root / name).is_dir() and name not in folders]
        listed = {split: list_classes(folder, root, outside) for split, folder in folders.items()}
        if outside:  # named before any error below, which they may explain (a class folder left empty)
            log_outside(list(dict.fromkeys(outside)), f"data.root={str(self.root)!r}")
        train_classes = listed["train"]
        if not train_classes:
            raise CnnlabError(f"{folders['train']} holds no class folders: put each class's images in its own folder.")
        empty = [name for name, files in train_classes.items() if not files]
        if empty:
            raise CnnlabError(f"class folders with no images ({', '.join(IMAGE_SUFFIXES[:4])}, ...) in "
                              f"{folders['train']}: {', '.join(empty)}. Add images or remove them.")  # fmt: skip
        self.class_names = tuple(train_classes)
        splits = {}
        for split, folder in folders.items():
            classes = listed[split]
            unknown = sorted(set(classes) - set(self.class_names))
            if unknown:
                raise CnnlabError(f"{folder} has classes that train/ lacks: {', '.join(unknown)}.")
            files = [f for name in self.class_names for f in classes.get(name, [])]
            labels = [i for i, name in enumerate(self.class_names) for _ in classes.get(name, [])]
            splits[split] = (files, torch.tensor(labels, dtype=torch.long))
        return splits

    # --- loading --------------------------------------------------------------------------------------
    def _decode(self, split: str, files: list[Path], labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        images, good, errors = decode_many(files, self.channels, self.size, self.max_pixels)
        self._report(split, errors)
        keep = torch.tensor([f in set(good) for f in files], dtype=torch.bool) if errors else slice(None)
        empty = torch.empty(0, self.channels, *self.size, dtype=torch.uint8)
        return (torch.stack(images) if images else empty), labels[keep]

    def _report(self, split: str, errors: dict) -> None:
        if errors:
            names = "; ".join(f"{path}: {error}" for path, error in list(errors.items())[:20])
            log.warning("skipped %d unreadable file(s) in %s: %s", len(errors), split, names)  # one line: escaped
        self.skipped += len(errors)

    def load(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        splits = self._files()
        total = sum(len(files) for files, _ in splits.values())
        needed_gb = total * self.channels * self.size[0] * self.size[1] / 1e9
        self.streaming = needed_gb > self.cache_max_gb
        log.info("%s: %d images, %d classes, %s (%.2f GB at %dx%dx%d)", self.root, total, len(self.class_names),
                 "streamed from disk" if self.streaming else "cached in memory", needed_gb,
                 self.channels, *self.size)  # fmt: skip
        if self.folds and "val" in splits:  # k-fold: the folds are cut from train/ and val/ together
            (train_files, train_labels), (val_files, val_labels) = splits["train"], splits.pop("val")
            splits["train"] = (train_files + val_files, torch.cat([train_labels, val_labels]))
        if "test" not in splits:
            files, labels = splits["train"]
            rest, held = stratified_split(labels, self.test_fraction, self.seed + 1)
            splits["train"] = ([files[i] for i in rest], labels[rest])
            splits["test"] = ([files[i] for i in held], labels[held])
        if self.streaming:
            self._files_by_split = splits
            if "val" in splits:
                self.explicit_val = self._index_tensors(splits["val"])
            return self._index_tensors(splits["train"]) + self._index_tensors(splits["test"])
        if "val" in splits:
            self.explicit_val = self._decode("val", *splits["val"])
        return self._decode("train", *splits["train"]) + self._decode("test", *splits["test"])

    def _index_tensors(self, split: tuple[list[Path], torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Streaming: the 'images' tensor holds file indices; batches decode the files themselves."""
        files, labels = split
        return torch.arange(len(files)).view(-1, 1, 1, 1), labels

    # --- batches --------------------------------------------------------------------------------------
    def _describe(self, train_images: torch.Tensor):
        if not self.streaming:
            return super()._describe(train_images)
        files = self._files_by_split["train"][0][:512]  # statistics from a sample, not a pass over all the data
        images, _, _ = decode_many(files, self.channels, self.size, self.max_pixels)
        return super()._describe(torch.stack(images))

    def _split_files(self, split: str) -> list[Path]:
        """Streaming: the files of a split, in the order of its index tensor (val may be cut from train/)."""
        indices = getattr(self.splits, split)[0]
        source = "train" if split == "val" and "val" not in self._files_by_split else split
        all_files = self._files_by_split[source][0]
        return [all_files[i] for i in indices.flatten().tolist()]

    def stored_items(self, split: str) -> tuple[int, Callable[[int], bytes], torch.Tensor]:
        """Streaming: each file's own bytes (no decode and re-encode)."""
        if not self.streaming:
            return super().stored_items(split)
        files, labels = self._split_files(split), getattr(self.splits, split)[1]
        return len(labels), lambda i: checked_file_bytes(files[i], self.max_pixels), labels

    def _batches(self, split: str, train: bool):
        if not self.streaming:
            return super()._batches(split, train)
        if self.splits is None:
            self.setup()
        files, labels = self._split_files(split), getattr(self.splits, split)[1]
        return decoding_loader(FileImages(files, labels, self.channels, self.size, self.max_pixels),
                               self.batch_size if train else self.eval_batch_size, train, self.num_workers)  # fmt: skip
