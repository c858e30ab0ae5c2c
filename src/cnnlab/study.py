"""The transfer-learning study: test accuracy vs training-set size for scratch / frozen / finetune (and the
custom CNN), every run a real `cnnlab.train.train` run of a composed config, each in its own run dir.

Results go to `<root>/results.json` after every run (atomically), and a run already in it is not repeated:
an interrupted study picks up where it stopped. `python -m cnnlab.study --sizes 100 1000` runs it from a shell.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cnnlab.train import train
from cnnlab.utils.config import compose_config
from cnnlab.utils.io import write_json_atomic

log = logging.getLogger("cnnlab.study")

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


def run_study(
    root: str | Path,
    sizes: Sequence[int] = SIZES,
    modes: Sequence[str] = tuple(MODES),
    overrides: Sequence[str] = (),
    images_per_run: int = IMAGES_PER_RUN,
    root_dir: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Train every (size, mode) not yet in `<root>/results.json`; returns all rows of that file.
    `root_dir` is the runs' `paths.root_dir` (data and outputs are relative to it; default: the cwd)."""
    root = Path(root)
    results_path = root / "results.json"
    rows: list[dict[str, Any]] = json.loads(results_path.read_text()) if results_path.is_file() else []
    done = {(row["mode"], row["train_size"]) for row in rows}
    for size in sizes:
        for mode in modes:
            if (mode, size) in done:
                continue
            epochs = epochs_for(size, images_per_run)
            # The final weights are validated and tested (no per-epoch selection): one val pass, at the end.
            run_overrides = [*MODES[mode], f"data.train_size={size}", f"trainer.max_epochs={epochs}",
                             f"trainer.check_val_every_n_epoch={epochs}", *overrides]  # fmt: skip
            run_dir = root / "runs" / f"{mode.replace(' ', '_')}_{size}"
            log.info("study: %s, %d images, %d epochs -> %s", mode, size, epochs, run_dir)
            summary = train(compose_config(run_overrides, output_dir=run_dir, root_dir=root_dir or Path.cwd()))
            rows.append({
                "mode": mode,
                "train_size": size,
                "epochs": epochs,
                "test_acc": round(summary["test/acc"], 4),
                "val_acc_best": round(summary["val/acc_best"], 4),
                "duration_s": summary["duration_s"],
                "run_dir": str(run_dir),
            })  # fmt: skip
            write_json_atomic(results_path, rows)
    return rows


def pivot(rows: Sequence[dict[str, Any]], value: str = "test_acc") -> tuple[list[int], dict[str, dict[int, Any]]]:
    """Sizes, and {row label: {size: value}}: the study's table."""
    sizes = sorted({row["train_size"] for row in rows})
    table: dict[str, dict[int, Any]] = {}
    for row in rows:
        label = row["mode"] if "classifier" not in row else f"{row['classifier']} on {row['features']}"
        table.setdefault(label, {})[row["train_size"]] = row[value]
    return sizes, table


def markdown_table(rows: Sequence[dict[str, Any]], value: str = "test_acc", fmt: str = "{:.4f}") -> str:
    sizes, table = pivot(rows, value)
    lines = ["| | " + " | ".join(f"{s:,}" for s in sizes) + " |", "|---" * (len(sizes) + 1) + "|"]
    for label, cells in table.items():
        lines.append(f"| {label} | " + " | ".join(fmt.format(cells[s]) if s in cells else "" for s in sizes) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="outputs/study", help="results.json and one run dir per (mode, size)")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--images-per-run", type=int, default=IMAGES_PER_RUN)
    parser.add_argument("overrides", nargs="*", help="cnnlab-train overrides for every run, e.g. trainer=gpu")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rows = run_study(args.root, args.sizes, args.modes, args.overrides, args.images_per_run)
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
