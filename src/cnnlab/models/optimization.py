"""The optimizer step cnnlab writes out: backward, gradient accumulation, clipping, step, the LR schedule and the
transfer policy's LR gate.

Why written out: beside a plain PyTorch loop on a 2-core CPU, Lightning's automatic-optimization closure cost 21%
of a seed-CNN step, this 3% (README, Speed). Lightning refuses `accumulate_grad_batches` and gradient clipping
under manual optimization, so both live here, with Lightning's meaning: the loss of each of N batches is divided
by N, the optimizer steps every N batches and at the epoch's last batch, clipping applies to the accumulated
gradient, and the LR schedule (and `trainer.max_steps`, `global_step`) count optimizer steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import lightning as L
import torch

from cnnlab.errors import CnnlabError
from cnnlab.utils.config import build

# `optimizer.*` keys cnnlab reads itself (the param groups), not passed to the optimizer's class.
CNNLAB_OPTIMIZER_KEYS = ("decay_norm_and_bias",)
CONSTANT_SCHEDULE = {"_target_": "cnnlab.models.schedules.constant", "_partial_": True}


@dataclass
class StepSettings:
    """`trainer.accumulate_grad_batches`, `gradient_clip_val`, `gradient_clip_algorithm`: applied here, not by
    Lightning (see the module's docstring)."""

    accumulate_grad_batches: int = 1
    gradient_clip_val: float | None = None
    gradient_clip_algorithm: str = "norm"


def total_optimizer_steps(trainer: L.Trainer, accumulate: int) -> float:
    """The optimizer steps of the whole run (what an LR schedule spans), counted as Lightning counts them with
    accumulation; `inf` when the run has no set length. (The Trainer itself runs with accumulate_grad_batches=1.)"""
    trainer.estimated_stepping_batches  # noqa: B018 - makes the Trainer count its training batches
    max_steps = trainer.max_steps if trainer.max_steps != -1 else math.inf
    per_epoch, epochs = trainer.num_training_batches, trainer.max_epochs
    if not math.isfinite(per_epoch) or epochs in (None, -1):
        return max_steps
    return min(math.ceil(per_epoch / accumulate) * max(epochs, 1), max_steps)


def optimizer_arguments(optimizer: Mapping[str, Any]) -> dict[str, Any]:
    """`optimizer.*` without the keys cnnlab reads itself: what the optimizer's class is built from."""
    return {k: v for k, v in optimizer.items() if k not in CNNLAB_OPTIMIZER_KEYS}


def build_optimizer(module: L.LightningModule, param_groups: list[dict[str, Any]], optimizer: Mapping[str, Any],
                    scheduler: Mapping[str, Any] | None, gate: Callable[[str], float],
                    accumulate: int) -> dict[str, Any]:  # fmt: skip
    """One optimizer over every param group (registered up front) and one per-step LambdaLR whose factor per group is
    the schedule's times `gate(group name)` (0 while a frozen stage waits)."""
    opt = build(optimizer_arguments(optimizer))(param_groups)
    schedule_cfg = dict(scheduler or CONSTANT_SCHEDULE)
    total_steps = total_optimizer_steps(module.trainer, accumulate)
    if not math.isfinite(total_steps) and not schedule_cfg["_target_"].endswith(".constant"):
        raise CnnlabError(
            f"scheduler {schedule_cfg['_target_']} needs the run's length: set trainer.max_epochs or "
            "trainer.max_steps, or use scheduler=none."
        )
    schedule = build(schedule_cfg)(total_steps=int(total_steps) if math.isfinite(total_steps) else 0)
    lambdas = [(lambda step, name=group["name"]: schedule(step) * gate(name)) for group in opt.param_groups]
    lr_scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambdas)
    return {"optimizer": opt, "lr_scheduler": {"scheduler": lr_scheduler, "interval": "step"}}


def refresh_gated_lrs(scheduler: torch.optim.lr_scheduler.LambdaLR | None) -> None:
    """Set each group's LR from the schedule and the gate now: the gate may have changed (an epoch unfroze a stage)
    since the scheduler last stepped."""
    if not isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR):  # none, or the LR finder's own during its sweep
        return
    for group, base_lr, factor in zip(
        scheduler.optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas, strict=True
    ):
        group["lr"] = base_lr * factor(scheduler.last_epoch)


class WrittenOutStep:
    """Backward for every batch; clip, step and schedule every `accumulate_grad_batches` batches."""

    def __init__(self, settings: StepSettings | None = None) -> None:
        self.settings = settings or StepSettings()
        self.pending = 0  # batches whose gradients are summed but not yet stepped on

    @property
    def at_boundary(self) -> bool:
        """No gradients are waiting for a step: a checkpoint now holds everything a resume needs."""
        return self.pending == 0

    def _window_ends(self, trainer: L.Trainer, batch_idx: int) -> bool:
        n = self.settings.accumulate_grad_batches
        last = trainer.fit_loop.epoch_loop.batch_progress.is_last_batch or batch_idx + 1 >= trainer.num_training_batches
        return (batch_idx + 1) % n == 0 or last

    def __call__(self, module: L.LightningModule, loss: torch.Tensor, batch_idx: int) -> bool:
        """This batch's backward and, at the end of an accumulation window, the step. True when it stepped."""
        optimizer = module.optimizers()
        n = self.settings.accumulate_grad_batches
        if self.pending == 0:
            optimizer.zero_grad(set_to_none=True)
        module.manual_backward(loss / n if n > 1 else loss)
        self.pending += 1
        if not self._window_ends(module.trainer, batch_idx):
            return False
        if self.settings.gradient_clip_val:
            module.clip_gradients(optimizer, gradient_clip_val=self.settings.gradient_clip_val,
                                  gradient_clip_algorithm=self.settings.gradient_clip_algorithm)  # fmt: skip
        optimizer.step()
        self.pending = 0
        scheduler = module.lr_schedulers()
        if scheduler is not None:
            scheduler.step()
        return True
