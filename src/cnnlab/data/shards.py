"""Data that outgrows one machine: LitData shards. `write_shards` turns any of cnnlab's datasets into LitData chunks
(one folder per split, PNG or the original file bytes per item, local or `s3://`), with `cnnlab.json` beside them
holding the class names, image geometry and statistics; `StreamingDataModule` trains from them with LitData's
`StreamingDataset` / `StreamingDataLoader`: sharded across DDP ranks and nodes, decoded in the loader's workers,
augmented on the device like every other dataset, and resumable mid-epoch (the loader's state is saved in
Lightning's checkpoints; `cnnlab.callbacks.Resumable` restores it).

A shards folder is hostile input (anyone may have made it), and LitData acts on what its `index.json` says: the
serializer of each field (`pickle` runs code when an item is read), the chunk file names (paths it opens), the
compression. So each split's index.json is read first and accepted only when it is what `write_shards` writes
(`check_index`); cnnlab.json only with values that describe real images (`read_meta`); every LitData serializer
cnnlab does not write is replaced by one that refuses (`LOCKED_SERIALIZERS`), should the index change after the
check; and each item's bytes are decoded only by `decode_image_bytes` (the listed formats, a pixel limit checked
before decoding), an unreadable item skipped by name like an unreadable file of an image folder.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import stat
from collections.abc import Callable, Mapping
from numbers import Integral
from pathlib import Path
from typing import Any, NamedTuple

import lightning as L
import torch
from litdata import StreamingDataLoader, StreamingDataset, optimize
from litdata.streaming.serializers import _SERIALIZERS, Serializer

from cnnlab.data.augment import Augment, augment_if_training
from cnnlab.data.base import InMemoryDataModule
from cnnlab.data.checks import check_data
from cnnlab.data.image_folder import collate_readable
from cnnlab.data.images import MAX_PIXELS, decode_image_bytes
from cnnlab.data.info import DataInfo
from cnnlab.errors import CnnlabError, Problems, is_int, is_number
from cnnlab.utils.files import MAX_METADATA_BYTES, inside, read_json, real_root
from cnnlab.utils.io import UnsafeFileError, write_json_atomic

log = logging.getLogger(__name__)
META = "cnnlab.json"
INDEX = "index.json"
SPLITS = ("train", "val", "test")
SHARDS_FORMAT = "cnnlab shards 1"


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


def _leads_out(path: Path) -> str | None:
    """Where `path` really is, when that is not the folder it is named in (a symlink leading out), else None."""
    return None if inside(path, real_root(path.parent)) else os.path.realpath(path)


def _read_json(location: str) -> Any:
    """A small JSON file, local or through fsspec (`s3://...`); a local one a regular file of the folder it is named
    in (a FIFO would hang the read, a link could show another file's values in an error)."""
    if "://" not in location:
        return read_json(location, root=Path(location).parent)
    import fsspec  # lazy: as in _write_meta

    with fsspec.open(location, "rb") as handle:
        data = handle.read(MAX_METADATA_BYTES + 1)
    if len(data) > MAX_METADATA_BYTES:
        raise ValueError(f"over {MAX_METADATA_BYTES:,} bytes")
    return json.loads(data)


def _bad(key: str, value: Any, allowed: str) -> str:
    """One problem line; the value shortened, since a hostile file's value may be megabytes long."""
    shown = repr(value)
    shown = shown if len(shown) <= 160 else f"{shown[:160]}... ({len(shown):,} characters)"
    return f"{key}={shown}: {allowed}"


def _refuse(location: str, problems: list[str], what: str, nothing: str) -> None:
    if problems:
        lines = "\n".join(f"  - {problem}" for problem in problems)
        raise UnsafeFileError(f"{location} was refused: {what}:\n{lines}\n{nothing} Rewrite the shards from the "
                              "source data with `cnnlab-optimize data=<dataset> output_dir=<folder>`, and train only "
                              "from shards you made or trust.")  # fmt: skip


# --- cnnlab.json: its values size the model and every decoded image ---------------------------------------------------
def read_meta(input_dir: str) -> dict[str, Any]:
    """`cnnlab.json` of a shards folder, its values checked (they size the model, and image_size is the size every
    item is decoded to), or an error saying how to make one."""
    location = f"{input_dir.rstrip('/')}/{META}"
    try:
        meta = _read_json(location)
    except (OSError, ValueError, ImportError) as err:
        raise CnnlabError(
            f"data.input_dir={input_dir!r} holds no readable {META} ({type(err).__name__}: {err}): it is not a folder "
            "written by `cnnlab-optimize`. Make one with `cnnlab-optimize data=<any dataset> output_dir=<folder>`."
        ) from None
    _refuse(location, meta_problems(meta), "it does not describe shards that cnnlab-optimize writes",
            "Nothing in the folder was decoded.")  # fmt: skip
    return meta


def meta_problems(meta: Any) -> list[str]:
    """What is wrong with a cnnlab.json, one line per key (keys cnnlab does not read are ignored)."""
    if not isinstance(meta, dict):
        return [_bad("(the file)", type(meta).__name__, "cnnlab writes a JSON object")]
    names, chans, size, counts = (meta.get(k) for k in ("class_names", "in_chans", "image_size", "counts"))
    checks = [
        ("format", meta.get("format") == SHARDS_FORMAT, repr(SHARDS_FORMAT)),
        ("name", isinstance(meta.get("name"), str), "a string"),
        ("class_names", isinstance(names, list) and bool(names) and all(isinstance(n, str) for n in names),
         "a non-empty list of strings, one per class in label order"),
        ("in_chans", is_int(chans) and chans in (1, 3), "1 (grey) or 3 (RGB)"),
        ("image_size", isinstance(size, list) and len(size) == 2 and all(is_int(s) and s >= 1 for s in size)
         and size[0] * size[1] <= MAX_PIXELS, f"[height, width], integers >= 1, at most {MAX_PIXELS:,} pixels"),
        ("mean", _stats_ok(meta.get("mean"), chans, 0.0), "finite numbers in [0, 1], one per channel (or one)"),
        ("std", _stats_ok(meta.get("std"), chans, None), "finite numbers in (0, 1], one per channel (or one)"),
        ("counts", isinstance(counts, dict) and set(counts) == set(SPLITS)
         and all(is_int(c) and c >= 0 for c in counts.values()), "{train, val, test}: items per split, integers >= 0"),
    ]  # fmt: skip
    if "num_classes" in meta:
        count = len(names) if isinstance(names, list) else "?"
        checks.append(("num_classes", meta["num_classes"] == count and is_int(count), f"len(class_names) = {count}"))
    return [_bad(key, meta.get(key), allowed) for key, ok, allowed in checks if not ok]


def _stats_ok(values: Any, channels: Any, low: float | None) -> bool:
    """Per-channel statistics in 0..1: `low` None means strictly positive (a std)."""
    lengths = {1, channels} if is_int(channels) else {1}
    return (
        isinstance(values, list)
        and len(values) in lengths
        and all(is_number(v) and v <= 1 and (v > 0 if low is None else v >= low) for v in values)
    )


# --- index.json: LitData runs what it names, so only what write_shards writes is accepted -------------------------
class Accepts(NamedTuple):
    """What cnnlab accepts for one field of index.json, and how the message says it."""

    ok: Callable[[Any], bool]
    allowed: str
    required: bool = True


def _is(expected: Any) -> Callable[[Any], bool]:
    return lambda value: value == expected and type(value) is type(expected)


def _count(low: int) -> Callable[[Any], bool]:
    return lambda value: is_int(value) and value >= low


def _null_or_count(value: Any) -> bool:
    return value is None or (is_int(value) and value >= 1)


_LEAF = {"type": None, "context": None, "children_spec": []}
# One item of write_shards (`_item`): {"index": int, "image": the image file's bytes, "label": int}, as LitData
# 0.2's writer describes it: a flat dict (pytree protocol 1) of three leaves, each with its serializer's name.
ITEM_FORMAT = ["int", "bytes", "int"]
ITEM_SPEC = [1, {"type": "builtins.dict", "context": json.dumps(["index", "image", "label"]),
                 "children_spec": [_LEAF, _LEAF, _LEAF]}]  # fmt: skip
ITEM_TYPES = {"image": "bytes", "index": "int", "label": "int"}
CHUNK_NAME = re.compile(r"chunk-[0-9]{1,9}-[0-9]{1,9}\.bin")  # chunk-<worker>-<n>.bin: a plain name, no path
UPDATED_AT = re.compile(r"[0-9]{1,20}(\.[0-9]{1,20})?")  # a timestamp: LitData makes it a folder of its cache

TOP_FIELDS = {
    "chunks": Accepts(lambda v: isinstance(v, list) and bool(v), "a non-empty list of chunks"),
    "config": Accepts(lambda v: isinstance(v, dict), "an object"),
    "updated_at": Accepts(lambda v: isinstance(v, str) and UPDATED_AT.fullmatch(v) is not None,
                          "a timestamp of digits (LitData names a cache folder with it)", required=False),
}  # fmt: skip
CONFIG_FIELDS = {
    "data_format": Accepts(_is(ITEM_FORMAT), f"{ITEM_FORMAT} (index, image file bytes, label: no pickle, no other "
                                             "serializer)"),
    "data_spec": Accepts(lambda v: isinstance(v, str) and _json_or_none(v) == ITEM_SPEC,
                         f"the item {{'index', 'image', 'label'}} as a flat dict: {json.dumps(ITEM_SPEC)!r}"),
    "types": Accepts(_is(ITEM_TYPES), str(ITEM_TYPES), required=False),
    "compression": Accepts(_is(None), "null (cnnlab writes uncompressed chunks)"),
    "compression_level": Accepts(_is(None), "null", required=False),
    "compression_batch_size": Accepts(_is(None), "null", required=False),
    "ipc_compression": Accepts(_is(None), "null", required=False),
    "encryption": Accepts(_is(None), "null (cnnlab writes unencrypted chunks)", required=False),
    "item_loader": Accepts(_is("PyTreeLoader"), "'PyTreeLoader'", required=False),
    "chunk_bytes": Accepts(_null_or_count, "null or an integer >= 1", required=False),
    "chunk_size": Accepts(_null_or_count, "null or an integer >= 1", required=False),
}  # fmt: skip
CHUNK_FIELDS = {
    "filename": Accepts(lambda v: isinstance(v, str) and CHUNK_NAME.fullmatch(v) is not None,
                        "a plain file name chunk-<worker>-<n>.bin in the split's folder (no path, no '..', no '/')"),
    "chunk_size": Accepts(_count(1), "the chunk's number of items, an integer >= 1"),
    "chunk_bytes": Accepts(_count(1), "the chunk file's size in bytes, an integer >= 1"),
    "dim": Accepts(_is(None), "null", required=False),
}  # fmt: skip


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _field_problems(values: Mapping[str, Any], fields: Mapping[str, Accepts], prefix: str) -> list[str]:
    """Each field of `values` against `fields`: unknown fields are refused too (LitData may act on them)."""
    problems = [_bad(f"{prefix}{key}", value, f"not a field cnnlab writes ({', '.join(fields)})")
                for key, value in values.items() if key not in fields]  # fmt: skip
    for key, accepts in fields.items():
        if key in values and not accepts.ok(values[key]):
            problems.append(_bad(f"{prefix}{key}", values[key], f"cnnlab accepts {accepts.allowed}"))
        elif key not in values and accepts.required:
            problems.append(f"{prefix}{key} is missing: cnnlab writes {accepts.allowed}")
    return problems


def index_problems(index: Any, expected_items: int | None = None) -> list[str]:
    """What is wrong with an index.json's fields, one line each (no file is opened)."""
    if not isinstance(index, dict):
        return [_bad("(the file)", type(index).__name__, "cnnlab writes a JSON object")]
    problems = _field_problems(index, TOP_FIELDS, "")
    if isinstance(index.get("config"), dict):
        problems += _field_problems(index["config"], CONFIG_FIELDS, "config.")
    chunks = index.get("chunks") if isinstance(index.get("chunks"), list) else []
    for number, chunk in enumerate(chunks):
        if isinstance(chunk, dict):
            problems += _field_problems(chunk, CHUNK_FIELDS, f"chunks[{number}].")
        else:
            problems.append(_bad(f"chunks[{number}]", chunk, "an object {filename, chunk_size, chunk_bytes, dim}"))
    if not problems and expected_items is not None:
        total = sum(chunk["chunk_size"] for chunk in chunks)
        if total != expected_items:
            problems.append(_bad("chunks[*].chunk_size", total, f"in all, the split's count in {META} "
                                                                f"({expected_items})"))  # fmt: skip
    return problems


def chunk_file_problems(folder: Path, chunks: list[dict[str, Any]]) -> list[str]:
    """Local chunks, each a regular file of the split's folder of the size the index says: a symlink out of the
    folder, a FIFO or a device is refused (LitData would open it), and so is a short file (it would wait for it)."""
    problems = []
    for number, chunk in enumerate(chunks):
        path, key = folder / chunk["filename"], f"chunks[{number}].filename"
        if outside := _leads_out(path):
            problems.append(_bad(key, chunk["filename"], f"it leads out of the split's folder, to {outside}"))
            continue
        try:
            info = os.stat(path)
        except OSError as err:
            problems.append(_bad(key, chunk["filename"], f"no such readable file ({type(err).__name__}: {err})"))
            continue
        if not stat.S_ISREG(info.st_mode):
            problems.append(_bad(key, chunk["filename"], "not a regular file (a FIFO, device or folder)"))
        elif info.st_size != chunk["chunk_bytes"]:
            problems.append(_bad(f"chunks[{number}].chunk_bytes", chunk["chunk_bytes"],
                                 f"the file's size ({info.st_size} bytes)"))  # fmt: skip
    return problems


def check_index(split_dir: str, expected_items: int | None = None) -> dict[str, Any]:
    """A split's index.json, read (locally or through fsspec) before LitData opens anything, and returned only when
    it is what write_shards writes: anything else is refused by name in one error."""
    location = f"{split_dir.rstrip('/')}/{INDEX}"
    try:
        if "://" not in split_dir and (outside := _leads_out(Path(split_dir))):
            raise OSError(f"{split_dir} is a link leading out of the shards folder, to {outside}")
        index = _read_json(location)
    except (OSError, ValueError, ImportError) as err:
        raise CnnlabError(f"{location} is not readable ({type(err).__name__}: {err}): {split_dir} is not a split "
                          "written by `cnnlab-optimize`. Make the shards with `cnnlab-optimize data=<any dataset> "
                          "output_dir=<folder>`.") from None  # fmt: skip
    problems = index_problems(index, expected_items)
    if not problems and "://" not in split_dir:
        problems = chunk_file_problems(Path(split_dir), index["chunks"])
    _refuse(location, problems, "it is not what cnnlab-optimize writes, and LitData acts on what an index names (a "
            "serializer such as pickle runs code when an item is read; a chunk's name is a path it opens)",
            "Nothing in the folder was decoded or run.")  # fmt: skip
    return index


class RefusedSerializer(Serializer):
    """Stands in for each LitData serializer cnnlab does not write (pickle runs code; the others decode formats cnnlab
    never stores), so an index.json changed after `check_index` still cannot have an item unpickled."""

    def __init__(self, name: str) -> None:
        self.name = name

    def serialize(self, data: Any) -> tuple[bytes, str | None]:
        raise UnsafeFileError(f"cnnlab writes no {self.name!r} fields in shards")

    def deserialize(self, data: bytes) -> Any:
        raise UnsafeFileError(f"a shard item has a {self.name!r} field: cnnlab reads only {ITEM_FORMAT} fields, and "
                              "decoded nothing of it. Rewrite the shards with `cnnlab-optimize`.")  # fmt: skip

    def can_serialize(self, data: Any) -> bool:
        return False


LOCKED_SERIALIZERS = {name: RefusedSerializer(name) for name in _SERIALIZERS if name not in ITEM_FORMAT}


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
                              "damaged. Rewrite the shards with `cnnlab-optimize`.") from err  # fmt: skip
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
    """Trains from `cnnlab-optimize`'s shards: `input_dir` (a folder or `s3://` URI) with train/, val/, test/."""

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
            same = _read_json(used) == index
        except (OSError, ValueError) as err:
            same, used = False, f"{used} ({type(err).__name__}: {err})"
        if not same:
            raise UnsafeFileError(f"{split_dir}/{INDEX} was refused: the index LitData would read, {used}, is not the "
                                  "one cnnlab checked (it changed while being read). Nothing was decoded or run. "
                                  "Rewrite the shards with `cnnlab-optimize`.")  # fmt: skip
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
