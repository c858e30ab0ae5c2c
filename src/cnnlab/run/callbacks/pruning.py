"""`Pruning`: in a search's job, report the optimized metric after every validation and stop the run when the
study's pruner says so. Rank 0 decides (it holds the synced metric); every rank stops with it."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import lightning as L

if TYPE_CHECKING:  # the trial comes from cnnlab.run.search.job, which imports Optuna: only a search's jobs load it
    from cnnlab.run.search.job import JobTrial

log = logging.getLogger("cnnlab.run.callbacks.pruning")


class Pruning(L.Callback):
    def __init__(self, trial: JobTrial, monitor: str) -> None:
        self.trial, self.monitor = trial, monitor
        self.pruned_at: int | None = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        stop = False
        if trainer.is_global_zero:
            value = trainer.callback_metrics.get(self.monitor)
            stop = value is not None and self.trial.should_stop(float(value), trainer.current_epoch)
        stop = bool(trainer.strategy.broadcast(stop, src=0))
        if stop:
            self.pruned_at = trainer.current_epoch
            trainer.should_stop = True

    def state(self) -> dict[str, Any] | None:
        """What metrics.json says of the pruning: the trial, the epoch, the last value reported."""
        if self.pruned_at is None:
            return None
        return {"trial": self.trial.number, "epoch": self.pruned_at}
