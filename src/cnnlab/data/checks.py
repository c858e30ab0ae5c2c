"""The rules for `data.*`: checked before any data is loaded, and by the DataModules on their own arguments, so
the Python API gets the same answers as the command line."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cnnlab.data.augment_config import AUGMENT_KEYS, NUM_BINS, POLICIES
from cnnlab.errors import Problems, is_int, is_number


def check_data(values: Mapping[str, Any], problems: Problems) -> None:
    """The keys present in `values` (a data config, or a DataModule's own arguments)."""
    if "batch_size" in values:
        problems.int_at_least("data.batch_size", values["batch_size"], 1)
    if "eval_batch_size" in values:
        problems.int_at_least("data.eval_batch_size", values["eval_batch_size"], 1, null_ok=True,
                              note=" (null = batch_size)")  # fmt: skip
    if "val_fraction" in values:
        problems.in_range("data.val_fraction", values["val_fraction"], 0, 1, "()")
    if "train_size" in values:
        problems.int_at_least("data.train_size", values["train_size"], 1, null_ok=True, note=" (null = all)")
    data_dir = values.get("data_dir")
    if data_dir is not None and Path(data_dir).expanduser().exists() and not Path(data_dir).expanduser().is_dir():
        problems.add(f"data.data_dir={str(data_dir)!r} is a file: it must be a directory holding <Dataset>/raw/.")
    if "test_fraction" in values:
        problems.in_range("data.test_fraction", values["test_fraction"], 0, 1, "()")
    if "channels" in values:
        from_images = "image_column" in values  # data=hf: null takes the channels from the images
        ok = values["channels"] in (1, 3) or (from_images and values["channels"] is None)
        problems.check(ok, "data.channels", values["channels"], ("null (from the images), " if from_images else "")
                       + "1 (grey) or 3 (RGB)")  # fmt: skip
    if "image_column" in values:
        _check_hf_source(values, problems)
    if "cache_max_gb" in values:
        ok = is_number(values["cache_max_gb"]) and values["cache_max_gb"] >= 0
        problems.check(ok, "data.cache_max_gb", values["cache_max_gb"], "a number >= 0 (0 = always stream from disk)")
    if "num_workers" in values:
        problems.int_at_least("data.num_workers", values["num_workers"], 0)
    if "max_pixels" in values:  # data=image_folder, data=hf: the most pixels one image may declare
        problems.int_at_least("data.max_pixels", values["max_pixels"], 1,
                              note=" (pixels; a larger image is skipped, never decoded)")  # fmt: skip
    for key in ("mean", "std"):  # data=torchvision's published statistics
        if values.get(key) is not None:
            stats = values[key]
            ok = isinstance(stats, Sequence) and not isinstance(stats, str) and len(stats) in (1, 3)
            ok = ok and all(is_number(v) and (v > 0 if key == "std" else 0 <= v <= 1) for v in stats)
            problems.check(ok, f"data.{key}", stats, "null (measured) or 1 or 3 numbers "
                           + ("> 0" if key == "std" else "in [0, 1]"))  # fmt: skip
    if "max_cache_size" in values:
        check_byte_size("data.max_cache_size", values["max_cache_size"], problems)
    if "input_dir" in values:
        ok = isinstance(values["input_dir"], str) and values["input_dir"] not in ("", "???")
        problems.check(ok, "data.input_dir", values["input_dir"], "required: the folder (or s3:// URI) that "
                       "cnnlab shards wrote, e.g. data.input_dir=/data/fashion_shards")  # fmt: skip
    if "root" in values:
        _check_readable_dir(problems, "data.root", values["root"], "a folder of class folders (or train/, val/, test/)")
    if values.get("augment") is not None:
        check_augment(values["augment"], problems)
    if values.get("folds") is not None:
        problems.int_at_least("data.folds", values["folds"], 2, null_ok=True, note=" (k of k-fold; null = no folds)")
        folds, fold = values["folds"], values.get("fold", 0)
        ok = is_int(fold) and is_int(folds) and 0 <= fold < folds
        problems.check(ok, "data.fold", fold, f"an integer in 0 .. data.folds-1 = {folds!r} - 1 (which fold validates)")
    if "on_device" in values:
        problems.check(values["on_device"] in ("auto", True, False), "data.on_device", values["on_device"],
                       "auto (on the GPU when training on one), true or false")  # fmt: skip


def check_augment(values: Any, problems: Problems) -> None:
    """`data.augment`: null, or a mapping of the keys of `cnnlab.data.augment_config.AugmentConfig`."""
    if not isinstance(values, Mapping):
        problems.add(f"data.augment={values!r}: must be null or a mapping such as {{translate: 2, hflip: true}}.")
        return
    for key in values:
        known = key in AUGMENT_KEYS
        problems.check(known, f"data.augment.{key}", values[key], "one of the keys " + ", ".join(AUGMENT_KEYS))
    if "translate" in values:
        problems.int_at_least("data.augment.translate", values["translate"], 0, note=" (pixels)")
    if "hflip" in values:
        problems.flag("data.augment.hflip", values["hflip"])
    if "erase" in values:
        problems.in_range("data.augment.erase", values["erase"], 0, 1, "[]")
    for key, low, high in (("erase_area", 0, 1), ("erase_ratio", 0, math.inf)):
        pair = values.get(key)
        if pair is None:
            continue
        ok = isinstance(pair, Sequence) and len(pair) == 2 and all(is_number(v) for v in pair)
        ok = ok and low < pair[0] <= pair[1] and pair[1] <= high
        problems.check(ok, f"data.augment.{key}", pair, f"[low, high] with {low} < low <= high <= {high}")
    problems.one_of("data.augment.policy", values.get("policy"), (None, *POLICIES))
    problems.int_at_least("data.augment.policy_ops", values.get("policy_ops", 2), 1)
    problems.check(is_int(values.get("policy_magnitude", 9)) and 0 <= values.get("policy_magnitude", 9) < NUM_BINS,
                   "data.augment.policy_magnitude", values.get("policy_magnitude"),
                   f"a bin 0..{NUM_BINS - 1} (randaugment; torchvision's default 9)")  # fmt: skip
    fill = values.get("fill", 0)
    fills = list(fill) if isinstance(fill, Sequence) and not isinstance(fill, str) else [fill]
    ok = bool(fills) and all(is_int(v) and 0 <= v <= 255 for v in fills)
    problems.check(ok, "data.augment.fill", fill, "an integer 0..255, or one per channel")


BYTE_SIZE = re.compile(r"^\d+(\.\d+)?\s*(B|KB|MB|GB|TB)$", re.IGNORECASE)


def check_byte_size(key: str, value: Any, problems: Problems) -> None:
    """A size LitData reads: an integer number of bytes or a string such as 64MB, 10GB."""
    ok = (is_int(value) and value >= 1) or (isinstance(value, str) and BYTE_SIZE.match(value.strip()) is not None)
    problems.check(ok, key, value, "a number of bytes or a size such as 64MB or 10GB")


HF_FORMATS = ("auto", "disk", "parquet", "imagefolder")


def _check_hf_source(values: Mapping[str, Any], problems: Problems) -> None:
    """data=hf: one source (a hub id or a local path) and a known format."""
    name, path = values.get("name"), values.get("path")
    if (name is None) == (path is None):
        problems.add("data=hf needs exactly one of data.name=<hub id> (online) or data.path=<a local save_to_disk "
                     f"folder, parquet files or an image folder>; got name={name!r}, path={path!r}.")  # fmt: skip
    if "format" in values:
        problems.one_of("data.format", values["format"], HF_FORMATS)
    size = values.get("image_size")
    sizes = [size] if is_int(size) else list(size) if isinstance(size, Sequence) and not isinstance(size, str) else []
    ok = size is None or (sizes and len(sizes) <= 2 and all(is_int(s) and s >= 1 for s in sizes))
    problems.check(ok, "data.image_size", size, "null (the first image's), an integer >= 1 or [height, width]")


def _check_readable_dir(problems: Problems, key: str, value: Any, what: str) -> None:
    if value is None or value == "???":
        problems.add(f"{key} is required: {key}=<{what}>")
        return
    path = Path(str(value)).expanduser()
    if not path.exists():
        problems.add(f"{key}={str(value)!r}: no such directory; it must be {what}.")
    elif not path.is_dir():
        problems.add(f"{key}={str(value)!r} is a file; it must be {what}.")
    elif not os.access(path, os.R_OK | os.X_OK):
        problems.add(f"{key}={str(value)!r} is not readable by this user: fix its permissions (chmod +rx).")
