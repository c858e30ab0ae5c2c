"""The rules for `model.*`: the head, the loss, the input size, and each backbone's own rules (kept beside it)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cnnlab.errors import Problems, is_int, is_number
from cnnlab.models.backbones import TimmBackbone, check_timm_backbone
from cnnlab.models.cnn import SeedCNN, check_seed_cnn
from cnnlab.models.mixing import check_mix
from cnnlab.models.tta import TTA_MODES
from cnnlab.models.weights import check_weights_file

BACKBONE_RULES = {
    f"{SeedCNN.__module__}.{SeedCNN.__qualname__}": check_seed_cnn,
    f"{TimmBackbone.__module__}.{TimmBackbone.__qualname__}": check_timm_backbone,
}


def image_size_pair(size: Any) -> list[int] | None:
    """`model.image_size` as [height, width] (None when null or malformed: the size check reports that)."""
    sizes = [size, size] if is_int(size) else list(size) if isinstance(size, list | tuple) else []
    return sizes if len(sizes) == 2 and all(is_int(s) and s >= 1 for s in sizes) else None


def check_model(values: Mapping[str, Any], problems: Problems) -> None:
    size = values.get("image_size")
    pair = image_size_pair(size)
    problems.check(size is None or pair is not None, "model.image_size", size,
                   "null (the data's size), an integer >= 1 or [height, width]")  # fmt: skip
    backbone = values.get("backbone") or {}
    target = str(backbone.get("_target_", ""))
    if target in BACKBONE_RULES:  # a backbone of the user's own checks its arguments itself
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
