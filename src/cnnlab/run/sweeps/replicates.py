"""A sweep's configurations and their replicates (jobs that differ only in seed / fold): each configuration's spread
over its completed replicates, the ranking by it, and the paired difference of two configurations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError
from cnnlab.run.sweeps.records import METRIC_COLUMNS, optimized_metric, read_jobs, usable
from cnnlab.utils.stats import Comparison, paired, spread


def group_jobs(rows: list[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """One row per configuration: n completed replicates, failed ones counted (never averaged in), and the
    spread of every metric. Best first by the lower end of `metric`'s 95% interval: a configuration must be good
    *and* consistent to lead (groups of one run, with no interval, rank by their value after those with one)."""
    by_configuration: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_configuration.setdefault(row["configuration"], []).append(row)
    groups = []
    for configuration, members in by_configuration.items():
        done, duplicates = distinct_replicates([r for r in members if usable(r, metric)])
        group: dict[str, Any] = {"configuration": configuration, "n": len(done), "duplicates": duplicates,
                                 "failed": sum(r["status"] == "failed" for r in members),
                                 "pruned": sum(r["status"] == "pruned" for r in members)}  # fmt: skip
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


def distinct_replicates(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """Runs, one per configuration and replicate (seed / fold), and how many duplicates were left out: the same
    configuration with the same seed is the same run twice (two workers, a relaunch), and its agreement with itself
    is no evidence of consistency. The first job of each replicate is kept."""
    kept: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        kept.setdefault((row["configuration"], row["replicate"]), row)
    return list(kept.values()), len(rows) - len(kept)


def compare(sweep_dir: str | Path, a: str, b: str, metric: str | None = None) -> Comparison:
    """The paired difference a - b of two configurations of a sweep over their matched seeds / folds. `a` and `b`
    name configurations as summary.md does, or by a part that matches exactly one."""
    sweep_dir = Path(sweep_dir)
    metric = metric or optimized_metric(sweep_dir)
    rows, _ = distinct_replicates([r for r in read_jobs(sweep_dir) if usable(r, metric)])
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
