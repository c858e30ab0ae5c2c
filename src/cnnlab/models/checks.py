"""The rules for `model.*` and `optimizer.*`: the input size, each backbone's arguments, the head, the loss, mixing,
test-time augmentation, the weights file and the optimizer's values.

Torch-free, so that `cnnlab <verb>` answers a bad value before torch is imported: the modules that do the work
(`cnn`, `backbones`, `tta`, `mixing`) import their rules and constants from here, and the backbones check their own
arguments with the same functions, so the Python API gets the same answers as the command line. One rule needs
timm imported: whether `model.backbone.name` is a timm model (`cnnlab.models.backbones.check_timm_name`), which
`cnnlab.run.machine_checks` runs once the work has imported it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cnnlab.errors import Problems, is_int, is_number
from cnnlab.models.mix_config import MIX_KEYS

# The `_target_`s of cnnlab's own backbones, as the model configs write them (a test: they name the classes).
SEED_CNN = "cnnlab.models.cnn.SeedCNN"
TIMM_BACKBONE = "cnnlab.models.backbones.TimmBackbone"
# How grey (1-channel) data meets an RGB timm network (`TimmBackbone`'s in_chans_mode).
CHANNEL_MODES = ("repeat", "adapt")
TTA_MODES = ("none", "flip", "shift", "flip_shift")  # `model.tta`: the views `cnnlab.models.tta` averages
WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".ckpt")  # what `cnnlab.models.weights` reads


def image_size_pair(size: Any) -> list[int] | None:
    """`model.image_size` as [height, width] (None when null or malformed: the size check reports that)."""
    sizes = [size, size] if is_int(size) else list(size) if isinstance(size, list | tuple) else []
    return sizes if len(sizes) == 2 and all(is_int(s) and s >= 1 for s in sizes) else None


def check_model(values: Mapping[str, Any], problems: Problems) -> None:
    """The rules for `model.*`; a backbone of the user's own checks its arguments itself."""
    size = values.get("image_size")
    pair = image_size_pair(size)
    problems.check(size is None or pair is not None, "model.image_size", size,
                   "null (the data's size), an integer >= 1 or [height, width]")  # fmt: skip
    backbone = values.get("backbone") or {}
    target = str(backbone.get("_target_", ""))
    if target in BACKBONE_RULES:
        BACKBONE_RULES[target](backbone, pair, problems, f"model.image_size={size!r}")
    head = values.get("head") or {}
    problems.in_range("model.head.dropout", head.get("dropout", 0.0), 0, 1, "[)")
    hidden = head.get("hidden") or []
    problems.check(all(is_int(h) and h >= 1 for h in hidden), "model.head.hidden", hidden, "a list of integers >= 1")
    problems.in_range("model.label_smoothing", values.get("label_smoothing", 0.0), 0, 1, "[)")
    check_mix(values.get("mix"), problems)
    problems.one_of("model.tta", values.get("tta", "none"), TTA_MODES)
    weights = values.get("class_weights")
    ok = weights in (None, "balanced") or (isinstance(weights, list | tuple) and bool(weights)
                                           and all(is_number(w) and w >= 0 for w in weights))  # fmt: skip
    problems.check(ok, "model.class_weights", weights, "null, balanced, or a list of one weight >= 0 per class")
    if values.get("weights"):
        check_weights_file(values["weights"], problems)
    for key in ("channels_last", "compile"):
        if key in values:
            problems.flag(f"model.{key}", values[key])


def feature_map_side(side: int, kernel_size: int, padding: int, stages: int, convs: int = 1) -> int:
    """An image side's length after `stages` of (`convs` convs `kernel_size` with `padding`, 2x2 max-pool)."""
    for _ in range(stages):
        side = (side + convs * (2 * padding - kernel_size + 1)) // 2
    return side


