"""Every user-facing value of a run, checked before any data is loaded: one message lists all the problems.

Each rule lives here once; the DataModules call `check_data` on their own arguments too, so the Python API
gets the same answers as the command line.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from cnnlab.errors import CnnlabError, Problems
from cnnlab.utils.config import resolved_config

PRECISIONS = ("64-true", "64", "32-true", "32", "16-mixed", "16", "bf16-mixed", "bf16", "16-true", "bf16-true",
              "transformer-engine", "transformer-engine-float16")  # fmt: skip
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")
WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".ckpt")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _int_at_least(problems: Problems, key: str, value: Any, low: int, null_ok: bool = False, note: str = "") -> None:
    ok = (null_ok and value is None) or (_is_int(value) and value >= low)
    problems.check(ok, key, value, ("null or " if null_ok else "") + f"an integer >= {low}{note}")


def _in_range(problems: Problems, key: str, value: Any, low: float, high: float, closed: str = "[)") -> None:
    """`closed`: which ends are allowed, as in interval notation."""
    ok = _is_number(value) and (value >= low if closed[0] == "[" else value > low)
    ok = ok and (value <= high if closed[1] == "]" else value < high)
    problems.check(ok, key, value, f"a number in {closed[0]}{low}, {high}{closed[1]}")


# --- groups -------------------------------------------------------------------------------------------
def check_data(values: Mapping[str, Any], problems: Problems) -> None:
    """The keys present in `values` (a data config, or a DataModule's own arguments)."""
    if "batch_size" in values:
        _int_at_least(problems, "data.batch_size", values["batch_size"], 1)
    if "eval_batch_size" in values:
        _int_at_least(
            problems, "data.eval_batch_size", values["eval_batch_size"], 1, null_ok=True, note=" (null = batch_size)"
        )
    if "val_fraction" in values:
        _in_range(problems, "data.val_fraction", values["val_fraction"], 0, 1, "()")
    if "train_size" in values:
        _int_at_least(problems, "data.train_size", values["train_size"], 1, null_ok=True, note=" (null = all)")
    data_dir = values.get("data_dir")
    if data_dir is not None and Path(data_dir).expanduser().exists() and not Path(data_dir).expanduser().is_dir():
        problems.add(f"data.data_dir={str(data_dir)!r} is a file: it must be a directory holding <Dataset>/raw/.")
    if "test_fraction" in values:
        _in_range(problems, "data.test_fraction", values["test_fraction"], 0, 1, "()")
    if "channels" in values:
        problems.check(values["channels"] in (1, 3), "data.channels", values["channels"], "1 (grey) or 3 (RGB)")
    if "cache_max_gb" in values:
        ok = _is_number(values["cache_max_gb"]) and values["cache_max_gb"] >= 0
        problems.check(ok, "data.cache_max_gb", values["cache_max_gb"], "a number >= 0 (0 = always stream from disk)")
    if "num_workers" in values:
        _int_at_least(problems, "data.num_workers", values["num_workers"], 0)
    if "root" in values:
        _check_readable_dir(problems, "data.root", values["root"], "a folder of class folders (or train/, val/, test/)")
    if values.get("augment") is not None:
        check_augment(values["augment"], problems)
    if "on_device" in values:
        problems.check(values["on_device"] in ("auto", True, False), "data.on_device", values["on_device"],
                       "auto (on the GPU when training on one), true or false")  # fmt: skip


def check_augment(values: Any, problems: Problems) -> None:
    """`data.augment`: null, or a mapping of the keys of `cnnlab.data.augment.Augment`."""
    from cnnlab.data.augment import AUGMENT_KEYS

    if not isinstance(values, Mapping):
        problems.add(f"data.augment={values!r}: must be null or a mapping such as {{translate: 2, hflip: true}}.")
        return
    for key in values:
        known = key in AUGMENT_KEYS
        problems.check(known, f"data.augment.{key}", values[key], "one of the keys " + ", ".join(AUGMENT_KEYS))
    if "translate" in values:
        _int_at_least(problems, "data.augment.translate", values["translate"], 0, note=" (pixels)")
    if "hflip" in values:
        problems.check(isinstance(values["hflip"], bool), "data.augment.hflip", values["hflip"], "true or false")
    if "erase" in values:
        _in_range(problems, "data.augment.erase", values["erase"], 0, 1, "[]")
    for key, low, high in (("erase_area", 0, 1), ("erase_ratio", 0, math.inf)):
        pair = values.get(key)
        if pair is None:
            continue
        ok = isinstance(pair, Sequence) and len(pair) == 2 and all(_is_number(v) for v in pair)
        ok = ok and low < pair[0] <= pair[1] and pair[1] <= high
        problems.check(ok, f"data.augment.{key}", pair, f"[low, high] with {low} < low <= high <= {high}")
    fill = values.get("fill", 0)
    fills = list(fill) if isinstance(fill, Sequence) and not isinstance(fill, str) else [fill]
    ok = bool(fills) and all(_is_int(v) and 0 <= v <= 255 for v in fills)
    problems.check(ok, "data.augment.fill", fill, "an integer 0..255, or one per channel")


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


def check_model(values: Mapping[str, Any], problems: Problems) -> None:
    backbone = values.get("backbone") or {}
    target = str(backbone.get("_target_", ""))
    if target.endswith("TimmBackbone"):
        _check_timm_backbone(backbone, values.get("image_size"), problems)
    elif target.endswith("SeedCNN"):
        _check_seed_cnn(backbone, values.get("image_size"), problems)
    head = values.get("head") or {}
    _in_range(problems, "model.head.dropout", head.get("dropout", 0.0), 0, 1, "[)")
    hidden = head.get("hidden") or []
    problems.check(all(_is_int(h) and h >= 1 for h in hidden), "model.head.hidden", hidden, "a list of integers >= 1")
    _in_range(problems, "model.label_smoothing", values.get("label_smoothing", 0.0), 0, 1, "[)")
    size = values.get("image_size")
    sizes = [size] if not isinstance(size, list | tuple) else list(size)
    ok = size is None or (len(sizes) in (1, 2) and all(_is_int(s) and s >= 1 for s in sizes))
    problems.check(ok, "model.image_size", size, "null (the data's size), an integer >= 1 or [height, width]")
    if values.get("weights"):
        _check_weights_file(problems, values["weights"])
    for key in ("channels_last", "compile"):
        if key in values:
            problems.check(isinstance(values[key], bool), f"model.{key}", values[key], "true or false")


def _check_timm_backbone(backbone: Mapping[str, Any], image_size: Any, problems: Problems) -> None:
    from cnnlab.models.backbones import CHANNEL_MODES, check_timm_name

    try:
        check_timm_name(str(backbone.get("name")))
    except CnnlabError as err:
        problems.add(str(err))
    mode = backbone.get("in_chans_mode", "repeat")
    problems.check(mode in CHANNEL_MODES, "model.backbone.in_chans_mode", mode, f"one of {', '.join(CHANNEL_MODES)}")
    _in_range(problems, "model.backbone.drop_path_rate", backbone.get("drop_path_rate", 0.0), 0, 1, "[)")
    smallest = min(image_size) if isinstance(image_size, list | tuple) and image_size else image_size
    if _is_int(smallest) and smallest < 32:
        problems.add(
            f"model.image_size={image_size!r} is too small for a timm backbone, which downsamples by 32: "
            "use at least 32 (64-96 for 28 px data on a CPU, 224 for ImageNet's own size)."
        )


def _check_seed_cnn(backbone: Mapping[str, Any], image_size: Any, problems: Problems) -> None:
    widths = list(backbone.get("widths") or [])
    problems.check(bool(widths) and all(_is_int(w) and w >= 1 for w in widths), "model.backbone.widths", widths,
                   "a non-empty list of integers >= 1")  # fmt: skip
    _int_at_least(problems, "model.backbone.kernel_size", backbone.get("kernel_size", 3), 1)
    _int_at_least(problems, "model.backbone.padding", backbone.get("padding", 0), 0)
    mult = backbone.get("width_mult", 1.0)
    problems.check(_is_number(mult) and mult > 0, "model.backbone.width_mult", mult, "a number > 0")
    # The data's own size is checked when the model is built; an explicit model.image_size can be checked now.
    size, kernel, padding = image_size, backbone.get("kernel_size", 3), backbone.get("padding", 0)
    if _is_int(size) and _is_int(kernel) and _is_int(padding) and widths:
        for _ in widths:
            size = (size + 2 * padding - kernel + 1) // 2
        if size < 1:
            problems.add(
                f"model.image_size={image_size} is too small for the CNN's {len(widths)} conv + 2x2 pool stages: "
                "use a larger model.image_size, model.backbone.padding=1 or fewer model.backbone.widths."
            )


def _check_weights_file(problems: Problems, value: Any) -> None:
    path = Path(str(value)).expanduser()
    if not path.exists():
        problems.add(f"model.weights={str(value)!r}: no such file. Give a .pth, .safetensors or .ckpt file.")
    elif not path.is_file():
        problems.add(f"model.weights={str(value)!r} is a directory: give the weights file in it.")
    elif not os.access(path, os.R_OK):
        problems.add(f"model.weights={str(value)!r} is not readable by this user: fix its permissions.")
    elif path.suffix not in WEIGHT_SUFFIXES:
        problems.add(f"model.weights={str(value)!r}: not a weights file; expected one of {', '.join(WEIGHT_SUFFIXES)}.")


def check_optimizer(values: Mapping[str, Any], problems: Problems) -> None:
    lr = values.get("lr")
    problems.check(_is_number(lr) and lr > 0, "optimizer.lr", lr, "a number > 0, e.g. 1e-3")
    weight_decay = values.get("weight_decay", 0.0)
    problems.check(
        _is_number(weight_decay) and weight_decay >= 0, "optimizer.weight_decay", weight_decay, "a number >= 0"
    )
    if "momentum" in values:
        _in_range(problems, "optimizer.momentum", values["momentum"], 0, 1, "[)")


def check_scheduler(values: Mapping[str, Any] | None, problems: Problems) -> None:
    values = values or {}
    if "warmup_fraction" in values:
        _in_range(problems, "scheduler.warmup_fraction", values["warmup_fraction"], 0, 1, "[)")
    if "min_factor" in values:
        _in_range(problems, "scheduler.min_factor", values["min_factor"], 0, 1, "[]")
    if "pct_start" in values:
        _in_range(problems, "scheduler.pct_start", values["pct_start"], 0, 1, "()")
    for key in ("div_factor", "final_div_factor"):
        if key in values:
            problems.check(_is_number(values[key]) and values[key] > 0, f"scheduler.{key}", values[key], "a number > 0")


def check_trainer(values: Mapping[str, Any], problems: Problems) -> None:
    epochs, steps, max_time = values.get("max_epochs"), values.get("max_steps", -1), values.get("max_time")
    bounded = (_is_int(steps) and steps >= 1) or max_time is not None
    ok = (_is_int(epochs) and epochs >= 1) or ((epochs is None or epochs == -1) and bounded)
    problems.check(ok, "trainer.max_epochs", epochs, "an integer >= 1 (or -1 with trainer.max_steps or max_time)")
    problems.check(_is_int(steps) and (steps == -1 or steps >= 1), "trainer.max_steps", steps, "-1 (no limit) or >= 1")
    precision = str(values.get("precision"))
    problems.check(precision in PRECISIONS, "trainer.precision", values.get("precision"),
                   "one of 32-true, bf16-mixed, 16-mixed, 64-true, bf16-true, 16-true")  # fmt: skip
    accelerator = values.get("accelerator", "auto")
    problems.check(accelerator in ACCELERATORS, "trainer.accelerator", accelerator, f"one of {', '.join(ACCELERATORS)}")
    if accelerator in ("gpu", "cuda"):
        import torch

        if not torch.cuda.is_available():
            problems.add(
                f"trainer.accelerator={accelerator!r} but this machine has no usable CUDA GPU "
                "(torch.cuda.is_available() is False): use trainer=cpu, or trainer.accelerator=auto."
            )
    devices = values.get("devices", "auto")
    ok = devices == "auto" or (_is_int(devices) and (devices >= 1 or devices == -1)) or isinstance(devices, list | str)
    problems.check(ok, "trainer.devices", devices, "auto, -1 (all), a count >= 1 or a list of device ids")
    _int_at_least(problems, "trainer.num_nodes", values.get("num_nodes", 1), 1)
    _int_at_least(problems, "trainer.log_every_n_steps", values.get("log_every_n_steps", 50), 1)
    _int_at_least(
        problems, "trainer.check_val_every_n_epoch", values.get("check_val_every_n_epoch", 1), 1, null_ok=True
    )
    _int_at_least(problems, "trainer.accumulate_grad_batches", values.get("accumulate_grad_batches", 1), 1)
    clip = values.get("gradient_clip_val")
    problems.check(
        clip is None or (_is_number(clip) and clip >= 0), "trainer.gradient_clip_val", clip, "null or a number >= 0"
    )
    for key in ("limit_train_batches", "limit_val_batches", "limit_test_batches"):
        limit = values.get(key)
        ok = limit is None or (_is_int(limit) and limit >= 0) or (_is_number(limit) and 0 <= limit <= 1)
        problems.check(ok, f"trainer.{key}", limit, "null, a share in [0.0, 1.0] or a batch count >= 0")
    problems.check(values.get("deterministic", False) in (True, False, "warn"), "trainer.deterministic",
                   values.get("deterministic"), "true, false or warn")  # fmt: skip


def check_transfer(values: Mapping[str, Any] | None, problems: Problems) -> None:
    from cnnlab.transfer.policy import MODES, TransferConfig

    values = dict(values or {})
    known = set(TransferConfig.__dataclass_fields__)
    unknown = sorted(set(values) - known)
    if unknown:
        problems.add(f"unknown transfer keys {unknown}; known: {', '.join(sorted(known))}")
    mode = values.get("mode", "scratch")
    problems.check(mode in MODES, "transfer.mode", mode, f"one of {', '.join(MODES)}")
    scale = values.get("backbone_lr_scale", 1.0)
    problems.check(_is_number(scale) and scale >= 0, "transfer.backbone_lr_scale", scale, "a number >= 0")
    decay = values.get("layer_decay")
    problems.check(decay is None or (_is_number(decay) and 0 < decay <= 1), "transfer.layer_decay", decay,
                   "null or a number in (0, 1]")  # fmt: skip
    _int_at_least(problems, "transfer.freeze_epochs", values.get("freeze_epochs", 0), 0)
    _int_at_least(
        problems, "transfer.trainable_stages", values.get("trainable_stages"), 0, null_ok=True, note=" (null = all)"
    )
    for key in ("pretrained", "freeze_bn", "cache_features"):
        problems.check(values.get(key, False) in (True, False), f"transfer.{key}", values.get(key), "true or false")


def check_output_dirs(paths: Mapping[str, Any], problems: Problems) -> None:
    """The run writes under log_dir and output_dir: both must be (or become) writable directories."""
    for key in ("log_dir", "output_dir"):
        value = paths.get(key)
        if value is None:
            continue
        problem = writable_dir_problem(Path(str(value)).expanduser())
        if problem:
            problems.add(f"paths.{key}={str(value)!r} {problem}")


def writable_dir_problem(path: Path) -> str | None:
    """Why files cannot be written in `path` (created if missing), or None when they can. Tried, not guessed
    from permission bits: those say yes to root even on a read-only mount."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as err:
        return (
            f"is not a writable directory ({err.strerror or err}): set paths.log_dir=<a writable dir> "
            "or run from a directory you can write to (or set CNNLAB_ROOT)."
        )
    return None


def check_resume(ckpt_path: Any, checkpoint_dir: Path, problems: Problems) -> None:
    from cnnlab.checkpoints import read_checkpoint, resume_checkpoint

    try:
        path = resume_checkpoint(None if ckpt_path is None else str(ckpt_path), checkpoint_dir)
        if path is not None:
            read_checkpoint(path, needs=("state_dict", "loops"))
    except CnnlabError as err:
        problems.add(str(err))


# --- whole configs --------------------------------------------------------------------------------------
def check_train_config(cfg: DictConfig) -> None:
    """All of `cnnlab-train`'s values; raises one CnnlabError listing every problem, or returns."""
    problems = Problems()
    try:
        values = resolved_config(cfg)
    except Exception as err:  # an interpolation that cannot resolve (e.g. a missing environment variable)
        raise CnnlabError(f"the configuration does not resolve: {err}") from err
    _int_at_least(problems, "seed", values.get("seed"), 0)
    check_data(values.get("data") or {}, problems)
    check_model(values.get("model") or {}, problems)
    check_optimizer(values.get("optimizer") or {}, problems)
    check_scheduler(values.get("scheduler"), problems)
    check_transfer(values.get("transfer"), problems)
    check_trainer(values.get("trainer") or {}, problems)
    check_output_dirs(values.get("paths") or {}, problems)
    if values.get("train"):
        from cnnlab.checkpoints import checkpoint_dir

        check_resume(values.get("ckpt_path"), checkpoint_dir(cfg), problems)
    problems.raise_if_any("invalid configuration (nothing was run)")
