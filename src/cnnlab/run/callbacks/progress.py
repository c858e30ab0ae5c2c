"""How a run shows its progress: Lightning's tqdm bar on a terminal, one log line per epoch anywhere else.

Off a terminal (a log file, CI, a SLURM job, `| tee`) a bar is no use: each refresh writes a frame of `\\r` and
cursor codes that a file keeps, so the log fills with them. There a line per epoch says the same, once, through the
`cnnlab` logger, so that it lands in train.log too.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, TextIO

import lightning as L
from lightning.pytorch.callbacks import ProgressBar, TQDMProgressBar

from cnnlab import metrics as M
from cnnlab.errors import CnnlabError

log = logging.getLogger(__name__)

# What an epoch line shows, of those the run logs; the validation's only after a validation in that epoch.
TRAIN_SHOWN = (M.TRAIN_LOSS,)
VAL_SHOWN = (M.VAL_LOSS, M.VAL_ACC)


def console_progress(refresh_rate: int = 50, stream: TextIO | None = None) -> ProgressBar:
    """The progress display for where the run's output goes (`stream`, default stdout, where tqdm and Hydra's
    console log write): Lightning's `TQDMProgressBar` on a terminal, refreshed every `refresh_rate` steps, else
    `EpochLines`.

    `refresh_rate=0` turns the bar off (the key tests, notebooks and studies have always used to keep their output
    free of frames), and then the epoch lines show, on a terminal too: a user who silences the bar still wants to
    see that the run lives, and a line per epoch costs nothing. Silence both with `callbacks.progress_bar=null`.
    """
    if not isinstance(refresh_rate, int) or isinstance(refresh_rate, bool) or refresh_rate < 0:
        raise CnnlabError(f"callbacks.progress_bar.refresh_rate={refresh_rate!r}: a whole number of steps >= 0 "
                          "between bar refreshes (0: no bar, a log line per epoch).")  # fmt: skip
    if refresh_rate > 0 and on_terminal(sys.stdout if stream is None else stream):
        return TQDMProgressBar(refresh_rate=refresh_rate)
    return EpochLines()


def on_terminal(stream: Any) -> bool:
    """Whether `stream` is a terminal; a missing or closed stream (pythonw, a daemon) is not."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class EpochLines(ProgressBar):
    """One log line per training epoch, e.g. `epoch 3/10  train/loss 0.4120  val/loss 0.3980  val/acc 0.8731
    (12.4 s)`: epochs counted from 1 (the 10th of 10 is `10/10`), the time the epoch took with its validation.

    A line is written when the next epoch starts or training ends, not at the epoch's own end: the model logs its
    training metrics in its `on_train_epoch_end`, which Lightning calls after every callback's.
    """

    def __init__(self) -> None:
        super().__init__()
        self._enabled = True
        self._started = 0.0
        self._validated = False  # a validation ran in this epoch (else its val/ values would be an older epoch's)
        self._finished: tuple[int, float, bool] | None = None  # the epoch due a line: index, seconds, validated

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    def disable(self) -> None:  # Lightning's LR and batch-size finders, and every rank but the first
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._write_finished_epoch(trainer)
        self._started, self._validated = time.perf_counter(), False

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._validated = True

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._finished = (trainer.current_epoch, time.perf_counter() - self._started, self._validated)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._write_finished_epoch(trainer)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._write_finished_epoch(trainer)  # an epoch that ended before the stop still gets its line

    def _write_finished_epoch(self, trainer: L.Trainer) -> None:
        finished, self._finished = self._finished, None
        if finished is None or not self._enabled:
            return
        epoch, seconds, validated = finished
        log.info("%s", epoch_line(epoch, trainer.max_epochs, self._shown_metrics(trainer, validated), seconds))

    @staticmethod
    def _shown_metrics(trainer: L.Trainer, validated: bool) -> dict[str, float]:
        values = trainer.callback_metrics
        names = TRAIN_SHOWN + (VAL_SHOWN if validated else ())
        return {name: float(values[name]) for name in names if name in values}


def epoch_line(epoch: int, max_epochs: int | None, metrics: dict[str, float], seconds: float) -> str:
    """`epoch 3/10  train/loss 0.4120  val/acc 0.8731  (12.4 s)` for the epoch of index `epoch` (counted from 0);
    without `/10` when the run is bounded by steps or time (`max_epochs` None or -1)."""
    count = f"{epoch + 1}/{max_epochs}" if max_epochs is not None and max_epochs > 0 else f"{epoch + 1}"
    values = "".join(f"  {name} {value:.4f}" for name, value in metrics.items())
    return f"epoch {count}{values}  ({seconds:.1f} s)"
