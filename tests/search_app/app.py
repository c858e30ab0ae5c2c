"""A Hydra app with no torch for the search tests: its "training" is 5 epochs of a known curve, reported to the trial
through `cnnlab.run.search.job` exactly as cnnlab's Pruning callback does. Runs in about a second a trial, so several
workers on a real PostgreSQL server fit in a test of seconds.

    python tests/search_app/app.py -m hydra.sweeper.storage=... hydra.sweeper.n_trials=12
"""

from __future__ import annotations

import time
from pathlib import Path

import hydra
from hydra.core.plugins import Plugins
from omegaconf import DictConfig

from cnnlab.run.search.job import job_trial
from hydra_plugins.cnnlab_optuna.sweeper import OptunaSweeper


def curve(x: float, width: str, epoch: int) -> float:
    """The value after `epoch`: best near x=0.3 with width `wide`; every trial's curve rises with the epochs."""
    peak = 1.0 - (x - 0.3) ** 2 - (0.0 if width == "wide" else 0.2)
    return peak * (epoch + 1) / 5


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    if cfg.fail_above is not None and cfg.x > cfg.fail_above:
        raise ValueError(f"x={cfg.x} is above fail_above={cfg.fail_above}")
    trial = job_trial()
    for epoch in range(5):
        time.sleep(cfg.epoch_seconds)
        value = curve(cfg.x, cfg.width, epoch)
        if trial is not None and trial.should_stop(value, epoch):
            return value
    if cfg.mark_dir:
        Path(cfg.mark_dir, f"done-{cfg.x}-{cfg.width}").touch()
    return value


if __name__ == "__main__":
    Plugins.instance().register(OptunaSweeper)  # the tests run from an editable install, hidden from Hydra's scan
    main()
