"""Command-line overrides: an override's key and value, and which keys a sweep varies.

The swept keys name a sweep's job dirs (`0_optimizer.lr-0.001_seed-1`, not every constant given with them) and fill
its hparams table. They are read from `<sweep dir>/multirun.yaml`, the sweep's own config, which exists before the
first job's dir is named (`cnnlab.run.sweeps.callback.SweepCallback` writes it for every sweeper).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException

from cnnlab.errors import CnnlabError
from cnnlab.utils.files import read_yaml

SWEEP_CONFIG = "multirun.yaml"


def split_override(override: str) -> tuple[str, str]:
    """A command-line override as (key, value): `+trainer.profiler=simple` -> (`trainer.profiler`, `simple`)."""
    key, _, value = str(override).lstrip("+~").partition("=")
    return key, value


def swept_keys(sweep_dir: str | Path) -> set[str]:
    """The keys a sweep varies: those given several values on its command line (`optimizer.lr=1e-3,3e-3`,
    `seed=range(3)`; a list value such as `widths=[16,32]` is one value) and those its sweeper searches
    (`hydra.sweeper.params`: Optuna's, cv=5fold's folds). Empty when `sweep_dir` holds no sweep config."""
    config = Path(sweep_dir) / SWEEP_CONFIG
    if not config.is_file():
        return set()
    hydra = (read_yaml(config, sweep_dir) or {}).get("hydra") or {}
    keys = {str(key) for key in (hydra.get("sweeper") or {}).get("params") or {}}
    parser = OverridesParser.create()
    for override in (hydra.get("overrides") or {}).get("task") or []:
        try:
            is_sweep = parser.parse_override(str(override)).is_sweep_override()
        except HydraException as err:  # Hydra parsed these once: this file was edited since
            raise CnnlabError(
                f"{config}: hydra.overrides.task holds {override!r}, which is not a Hydra override ({err}). "
                "Restore the file, or remove it to name no key as swept."
            ) from None
        if is_sweep:
            keys.add(split_override(override)[0])
    return keys


def swept_overrides(overrides: Iterable[str], keys: set[str]) -> list[str]:
    """The overrides of one job that set a swept key (`optimizer.lr=0.001`), in the order the job was given them."""
    return [str(o) for o in overrides if split_override(o)[0] in keys]
