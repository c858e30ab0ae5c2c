"""A sweep's report in its dir, best first: summary.csv (one row per job), summary_groups.csv (one per configuration,
with the spread of its replicates), summary.md, and once the sweep is over, groups.png (also in TensorBoard).

`SweepCallback` rewrites them as each job ends; `cnnlab report <sweep dir>` rebuilds them at any time.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter

from cnnlab.run.sweeps.records import (
    METRIC_COLUMNS,
    REPLICATE_KEYS,
    optimized_metric,
    optuna_best,
    read_jobs,
    usable,
)
from cnnlab.run.sweeps.replicates import group_jobs
from cnnlab.utils.figures import interval_plot
from cnnlab.utils.io import write_text_atomic
from cnnlab.utils.text import csv_cell

JOB_COLUMNS = ["job", "status", "overrides", *METRIC_COLUMNS, "params", "duration_s", "error"]


def write_summary(sweep_dir: str | Path, metric: str | None = None, plot: bool = False) -> list[dict[str, Any]]:
    """Write the sweep's summaries, sorted by `metric` (default: the sweep's optimized metric); with `plot` (once a
    sweep is over, not after every job: each plot is a TensorBoard event), also groups.png. Returns the job rows."""
    sweep_dir = Path(sweep_dir)
    metric = metric or optimized_metric(sweep_dir)
    rows = sorted(read_jobs(sweep_dir), key=_sort_key(metric))
    groups = group_jobs(rows, metric)
    write_text_atomic(sweep_dir / "summary.csv", _csv(rows, ["configuration", "replicate", *JOB_COLUMNS]))
    write_text_atomic(sweep_dir / "summary_groups.csv", _csv(_flat_groups(groups), None))
    write_text_atomic(sweep_dir / "summary.md", _markdown(sweep_dir, rows, groups, metric))
    if plot:
        _plot_groups(sweep_dir, rows, groups, metric)
    return rows


def _sort_key(metric: str) -> Callable[[dict[str, Any]], tuple[int, float]]:
    """Completed jobs first, best `metric` first; the others after them, as they came."""

    def key(row: dict[str, Any]) -> tuple[int, float]:
        ok = usable(row, metric)
        return (0 if ok else 1, -row[metric] if ok else 0.0)

    return key


def _csv(rows: list[dict[str, Any]], columns: list[str] | None) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns or (list(rows[0]) if rows else ["configuration"]),
                            extrasaction="ignore")  # fmt: skip
    writer.writeheader()
    # The jobs' values come from files in the sweep dir: text cells are made safe to open in a spreadsheet.
    writer.writerows({k: csv_cell(v) if isinstance(v, str) else v for k, v in row.items()} for row in rows)
    return buffer.getvalue()


def _flat_groups(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Groups as CSV rows: `<metric>/mean`, `/sd`, `/ci_low`, `/ci_high`, `/min`, `/max` for every metric."""
    flat = []
    for group in groups:
        row = {key: group[key] for key in ("configuration", "n", "duplicates", "failed", "pruned")}
        for column in METRIC_COLUMNS:
            value = group[column]
            for name, field in (("mean", "mean"), ("sd", "sd"), ("ci_low", "low"), ("ci_high", "high"),
                                ("min", "min"), ("max", "max")):  # fmt: skip
                row[f"{column}/{name}"] = getattr(value, field) if value is not None else None
        flat.append(row)
    return flat


def _markdown(sweep_dir: Path, rows: list[dict[str, Any]], groups: list[dict[str, Any]], metric: str) -> str:
    failed = sum(r["status"] == "failed" for r in rows)
    pruned = sum(r["status"] == "pruned" for r in rows)
    pruned_note = (f", {pruned} pruned (stopped early by the search's pruner: listed after the completed jobs, never "
                   "ranked or averaged)") if pruned else ""  # fmt: skip
    lines = [f"# Sweep {sweep_dir.name}", "", f"{len(rows)} jobs, {failed} failed{pruned_note}.", ""]
    duplicates = sum(g["duplicates"] for g in groups)
    if duplicates:
        lines += [f"{duplicates} job(s) repeat another job's configuration with the same seed / fold: the same run "
                  "twice, counted once (the first), never as a replicate.", ""]  # fmt: skip
    if any(g["n"] > 1 for g in groups):
        lines += ["## Configurations", "",
                  f"Jobs that differ only in {' / '.join(REPLICATE_KEYS)} are replicates of one configuration. Cells: "
                  "mean +- half-width of the 95% confidence interval of the mean (Student t), over the n completed "
                  f"replicates (failed ones are counted, never averaged in). Best first by the lower end of {metric}'s "
                  "interval: a configuration must be good and consistent to lead. summary_groups.csv has the "
                  "standard deviations, intervals, minima and maxima.", ""]  # fmt: skip
        columns = ["configuration", "n", "failed", *METRIC_COLUMNS]
        lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        for group in groups:
            cells = [_cell(group["configuration"]), str(group["n"]), str(group["failed"])]
            cells += [group[c].cell() if group[c] is not None else "" for c in METRIC_COLUMNS]
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", "## Jobs", ""]
    lines += [f"Sorted by {metric} (best first).", ""]
    lines += ["| " + " | ".join(JOB_COLUMNS) + " |", "|" + "---|" * len(JOB_COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(c)) for c in JOB_COLUMNS) + " |")
    best = optuna_best(sweep_dir)
    if best:
        lines += ["", "## Optuna", ""]
        if isinstance(best.get("trials"), dict):
            tally = ", ".join(f"{v} {k}" for k, v in best["trials"].items() if isinstance(v, int) and v)
            lines += [f"study `{_cell(best.get('name'))}` in `{_cell(best.get('storage'))}`, "
                      f"{_cell(best.get('workers'))} worker(s): {_cell(tally)}", ""]  # fmt: skip
        lines += [f"best value: {best.get('best_value')}", "", "best parameters:", ""]
        lines += [f"- `{_cell(k)}={_cell(v)}`" for k, v in (best.get("best_params") or {}).items()]
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value).replace("|", "\\|").replace("\n", " ")[:300]


def _plot_groups(sweep_dir: Path, rows: list[dict[str, Any]], groups: list[dict[str, Any]], metric: str) -> None:
    """`groups.png` in the sweep dir, and the same image in `<sweep dir>/tensorboard`: every configuration's runs
    with their mean and interval, when the sweep has replicates."""
    groups = [g for g in groups if g.get(metric) is not None]
    if not any(g["n"] > 1 for g in groups):
        return
    runs = {g["configuration"]: [r[metric] for r in rows if r["configuration"] == g["configuration"]
                                 and usable(r, metric)] for g in groups}  # fmt: skip
    image = interval_plot([(g["configuration"], runs[g["configuration"]], g[metric].mean, g[metric].low,
                            g[metric].high) for g in groups], metric)  # fmt: skip
    image.save(sweep_dir / "groups.png")
    writer = SummaryWriter(str(sweep_dir / "tensorboard"))
    writer.add_image(f"sweep/{metric}", torch.from_numpy(np.array(image)).permute(2, 0, 1), 0)
    writer.close()
