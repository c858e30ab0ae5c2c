"""`DivergenceGuard`: stop a run whose training loss is NaN or Inf, before a checkpoint keeps the broken weights."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch

from cnnlab.errors import CnnlabError
from cnnlab.run.callbacks.interruption import last_checkpoint_path


class DivergenceGuard(L.Callback):
    """Stops the run when the training loss becomes NaN or Inf, before any checkpoint holds the broken weights.

    The loss is tested on the device every step; the result is read every `check_every_n_steps` (null: every
    step on the CPU, where reading is free; `trainer.log_every_n_steps` on accelerators, where a read waits for
    the device) and always at an epoch's last batch, before validation and the epoch's checkpoint.
    """

    def __init__(self, check_every_n_steps: int | None = None) -> None:
        if check_every_n_steps is not None and (not isinstance(check_every_n_steps, int) or check_every_n_steps < 1):
            raise CnnlabError(
                f"callbacks.divergence_guard.check_every_n_steps={check_every_n_steps!r}: null or an integer >= 1."
            )
        self.check_every_n_steps = check_every_n_steps
        self._bad_steps: torch.Tensor | None = None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._bad_steps = torch.zeros((), dtype=torch.int64, device=pl_module.device)

    def _every(self, trainer: L.Trainer, pl_module: L.LightningModule) -> int:
        if self.check_every_n_steps is not None:
            return self.check_every_n_steps
        return 1 if pl_module.device.type == "cpu" else max(1, trainer.log_every_n_steps)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is None or self._bad_steps is None:
            return
        self._bad_steps += (~torch.isfinite(loss.detach())).to(torch.int64)
        last = trainer.fit_loop.epoch_loop.batch_progress.is_last_batch
        if (trainer.global_step % self._every(trainer, pl_module) == 0 or last) and int(self._bad_steps):
            raise CnnlabError(self._message(trainer, batch_idx, float(loss.detach())))

    def _message(self, trainer: L.Trainer, batch_idx: int, loss: float) -> str:
        optimizer = trainer.optimizers[0]
        lrs = ", ".join(f"{g.get('name', i)} {g['lr']:.3g}" for i, g in enumerate(optimizer.param_groups))
        last = last_checkpoint_path(trainer)
        kept = (
            f"The last good checkpoint is {last}."
            if last.is_file()
            else "No checkpoint had been saved yet (the run diverged in its first epoch)."
        )
        value = "nan" if math.isnan(loss) else "inf" if math.isinf(loss) else "finite now, but was not"
        return (
            f"training diverged: the training loss is {value} at epoch {trainer.current_epoch}, batch {batch_idx} "
            f"(global step {trainer.global_step}); learning rates: {lrs}. {kept} Try a lower optimizer.lr, "
            "trainer.gradient_clip_val=1.0 or scheduler=onecycle (its warm-up); callbacks.divergence_guard=null "
            "turns this check off."
        )
