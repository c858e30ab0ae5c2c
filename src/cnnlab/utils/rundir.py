"""Run directories that are unique even when two runs start in the same second."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

from omegaconf import OmegaConf


@cache
def unique_dir(base: str) -> str:
    """Create and return `base`, or `base_2`, `base_3`, ... if taken: mkdir is atomic, so no two runs share one."""
    path = Path(base)
    path.parent.mkdir(parents=True, exist_ok=True)
    for n in range(1, 10_000):
        candidate = path if n == 1 else path.with_name(f"{path.name}_{n}")
        try:
            os.mkdir(candidate)
            return str(candidate)
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a unique run directory next to {base}")


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("unique_dir"):
        OmegaConf.register_new_resolver("unique_dir", unique_dir)
