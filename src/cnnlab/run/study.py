"""The transfer-learning study: test accuracy vs training-set size for scratch / frozen / finetune (and the
custom CNN), every run a real `cnnlab.run.training.train` run of a composed config, each in its own run dir.

Results go to `<root>/results.json` after every run (atomically), and a run already in it is not repeated:
an interrupted study picks up where it stopped. `cnnlab study --sizes 100 1000` runs it from a shell.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cnnlab import metrics as M
from cnnlab.run.study_plan import IMAGES_PER_RUN, MODES, SEEDS, SIZES, epochs_for
from cnnlab.run.training import train
from cnnlab.utils.config import compose_config
from cnnlab.utils.io import write_json_atomic

log = logging.getLogger("cnnlab.run.study")


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
        "test_acc": round(summary[M.TEST_ACC], 4),
        "val_acc_best": round(summary[M.VAL_ACC_BEST], 4),
        "duration_s": summary["duration_s"],
        "run_dir": str(run_dir),
    }
