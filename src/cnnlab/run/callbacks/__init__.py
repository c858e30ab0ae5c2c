"""Callbacks that keep a run's work safe, one per module: clean stops with exact resume (`resumable`), the stop it
raises (`interruption`), a divergence guard (`divergence`), the weights' moving average (`ema`) and the order they
run in (`ordering`).

The configs name them here (`_target_: cnnlab.run.callbacks.EMA`), so a user's config keeps working whichever
module a class lives in.
"""

from cnnlab.run.callbacks.divergence import DivergenceGuard
from cnnlab.run.callbacks.ema import EMA
from cnnlab.run.callbacks.interruption import STOP_SIGNALS, TrainingInterrupted, last_checkpoint_path
from cnnlab.run.callbacks.ordering import in_saving_order
from cnnlab.run.callbacks.resumable import Resumable

__all__ = ["EMA", "STOP_SIGNALS", "DivergenceGuard", "Resumable", "TrainingInterrupted", "in_saving_order",
           "last_checkpoint_path"]  # fmt: skip