def check_seed_cnn(values: Mapping[str, Any], image_size: Sequence[int] | None, problems: Problems,
                   size_name: str | None = None) -> None:  # fmt: skip
    """The rules for `model.backbone.*` of the seed CNN; with an `image_size`, also that the stages fit it
    (`size_name` names where the size came from, e.g. `model.image_size=4`)."""
    widths = list(values.get("widths") or [])
    problems.check(bool(widths) and all(is_int(w) and w >= 1 for w in widths), "model.backbone.widths", widths,
                   "a non-empty list of integers >= 1")  # fmt: skip
    kernel, padding = values.get("kernel_size", 3), values.get("padding", 0)
    problems.int_at_least("model.backbone.kernel_size", kernel, 1)
    problems.int_at_least("model.backbone.padding", padding, 0)
    convs = values.get("convs_per_stage", 1)
    problems.int_at_least("model.backbone.convs_per_stage", convs, 1)
    mult = values.get("width_mult", 1.0)
    problems.check(is_number(mult) and mult > 0, "model.backbone.width_mult", mult, "a number > 0")
    sides = list(image_size or [])
    computable = widths and sides and all(is_int(v) for v in (*sides, kernel, padding, convs))
    if computable and min(feature_map_side(s, kernel, padding, len(widths), convs) for s in sides) < 1:
        problems.add(
            f"{size_name or f'image size {sides}'} is too small for the CNN's {len(widths)} conv + 2x2 pool stages: "
            "use a larger model.image_size, model.backbone.padding=1 or fewer model.backbone.widths."
        )


def check_timm_backbone(values: Mapping[str, Any], image_size: Sequence[int] | None, problems: Problems,
                        size_name: str | None = None) -> None:  # fmt: skip
    """The rules for `model.backbone.*` of a timm backbone that need no timm; with an `image_size`, also that it is
    large enough (`size_name` names where the size came from, e.g. `model.image_size=4`). Whether the name is one
    of timm's models is `cnnlab.models.backbones.check_timm_name`'s to say: only importing timm tells."""
    name = values.get("name")
    problems.check(isinstance(name, str) and bool(name), "model.backbone.name", name,
                   "a timm model name, e.g. resnet18 or resnet18.a1_in1k")  # fmt: skip
    problems.one_of("model.backbone.in_chans_mode", values.get("in_chans_mode", "repeat"), CHANNEL_MODES)
    problems.in_range("model.backbone.drop_path_rate", values.get("drop_path_rate", 0.0), 0, 1, "[)")
    if image_size and all(is_int(s) for s in image_size) and min(image_size) < 32:
        problems.add(
            f"{size_name or f'image size {list(image_size)}'} is too small for a timm backbone, which downsamples by "
            "32: use at least 32 (64-96 for 28 px data on a CPU, 224 for ImageNet's own size)."
        )


BACKBONE_RULES = {SEED_CNN: check_seed_cnn, TIMM_BACKBONE: check_timm_backbone}


def check_mix(values: Mapping[str, Any] | None, problems: Problems) -> None:
    """The rules for `model.mix` (the keys of `cnnlab.models.mix_config.Mix`)."""
    if values is None:
        return
    if not isinstance(values, Mapping):
        problems.add(f"model.mix={values!r} is not a mapping: null, or e.g. {{mixup_alpha: 0.8, cutmix_alpha: 1.0}}.")
        return
    for key in values:
        problems.check(key in MIX_KEYS, f"model.mix.{key}", values[key], f"one of the keys {', '.join(MIX_KEYS)}")
    for key in ("mixup_alpha", "cutmix_alpha"):
        value = values.get(key, 0.0)
        problems.check(is_number(value) and value >= 0, f"model.mix.{key}", value, "a number >= 0 (0 = off)")
    for key in ("prob", "switch_prob"):
        problems.in_range(f"model.mix.{key}", values.get(key, 0.5), 0, 1, "[]")
    stop = values.get("stop_epoch")
    problems.check(stop is None or (is_int(stop) and stop >= 0), "model.mix.stop_epoch", stop,
                   "null (mix every epoch) or an epoch >= 0")  # fmt: skip


def check_weights_file(value: Any, problems: Problems) -> None:
    """`model.weights`: an existing, readable weights file (its contents are read safely when the model is built)."""
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
    """The rules for `optimizer.*`."""
    lr = values.get("lr")
    problems.check(is_number(lr) and lr > 0, "optimizer.lr", lr, "a number > 0, e.g. 1e-3")
    if "decay_norm_and_bias" in values:
        problems.flag("optimizer.decay_norm_and_bias", values["decay_norm_and_bias"])
    weight_decay = values.get("weight_decay", 0.0)
    problems.check(is_number(weight_decay) and weight_decay >= 0, "optimizer.weight_decay", weight_decay,
                   "a number >= 0")  # fmt: skip
    if "momentum" in values:
        problems.in_range("optimizer.momentum", values["momentum"], 0, 1, "[)")
