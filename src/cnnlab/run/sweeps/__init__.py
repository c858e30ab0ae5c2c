"""Sweeps: every job's outcome on disk, a summary of the sweep, and a non-zero exit if any job failed.

Hydra runs the jobs (basic launcher, Optuna, submitit); `SweepCallback` records each job's status in
`<job dir>/job.json` as it ends - also when it raised - and rewrites `summary.csv` / `summary.md` in the
sweep dir, so a summary exists even if the sweep is interrupted. `cnnlab-summarize <sweep_dir>` rebuilds
them at any time.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import re
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.core.utils import JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig
from torch.utils.tensorboard import SummaryWriter

from cnnlab import metrics as M
from cnnlab.errors import CnnlabError
from cnnlab.utils.cli import PARTIAL_FAILURE_EXIT_CODE, record_exit_code
from cnnlab.utils.config import split_override
from cnnlab.utils.figures import interval_plot
from cnnlab.utils.files import read_json, read_yaml
from cnnlab.utils.io import csv_cell, write_json_atomic, write_text_atomic
from cnnlab.utils.stats import Comparison, paired, spread

log = logging.getLogger(__name__)
JOB_FILE = "job.json"
METRIC_COLUMNS = (M.VAL_ACC_BEST, M.VAL_ACC, M.TEST_ACC, M.TEST_LOSS, M.TRAIN_LOSS)


def _is_multirun(config: DictConfig) -> bool:
    return config.hydra.mode == RunMode.MULTIRUN


def job_record(job_return: Any) -> dict[str, Any]:
    """What one job ended with: status, its overrides, its returned metric or its error."""
    record: dict[str, Any] = {"overrides": list(job_return.overrides or [])}
    if job_return.status == JobStatus.COMPLETED:
        value = job_return.return_value
        record["status"] = "completed"
        record["return_value"] = float(value) if isinstance(value, int | float) else None
    else:
        error = job_return._return_value  # the exception the job raised (Hydra keeps it here)
        record["status"] = "failed"
        record["error"] = f"{type(error).__name__}: {error}"
        record["traceback"] = "".join(traceback.format_exception(error))[-4000:]
    return record


REPLICATE_KEYS = ("seed", "data.fold")  # jobs that differ only in these are replicates of one configuration


def _read_job(sweep_dir: Path, job_dir: Path, job_file: Path, overrides_file: Path) -> tuple[Path, dict, dict]:
    """A job's record and metrics: regular files inside the sweep dir (a sweep dir may come from someone else), or
    one error naming the file."""
    metrics_file, reading = job_dir / "metrics.json", job_file
    try:
        record = read_json(job_file, sweep_dir) if job_file.is_file() else {}
        reading = overrides_file
        if "overrides" not in record:
            record["overrides"] = read_yaml(overrides_file, sweep_dir) or []
        reading = metrics_file
        metrics = read_json(metrics_file, sweep_dir) if metrics_file.is_file() else {}
    except (OSError, ValueError) as err:
        raise CnnlabError(f"{reading} cannot be read as a job's file ({type(err).__name__}: {err}): cnnlab reads a "
                          "sweep dir's files only as plain JSON / YAML, regular files inside it. Remove or replace "
                          "that file.") from None  # fmt: skip
    return job_dir, record, metrics


def read_jobs(sweep_dir: Path) -> list[dict[str, Any]]:
    """One row per job dir: its overrides, status, error and final metrics; `configuration` is what the job's
    overrides say beyond those every job shares, less seed / fold, which make `replicate`."""
    records = []
    for job_dir in sorted(p for p in Path(sweep_dir).iterdir() if p.is_dir()):
        job_file, overrides_file = job_dir / JOB_FILE, job_dir / ".hydra" / "overrides.yaml"
        if not job_file.is_file() and not overrides_file.is_file():
            continue
        records.append(_read_job(Path(sweep_dir), job_dir, job_file, overrides_file))
    shared = set.intersection(*(set(r["overrides"]) for _, r, _ in records)) if len(records) > 1 else set()
    rows = []
    for job_dir, record, metrics in records:
        overrides = record["overrides"]
        replicate = [o for o in overrides if split_override(o)[0] in REPLICATE_KEYS]
        configuration = [o for o in overrides if split_override(o)[0] not in REPLICATE_KEYS and o not in shared]
        rows.append({
            "job": job_dir.name,
            "status": record.get("status", "completed" if metrics else "unfinished"),
            "overrides": " ".join(overrides),
            "configuration": " ".join(configuration) or "(every job)",
            "replicate": " ".join(replicate) or "(one run)",
            **{k: metrics.get(k) for k in METRIC_COLUMNS},
            "params": (metrics.get("params") or {}).get("total"),
            "duration_s": metrics.get("duration_s"),
            "error": record.get("error", ""),
        })  # fmt: skip
    return rows


SWEEP_SYNTAX = re.compile(r",|^(range|choice|interval|glob|tag)\(")


def swept_keys(sweep_dir: str | Path) -> set[str]:
    """The keys a sweep varies: those given several values on its command line (`optimizer.lr=1e-3,3e-3`,
    `seed=range(3)`) and those its sweeper searches (`hydra.sweeper.params`: Optuna's, cv=5fold's folds)."""
    config = Path(sweep_dir) / "multirun.yaml"
    if not config.is_file():
        return set()
    hydra = (read_yaml(config, sweep_dir) or {}).get("hydra") or {}
    keys = set((hydra.get("sweeper") or {}).get("params") or {})
    for override in (hydra.get("overrides") or {}).get("task") or []:
        key, value = split_override(override)
        if SWEEP_SYNTAX.search(value):
            keys.add(key)
    return keys


def _usable(row: dict[str, Any], metric: str) -> bool:
    value = row.get(metric)
    return row["status"] == "completed" and isinstance(value, int | float) and not math.isnan(value)


def group_jobs(rows: list[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """One row per configuration: n completed replicates, failed ones counted (never averaged in), and the
    spread of every metric. Best first by the lower end of `metric`'s 95% interval: a configuration must be good
    *and* consistent to lead (groups of one run, with no interval, rank by their value after those with one)."""
    by_configuration: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_configuration.setdefault(row["configuration"], []).append(row)
    groups = []
    for configuration, members in by_configuration.items():
        done = [r for r in members if _usable(r, metric)]
        group: dict[str, Any] = {"configuration": configuration, "n": len(done),
                                 "failed": sum(r["status"] != "completed" for r in members)}  # fmt: skip
        for column in METRIC_COLUMNS:
            values = [r[column] for r in done if isinstance(r.get(column), int | float)]
            group[column] = spread(values) if values else None
        groups.append(group)

    def rank(group: dict[str, Any]) -> tuple[int, float, float]:
        value = group.get(metric)
        if value is None:
            return (2, 0.0, 0.0)
        return (0, -value.low, -value.mean) if value.n > 1 else (1, -value.mean, 0.0)

    return sorted(groups, key=rank)


def _sort_key(metric: str):
    def key(row: dict[str, Any]) -> tuple[int, float]:
        ok = _usable(row, metric)
        return (0 if ok else 1, -row[metric] if ok else 0.0)

    return key


def optuna_best(sweep_dir: Path) -> dict[str, Any] | None:
    path = Path(sweep_dir) / "optimization_results.yaml"
    return read_yaml(path, sweep_dir) if path.is_file() else None


JOB_COLUMNS = ["job", "status", "overrides", *METRIC_COLUMNS, "params", "duration_s", "error"]


def write_summary(sweep_dir: str | Path, metric: str | None = None, plot: bool = False) -> list[dict[str, Any]]:
    """Write summary.csv (one row per job), summary_groups.csv (one per configuration, with the spread of its
    replicates) and summary.md into the sweep dir, best first; with `plot` (once a sweep is over, not after every
    job: each plot is a TensorBoard event), also groups.png. Returns the job rows."""
    sweep_dir = Path(sweep_dir)
    metric = metric or _optimized_metric(sweep_dir)
    rows = sorted(read_jobs(sweep_dir), key=_sort_key(metric))
    groups = group_jobs(rows, metric)
    write_text_atomic(sweep_dir / "summary.csv", _csv(rows, ["configuration", "replicate", *JOB_COLUMNS]))
    write_text_atomic(sweep_dir / "summary_groups.csv", _csv(_flat_groups(groups), None))
    write_text_atomic(sweep_dir / "summary.md", _markdown(sweep_dir, rows, groups, metric))
    if plot:
        _plot_groups(sweep_dir, rows, groups, metric)
    return rows


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
        row = {"configuration": group["configuration"], "n": group["n"], "failed": group["failed"]}
        for column in METRIC_COLUMNS:
            value = group[column]
            for name, field in (("mean", "mean"), ("sd", "sd"), ("ci_low", "low"), ("ci_high", "high"),
                                ("min", "min"), ("max", "max")):  # fmt: skip
                row[f"{column}/{name}"] = getattr(value, field) if value is not None else None
        flat.append(row)
    return flat


def _markdown(sweep_dir: Path, rows: list[dict[str, Any]], groups: list[dict[str, Any]], metric: str) -> str:
    failed = sum(r["status"] == "failed" for r in rows)
    lines = [f"# Sweep {sweep_dir.name}", "", f"{len(rows)} jobs, {failed} failed.", ""]
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
        lines += ["", "## Optuna", "", f"best value: {best.get('best_value')}", "", "best parameters:", ""]
        lines += [f"- `{k}={v}`" for k, v in (best.get("best_params") or {}).items()]
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value).replace("|", "\\|").replace("\n", " ")[:300]


def _optimized_metric(sweep_dir: Path) -> str:
    config = Path(sweep_dir) / "multirun.yaml"
    if config.is_file():
        return (read_yaml(config, sweep_dir) or {}).get("optimized_metric") or M.VAL_ACC_BEST
    return M.VAL_ACC_BEST


def _plot_groups(sweep_dir: Path, rows: list[dict[str, Any]], groups: list[dict[str, Any]], metric: str) -> None:
    """`groups.png` in the sweep dir, and the same image in `<sweep dir>/tensorboard`: every configuration's runs
    with their mean and interval, when the sweep has replicates."""
    groups = [g for g in groups if g.get(metric) is not None]
    if not any(g["n"] > 1 for g in groups):
        return
    runs = {g["configuration"]: [r[metric] for r in rows if r["configuration"] == g["configuration"]
                                 and _usable(r, metric)] for g in groups}  # fmt: skip
    image = interval_plot([(g["configuration"], runs[g["configuration"]], g[metric].mean, g[metric].low,
                            g[metric].high) for g in groups], metric)  # fmt: skip
    image.save(sweep_dir / "groups.png")
    writer = SummaryWriter(str(sweep_dir / "tensorboard"))
    writer.add_image(f"sweep/{metric}", torch.from_numpy(np.array(image)).permute(2, 0, 1), 0)
    writer.close()


def compare(sweep_dir: str | Path, a: str, b: str, metric: str | None = None) -> Comparison:
    """The paired difference a - b of two configurations of a sweep over their matched seeds / folds. `a` and `b`
    name configurations as summary.md does, or by a part that matches exactly one."""
    sweep_dir = Path(sweep_dir)
    metric = metric or _optimized_metric(sweep_dir)
    rows = [r for r in read_jobs(sweep_dir) if _usable(r, metric)]
    configurations = sorted({r["configuration"] for r in rows})
    chosen = [_pick(name, configurations) for name in (a, b)]
    values = [{r["replicate"]: r[metric] for r in rows if r["configuration"] == c} for c in chosen]
    return paired(values[0], values[1], (chosen[0], chosen[1]), metric)


def _pick(name: str, configurations: list[str]) -> str:
    if name in configurations:
        return name
    found = [c for c in configurations if name in c]
    if len(found) != 1:
        listed = "\n  ".join(configurations)
        raise CnnlabError(
            f"--compare {name!r} matches {len(found)} configurations of the sweep; name one of:\n  {listed}"
        )
    return found[0]


class SweepCallback(Callback):
    """Hydra callback (conf/hydra/default.yaml): job.json per job, the sweep summary, the failure count."""

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        if not _is_multirun(config):
            return
        job_dir = Path(config.hydra.runtime.output_dir)
        write_json_atomic(job_dir / JOB_FILE, job_record(job_return))
        try:
            write_summary(config.hydra.sweep.dir, config.get("optimized_metric"))
        except Exception as err:  # a summary is a convenience: never let it fail a job
            log.warning("could not update the sweep summary: %s", err)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        rows = write_summary(config.hydra.sweep.dir, config.get("optimized_metric"), plot=True)
        failed_jobs = sum(r["status"] == "failed" for r in rows)
        summary = Path(config.hydra.sweep.dir) / "summary.md"
        if failed_jobs:
            record_exit_code(PARTIAL_FAILURE_EXIT_CODE)
            log.error("%d of %d jobs failed; see %s", failed_jobs, len(rows), summary)
        else:
            log.info("%d jobs done; summary: %s", len(rows), summary)
