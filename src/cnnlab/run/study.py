"""The transfer-learning study: test accuracy vs training-set size for scratch / frozen / finetune (and the
custom CNN), every run a real `cnnlab.run.training.train` run of a composed config, each in its own run dir.

Results go to `<root>/results.json` after every run (atomically), and a run already in it is not repeated:
an interrupted study picks up where it stopped. `cnnlab study --sizes 100 1000` runs it from a shell.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cnnlab.run.training import train
from cnnlab.utils.config import compose_config
from cnnlab.utils.io import write_json_atomic
from cnnlab.utils.stats import Spread, spread

log = logging.getLogger("cnnlab.run.study")

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


def run_study(
    root: str | Path,
    sizes: Sequence[int] = SIZES,
    modes: Sequence[str] = tuple(MODES),
    overrides: Sequence[str] = (),
    images_per_run: int = IMAGES_PER_RUN,
    root_dir: str | Path | None = None,
    seeds: Sequence[int] = SEEDS,
) -> list[dict[str, Any]]:
    """Train every (size, mode, seed) not yet in `<root>/results.json`; returns all rows of that file.
    `root_dir` is the runs' `paths.root_dir` (data and outputs are relative to it; default: the cwd). A seed
    changes both the class-balanced training subset and the initialisation, so the spread over seeds is the
    spread a reader would see rerunning the study."""
    root = Path(root)
    results_path = root / "results.json"
    rows: list[dict[str, Any]] = json.loads(results_path.read_text()) if results_path.is_file() else []
    done = {(row["mode"], row["train_size"], row.get("seed")) for row in rows}
    for size in sizes:
        for mode in modes:
            for seed in seeds:
                if (mode, size, seed) in done:
                    continue
                rows.append(_run_cell(root, mode, size, seed, overrides, images_per_run, root_dir))
                write_json_atomic(results_path, rows)
    return rows


def _run_cell(root: Path, mode: str, size: int, seed: int, overrides: Sequence[str], images_per_run: int,
              root_dir: str | Path | None) -> dict[str, Any]:  # fmt: skip
    epochs = epochs_for(size, images_per_run)
    # The final weights are validated and tested (no per-epoch selection): one val pass, at the end.
    run_overrides = [*MODES[mode], f"data.train_size={size}", f"trainer.max_epochs={epochs}",
                     f"trainer.check_val_every_n_epoch={epochs}", f"seed={seed}", *overrides]  # fmt: skip
    run_dir = root / "runs" / f"{mode.replace(' ', '_')}_{size}_seed{seed}"
    log.info("study: %s, %d images, %d epochs, seed %d -> %s", mode, size, epochs, seed, run_dir)
    summary = train(compose_config(run_overrides, output_dir=run_dir, root_dir=root_dir or Path.cwd()))
    return {
        "mode": mode,
        "train_size": size,
        "seed": seed,
        "epochs": epochs,
        "test_acc": round(summary["test/acc"], 4),
        "val_acc_best": round(summary["val/acc_best"], 4),
        "duration_s": summary["duration_s"],
        "run_dir": str(run_dir),
    }


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


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="outputs/study", help="results.json and one run dir per (mode, size)")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--images-per-run", type=int, default=IMAGES_PER_RUN)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS), help="replicates of every cell")
    parser.add_argument("overrides", nargs="*", help="cnnlab-train overrides for every run, e.g. trainer=gpu")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rows = run_study(args.root, args.sizes, args.modes, args.overrides, args.images_per_run, seeds=args.seeds)
    print(markdown_table(rows))
