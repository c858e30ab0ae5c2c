"""What a shards folder may say before LitData reads it. A shards folder is hostile input (anyone may have made it),
and LitData acts on what its `index.json` says: the serializer of each field (`pickle` runs code when an item is read),
the chunk file names (paths it opens), the compression. So each split's index.json is accepted only when it is what
`cnnlab.data.shards.write_shards` writes (`check_index`), cnnlab.json only with values that describe real images
(`read_meta`), and every LitData serializer cnnlab does not write is replaced by one that refuses
(`LOCKED_SERIALIZERS`), should the index change after the check.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from litdata.streaming.serializers import _SERIALIZERS, Serializer

from cnnlab.data.images import MAX_PIXELS
from cnnlab.errors import CnnlabError, is_int, is_number
from cnnlab.utils.files import MAX_METADATA_BYTES, inside, read_json, real_root
from cnnlab.utils.io import UnsafeFileError

META = "cnnlab.json"
INDEX = "index.json"
SPLITS = ("train", "val", "test")
SHARDS_FORMAT = "cnnlab shards 1"


def _leads_out(path: Path) -> str | None:
    """Where `path` really is, when that is not the folder it is named in (a symlink leading out), else None."""
    return None if inside(path, real_root(path.parent)) else os.path.realpath(path)


def read_json_at(location: str) -> Any:
    """A small JSON file, local or through fsspec (`s3://...`); a local one a regular file of the folder it is named
    in (a FIFO would hang the read, a link could show another file's values in an error)."""
    if "://" not in location:
        return read_json(location, root=Path(location).parent)
    import fsspec  # lazy: remote metadata only (s3fs must be installed for s3://)

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
                              "source data with `cnnlab shards data=<dataset> output_dir=<folder>`, and train only "
                              "from shards you made or trust.")  # fmt: skip


# --- cnnlab.json: its values size the model and every decoded image ---------------------------------------------------
def read_meta(input_dir: str) -> dict[str, Any]:
    """`cnnlab.json` of a shards folder, its values checked (they size the model, and image_size is the size every
    item is decoded to), or an error saying how to make one."""
    location = f"{input_dir.rstrip('/')}/{META}"
    try:
        meta = read_json_at(location)
    except (OSError, ValueError, ImportError) as err:
        raise CnnlabError(
            f"data.input_dir={input_dir!r} holds no readable {META} ({type(err).__name__}: {err}): it is not a folder "
            "written by `cnnlab shards`. Make one with `cnnlab shards data=<any dataset> output_dir=<folder>`."
        ) from None
    _refuse(location, meta_problems(meta), "it does not describe shards that cnnlab shards writes",
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
        index = read_json_at(location)
    except (OSError, ValueError, ImportError) as err:
        raise CnnlabError(f"{location} is not readable ({type(err).__name__}: {err}): {split_dir} is not a split "
                          "written by `cnnlab shards`. Make the shards with `cnnlab shards data=<any dataset> "
                          "output_dir=<folder>`.") from None  # fmt: skip
    problems = index_problems(index, expected_items)
    if not problems and "://" not in split_dir:
        problems = chunk_file_problems(Path(split_dir), index["chunks"])
    _refuse(location, problems, "it is not what cnnlab shards writes, and LitData acts on what an index names (a "
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
                              "decoded nothing of it. Rewrite the shards with `cnnlab shards`.")  # fmt: skip

    def can_serialize(self, data: Any) -> bool:
        return False


LOCKED_SERIALIZERS = {name: RefusedSerializer(name) for name in _SERIALIZERS if name not in ITEM_FORMAT}
