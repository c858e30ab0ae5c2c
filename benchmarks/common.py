"""Helpers shared by the benchmark scripts: compose a real config, time things, print ratios."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig

from cnnlab.utils.config import compose_config


def compose_train(*overrides: str, out: str | None = None) -> DictConfig:
    """conf/train.yaml as the CLI would compose it, writing into a temporary run dir."""
    return compose_config(overrides, output_dir=out, root_dir=Path.cwd())


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def report(name_a: str, times_a: list[float], name_b: str, times_b: list[float], unit: str = "s") -> float:
    """Print both medians and a/b; returns the ratio."""
    a, b = statistics.median(times_a), statistics.median(times_b)
    print(f"{name_a}: median {a:.3f} {unit} over {len(times_a)} ({', '.join(f'{t:.2f}' for t in times_a)})")
    print(f"{name_b}: median {b:.3f} {unit} over {len(times_b)} ({', '.join(f'{t:.2f}' for t in times_b)})")
    print(f"ratio {name_a} / {name_b} = {a / b:.3f}")
    return a / b
