"""cnnlab layers [model=...] [data=...] [transfer=...]: the model cnnlab train would build, layer by layer - output
shape, parameters, trainable or frozen under the transfer mode, multiply-adds for the data's image size - with the
totals, a timm backbone's published parameter count, and what its first conv would cost without weight sharing.
Written to <run dir>/model_summary.json as well. (Not cnnlab report, which tabulates a sweep.)"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig

from cnnlab.inspection.summary import format_report, published_parameters, summarize_model
from cnnlab.run.builders import build_datamodule, build_model
from cnnlab.run.checks import check_layers_config
from cnnlab.run.machine_checks import check_on_this_machine
from cnnlab.utils.io import write_json_atomic

log = logging.getLogger("cnnlab.run.layers")


def layer_table(cfg: DictConfig) -> dict[str, Any]:
    """Print the per-layer table of the configured model; returns what model_summary.json holds."""
    check_layers_config(cfg)
    check_on_this_machine(cfg)
    depth = cfg.depth
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule, info = build_datamodule(cfg.data)
    model = build_model(cfg, info, datamodule)
    report = summarize_model(model, depth)
    lines = [f"{type(model).__name__} on {info.name} ({info.num_classes} classes), transfer="
             f"{(cfg.get('transfer') or {}).get('mode', 'scratch')}", format_report(report)]  # fmt: skip
    result: dict[str, Any] = {"data": info.name, **report.as_dict(),
                              "layers": [vars(row) for row in report.rows]}  # fmt: skip
    published = published_parameters(model)
    if published:
        arch, count = published
        lines.append(f"timm's {arch} as published (its 1000-class ImageNet head): {count:,} parameters")
        result["published"] = {"architecture": arch, "params": count}
    print("\n".join(lines))
    write_json_atomic(Path(cfg.paths.output_dir) / "model_summary.json", result)
    return result
