"""A stop on a signal, as the training loop sees it: the exception that carries where the run can resume from."""

from __future__ import annotations

import signal
from pathlib import Path

import lightning as L

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # Ctrl+C; `kill`, SLURM preemption


class TrainingInterrupted(Exception):
    """Training stopped on a signal after saving a checkpoint it can resume from."""

    def __init__(self, signum: int, checkpoint: Path, epoch: int, global_step: int) -> None:
        super().__init__(f"{signal.Signals(signum).name} at epoch {epoch}, global step {global_step}")
        self.signum, self.checkpoint, self.epoch, self.global_step = signum, checkpoint, epoch, global_step

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM


def last_checkpoint_path(trainer: L.Trainer) -> Path:
    """Where `last.ckpt` lives: the checkpoint callback's folder, else <run dir>/checkpoints."""
    callback = trainer.checkpoint_callback
    folder = (
        callback.dirpath
        if callback is not None and callback.dirpath
        else Path(trainer.default_root_dir) / "checkpoints"
    )
    return Path(folder) / "last.ckpt"
