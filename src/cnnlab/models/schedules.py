"""LR schedules as per-step multipliers of each param group's own LR.

A multiplier (LambdaLR) rather than torch's OneCycleLR / CosineAnnealingLR keeps the ratio between
param groups (discriminative fine-tuning LRs) and composes with a freeze gate (LR x 0 while frozen).
Each factory is called with the run's total optimizer steps, known only once the Trainer is attached.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from cnnlab.errors import Problems, is_number


def check_scheduler(values: Mapping[str, Any] | None, problems: Problems) -> None:
    """The rules for `scheduler.*` (the keys of the factories below)."""
    values = values or {}
    if "warmup_fraction" in values:
        problems.in_range("scheduler.warmup_fraction", values["warmup_fraction"], 0, 1, "[)")
    if "min_factor" in values:
        problems.in_range("scheduler.min_factor", values["min_factor"], 0, 1, "[]")
    if "pct_start" in values:
        problems.in_range("scheduler.pct_start", values["pct_start"], 0, 1, "()")
    for key in ("div_factor", "final_div_factor"):
        if key in values:
            problems.check(is_number(values[key]) and values[key] > 0, f"scheduler.{key}", values[key], "a number > 0")


def constant(total_steps: int) -> Callable[[int], float]:
    return lambda step: 1.0


def cosine(total_steps: int, warmup_fraction: float = 0.0, min_factor: float = 0.0) -> Callable[[int], float]:
    """Linear warm-up over `warmup_fraction` of the steps, then cosine decay to `min_factor`."""
    warmup = int(total_steps * warmup_fraction)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def one_cycle(
    total_steps: int, pct_start: float = 0.25, div_factor: float = 25.0, final_div_factor: float = 1e4
) -> Callable[[int], float]:
    """Leslie Smith's one-cycle: cosine up from lr/div_factor to lr, then down to lr/(div*final_div)."""
    up = max(1, int(total_steps * pct_start))
    start, end = 1 / div_factor, 1 / (div_factor * final_div_factor)

    def factor(step: int) -> float:
        if step < up:
            return start + (1 - start) * 0.5 * (1 - math.cos(math.pi * step / up))
        progress = min(1.0, (step - up) / max(1, total_steps - up))
        return end + (1 - end) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor
