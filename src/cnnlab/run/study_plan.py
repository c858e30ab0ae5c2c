"""The transfer-learning study's plan and tables: its modes, sizes, seeds and epoch rule, and the tables of its
results. Torch-free: `cnnlab study --help` and the notebooks' tables need no training code."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from cnnlab.utils.stats import Spread, spread

# One recipe per mode; only `transfer` differs between the three lite0 rows (same backbone, size, optimizer).
MODES: dict[str, list[str]] = {
    "cnn scratch": ["experiment=study", "model=cnn", "model.image_size=null"],  # the seed CNN at its own 28 px
    "lite0 scratch": ["experiment=study", "transfer=scratch"],
    "lite0 frozen": ["experiment=study", "transfer=frozen"],
    "lite0 finetune": [
        "experiment=study",
        "transfer=finetune",
        "transfer.backbone_lr_scale=0.3",
        "transfer.freeze_epochs=1",
    ],
}
SIZES = (100, 300, 1000, 3000, 10000)
IMAGES_PER_RUN = 30_000  # the epoch budget rule, the same for every mode: about this many training images seen


def epochs_for(size: int, images_per_run: int = IMAGES_PER_RUN) -> int:
    """Small sets get more epochs (up to 30), large ones at least 4: ~`images_per_run` images seen per run."""
    return max(4, min(30, math.ceil(images_per_run / size)))


SEEDS = (1, 2, 3)  # each cell's replicates: the seed picks the training subset and the initialisation


def row_label(row: dict[str, Any]) -> str:
    """A study row's name in the tables: its mode, or `<classifier> on <features>` for a scikit-learn row."""
    return row["mode"] if "classifier" not in row else f"{row['classifier']} on {row['features']}"


def cells(rows: Sequence[dict[str, Any]], value: str = "test_acc") -> tuple[list[int], dict[str, dict[int, Spread]]]:
    """Sizes, and {row label: {size: the spread of `value` over that cell's seeds}}."""
    sizes = sorted({row["train_size"] for row in rows})
    values: dict[str, dict[int, list[float]]] = {}
    for row in rows:
        values.setdefault(row_label(row), {}).setdefault(row["train_size"], []).append(row[value])
    return sizes, {label: {size: spread(v) for size, v in by_size.items()} for label, by_size in values.items()}


def pivot(rows: Sequence[dict[str, Any]], value: str = "test_acc") -> tuple[list[int], dict[str, dict[int, Any]]]:
    """Sizes, and {row label: {size: mean of `value` over the cell's seeds}}: the study's table, for plots."""
    sizes, spreads = cells(rows, value)
    return sizes, {label: {size: s.mean for size, s in by_size.items()} for label, by_size in spreads.items()}


def markdown_table(rows: Sequence[dict[str, Any]], value: str = "test_acc", fmt: str = "{:.4f}",
                   intervals: bool = True) -> str:  # fmt: skip
    """The study's table; with `intervals`, a cell of several seeds reads `mean +- half-width of its 95% interval
    (n=3)`, else the mean in `fmt`."""
    sizes, spreads = cells(rows, value)
    lines = ["| | " + " | ".join(f"{s:,}" for s in sizes) + " |", "|---" * (len(sizes) + 1) + "|"]
    for label, by_size in spreads.items():
        shown = [(by_size[s].cell() if intervals and by_size[s].n > 1 else fmt.format(by_size[s].mean))
                 if s in by_size else ""
                 for s in sizes]  # fmt: skip
        lines.append(f"| {label} | " + " | ".join(shown) + " |")
    return "\n".join(lines)
