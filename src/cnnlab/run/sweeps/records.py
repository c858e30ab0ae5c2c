"""What a sweep leaves on disk, per job and for the whole sweep, and reading it back: `job.json` per job dir (its
status, overrides and error), one row per job with its final metrics, the sweep's optimized metric and Optuna's best.

A sweep dir may come from someone else: its files are read only as plain JSON / YAML, regular files inside it.
"""

from __future__ import annotations

import math
import traceback
from pathlib import Path
from typing import Any

from hydra.core.utils import JobStatus

from cnnlab import metrics as M
from cnnlab.errors import CnnlabError
from cnnlab.utils.files import read_json, read_yaml
from cnnlab.utils.overrides import SWEEP_CONFIG, split_override

JOB_FILE = "job.json"
METRIC_COLUMNS = (M.VAL_ACC_BEST, M.VAL_ACC, M.TEST_ACC, M.TEST_LOSS, M.TRAIN_LOSS)
REPLICATE_KEYS = ("seed", "data.fold")  # jobs that differ only in these are replicates of one configuration


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
        configuration = [o for o in overrides if _configures(o) and o not in shared]
        rows.append({
            "job": job_dir.name,
            "status": _status(record, metrics),
            "overrides": " ".join(overrides),
            "configuration": " ".join(configuration) or "(every job)",
            "replicate": " ".join(replicate) or "(one run)",
            **{k: metrics.get(k) for k in METRIC_COLUMNS},
            "params": (metrics.get("params") or {}).get("total"),
            "duration_s": metrics.get("duration_s"),
            "error": record.get("error", ""),
        })  # fmt: skip
    return rows


def _configures(override: str) -> bool:
    """Whether an override is part of what a job's configuration is: not a seed / fold (a replicate), not a
    `hydra.*` value (e.g. the trial id the Optuna sweeper gives each job)."""
    key = split_override(override)[0]
    return key not in REPLICATE_KEYS and not key.startswith("hydra.")


def _status(record: dict[str, Any], metrics: dict[str, Any]) -> str:
    """completed, pruned (stopped early by a search's pruner: never ranked or averaged), failed or unfinished."""
    status = record.get("status", "completed" if metrics else "unfinished")
    return "pruned" if status == "completed" and metrics.get("pruned") else status


def usable(row: dict[str, Any], metric: str) -> bool:
    """A completed job with a number for `metric`: the only kind that is ranked, averaged or compared."""
    value = row.get(metric)
    return row["status"] == "completed" and isinstance(value, int | float) and not math.isnan(value)


def optimized_metric(sweep_dir: Path) -> str:
    """The metric the sweep optimized (its `optimized_metric`), `metrics.VAL_ACC_BEST` when it names none."""
    config = Path(sweep_dir) / SWEEP_CONFIG
    if config.is_file():
        return (read_yaml(config, sweep_dir) or {}).get("optimized_metric") or M.VAL_ACC_BEST
    return M.VAL_ACC_BEST


def optuna_best(sweep_dir: Path) -> dict[str, Any] | None:
    """Optuna's best value and parameters (`optimization_results.yaml`), None for other sweepers."""
    path = Path(sweep_dir) / "optimization_results.yaml"
    return read_yaml(path, sweep_dir) if path.is_file() else None
