"""Sweeps: every job's outcome on disk, a summary of the sweep, and a non-zero exit if any job failed.

Hydra runs the jobs (basic launcher, Optuna, submitit); `SweepCallback` records each job's status in
`<job dir>/job.json` as it ends - also when it raised - and rewrites `summary.csv` / `summary.md` in the
sweep dir, so a summary exists even if the sweep is interrupted. `cnnlab-summarize <sweep_dir>` rebuilds
them at any time.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import traceback
from pathlib import Path
from typing import Any

import yaml
from hydra.core.utils import JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from cnnlab import metrics as M
from cnnlab.utils.cli import PARTIAL_FAILURE_EXIT_CODE, record_exit_code
from cnnlab.utils.io import write_json_atomic, write_text_atomic

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


def read_jobs(sweep_dir: Path) -> list[dict[str, Any]]:
    """One row per job dir: its overrides, status, error and final metrics."""
    rows = []
    for job_dir in sorted(p for p in Path(sweep_dir).iterdir() if p.is_dir()):
        job_file, overrides_file = job_dir / JOB_FILE, job_dir / ".hydra" / "overrides.yaml"
        if not job_file.is_file() and not overrides_file.is_file():
            continue
        record = json.loads(job_file.read_text()) if job_file.is_file() else {}
        if "overrides" not in record:
            record["overrides"] = yaml.safe_load(overrides_file.read_text()) or []
        metrics_file = job_dir / "metrics.json"
        metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
        rows.append({
            "job": job_dir.name,
            "status": record.get("status", "completed" if metrics else "unfinished"),
            "overrides": " ".join(record["overrides"]),
            **{k: metrics.get(k) for k in METRIC_COLUMNS},
            "params": (metrics.get("params") or {}).get("total"),
            "duration_s": metrics.get("duration_s"),
            "error": record.get("error", ""),
        })  # fmt: skip
    return rows


def _sort_key(metric: str):
    def key(row: dict[str, Any]) -> tuple[int, float]:
        value = row.get(metric)
        ok = row["status"] == "completed" and isinstance(value, int | float) and not math.isnan(value)
        return (0 if ok else 1, -value if ok else 0.0)

    return key


def optuna_best(sweep_dir: Path) -> dict[str, Any] | None:
    path = Path(sweep_dir) / "optimization_results.yaml"
    return yaml.safe_load(path.read_text()) if path.is_file() else None


def write_summary(sweep_dir: str | Path, metric: str | None = None) -> list[dict[str, Any]]:
    """Write summary.csv and summary.md into the sweep dir, best job first; returns the rows."""
    sweep_dir = Path(sweep_dir)
    metric = metric or _optimized_metric(sweep_dir)
    rows = sorted(read_jobs(sweep_dir), key=_sort_key(metric))
    columns = ["job", "status", "overrides", *METRIC_COLUMNS, "params", "duration_s", "error"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(sweep_dir / "summary.csv", buffer.getvalue())
    write_text_atomic(sweep_dir / "summary.md", _markdown(sweep_dir, rows, columns, metric))
    return rows


def _markdown(sweep_dir: Path, rows: list[dict[str, Any]], columns: list[str], metric: str) -> str:
    failed = sum(r["status"] == "failed" for r in rows)
    lines = [
        f"# Sweep {sweep_dir.name}",
        "",
        f"{len(rows)} jobs, {failed} failed; sorted by {metric} (best first).",
        "",
    ]
    lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [_cell(row.get(c)) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
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
        return (yaml.safe_load(config.read_text()) or {}).get("optimized_metric") or M.VAL_ACC_BEST
    return M.VAL_ACC_BEST


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
        rows = write_summary(config.hydra.sweep.dir, config.get("optimized_metric"))
        failed_jobs = sum(r["status"] == "failed" for r in rows)
        summary = Path(config.hydra.sweep.dir) / "summary.md"
        if failed_jobs:
            record_exit_code(PARTIAL_FAILURE_EXIT_CODE)
            log.error("%d of %d jobs failed; see %s", failed_jobs, len(rows), summary)
        else:
            log.info("%d jobs done; summary: %s", len(rows), summary)
