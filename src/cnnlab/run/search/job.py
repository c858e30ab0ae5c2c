"""A search job's side of its trial: the sweeper gives each job `hydra.sweeper.trial_id`; the job reports its
validation metric after every epoch and asks whether the pruner stops it. The storage is the only channel between
job and worker, so this works wherever the job runs (the worker's process, a subprocess, a SLURM node)."""

from __future__ import annotations

import logging
import math
from typing import Any

import optuna
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig

from cnnlab.run.search.ledger import PRUNED_AT
from cnnlab.run.search.storage import open_storage

log = logging.getLogger("cnnlab.run.search")


class JobTrial:
    """The trial one job runs, opened from the study's storage."""

    def __init__(self, sweeper: DictConfig) -> None:
        study = optuna.load_study(study_name=sweeper.study_name, storage=open_storage(sweeper.storage),
                                  pruner=build_pruner(sweeper.get("pruner")))  # fmt: skip
        self.trial = optuna.trial.Trial(study, int(sweeper.trial_id))
        self.pruned_at: int | None = None

    @property
    def number(self) -> int:
        return self.trial.number

    def should_stop(self, value: float, step: int) -> bool:
        """Report `value` at `step` (an epoch); True when the pruner stops this trial (recorded in the study)."""
        if value is None or math.isnan(value):
            return False
        self.trial.report(float(value), step)
        if not self.trial.should_prune():
            return False
        self.pruned_at = step
        self.trial.set_user_attr(PRUNED_AT, step)
        log.info("optuna: trial %d pruned after epoch %d (%.4f)", self.trial.number, step, value)
        return True


def job_trial() -> JobTrial | None:
    """This job's trial when a search launched it, else None. Without a pruner (`pruner=none`) it still reports each
    epoch's value: the dashboard plots them."""
    if not HydraConfig.initialized():
        return None
    sweeper = HydraConfig.get().sweeper
    if sweeper.get("trial_id") is None:
        return None
    return JobTrial(sweeper)


def build_pruner(config: Any) -> optuna.pruners.BasePruner:
    """The configured pruner (`hydra/sweeper/pruner=median | hyperband | successive_halving | none`)."""
    if not config or not config.get("_target_"):
        return optuna.pruners.NopPruner()
    return instantiate(config)
