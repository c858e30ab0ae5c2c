"""`EMA` (`callbacks=ema`): an exponential moving average of the weights, which validation, test and later uses get."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import EMAWeightAveraging


class EMA(EMAWeightAveraging):
    """`callbacks=ema`: an exponential moving average of the weights (and BatchNorm statistics), updated after every
    `every_n_steps`-th optimizer step from step `start_step` on. Validation, the checkpoints' `state_dict`, the test
    and every later use (eval, predict, export) get the averaged weights; checkpoints also keep the raw weights
    (`current_model_state`) and the average's step count, so a resumed run goes on exactly.

    Lightning's `EMAWeightAveraging`, with one fix: its `on_load_checkpoint` also runs when `trainer.test` loads the
    best checkpoint after training, and then puts the checkpoint's *raw* weights into the model - the test would
    measure the weights the average was meant to replace. Here it restores the average only when fitting.
    """

    def __init__(self, decay: float = 0.999, every_n_steps: int = 1, start_step: int = 0) -> None:
        super().__init__(decay=decay, update_every_n_steps=every_n_steps, update_starting_at_step=start_step)

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        if trainer.state.fn == "fit":
            super().on_load_checkpoint(trainer, pl_module, checkpoint)
