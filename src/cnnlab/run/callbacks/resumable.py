"""`Resumable`: clean stops on SIGINT / SIGTERM, and exact resume - the RNG states and the loaders' positions.

It acts in `on_train_batch_end`, after the optimizer and the LR scheduler have stepped: that is the point Lightning
itself resumes from mid-epoch (as `ModelCheckpoint(every_n_train_steps=...)` saves there).
"""

from __future__ import annotations

import logging
import random
import signal
import threading
from types import FrameType
from typing import Any

import lightning as L
import numpy as np
import torch

from cnnlab.errors import CnnlabError
from cnnlab.run.callbacks.interruption import STOP_SIGNALS, TrainingInterrupted, last_checkpoint_path

log = logging.getLogger("cnnlab")


class Resumable(L.Callback):
    """SIGINT / SIGTERM (Ctrl+C, `kill`, SLURM preemption): finish the current step, save `last.ckpt`, stop.

    A second Ctrl+C aborts at once without saving. Every checkpoint also carries the Python, NumPy and torch
    RNG states, restored before the first step after a resume, so that a resumed deterministic run takes
    exactly the steps the uninterrupted run would have (data order: `TensorBatches.state_dict`).
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous_handlers: dict[int, Any] = {}
        self._rng_to_restore: dict[str, Any] | None = None
        self._loader_states: list[dict[str, Any]] = []

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        fit_loop = (checkpoint.get("loops") or {}).get("fit_loop") or {}
        self._loader_states = list((fit_loop.get("state_dict") or {}).get("combined_loader") or [])

    def _restore_loader_positions(self, trainer: L.Trainer) -> None:
        """Lightning restores a resumable train loader's position only if it builds the loader after loading the
        loops; `estimated_stepping_batches` (which LR schedules need) builds it before, so the state is lost
        (Lightning 2.6). The loaders only read it when their epoch's iteration begins: setting it here is in time."""
        states, self._loader_states = self._loader_states, []
        loaders = trainer.train_dataloader
        loaders = loaders if isinstance(loaders, list | tuple) else [loaders]
        stateful = [loader for loader in loaders if hasattr(loader, "load_state_dict")]
        if states and len(states) == len(stateful):
            for loader, state in zip(stateful, states, strict=True):
                loader.load_state_dict(state)

    # --- signals ------------------------------------------------------------------------------------
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.received = None
        self._restore_loader_positions(trainer)
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread
        for signum in STOP_SIGNALS:  # replaces Lightning's SIGTERM handler, which stops without a checkpoint
            self._previous_handlers[signum] = signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None and signum == signal.SIGINT:
            self._restore_handlers()
            raise KeyboardInterrupt  # the user insists: stop now, without a checkpoint
        self.received = signum
        log.warning(
            "%s received: finishing this step, then saving a checkpoint (Ctrl+C again aborts without saving)",
            signal.Signals(signum).name,
        )

    def _restore_handlers(self) -> None:
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        self._previous_handlers = {}

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore_handlers()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore_handlers()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        stop = self.received is not None
        if trainer.world_size > 1:  # every rank must stop at the same step, or the others wait forever
            if trainer.global_step % max(1, trainer.log_every_n_steps):
                return  # agreeing is a collective op and a host sync: done every log_every_n_steps steps
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if not stop or trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            return  # at an epoch's last batch, validation and the epoch's checkpoint come first: stop one step later
        if not getattr(getattr(pl_module, "stepper", None), "at_boundary", True):
            return  # gradients of an accumulation window are waiting for their step: a checkpoint would lose them
        path = last_checkpoint_path(trainer)
        trainer.save_checkpoint(path)
        signum = self.received or signal.SIGTERM
        log.warning("saved %s (epoch %d, global step %d)", path, trainer.current_epoch, trainer.global_step)
        raise TrainingInterrupted(signum, path, trainer.current_epoch, trainer.global_step)

    # --- RNG states in every checkpoint -------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        states: dict[str, Any] = {
            "python": random.getstate(),
            "numpy": _numpy_state_to_tensors(np.random.get_state()),
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            states["cuda"] = torch.cuda.get_rng_state_all()
        return {"rng": states}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._rng_to_restore = state_dict.get("rng")

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        """Restored here, not at load time: nothing between loading and this step may draw from them."""
        if self._rng_to_restore is None:
            return
        states, self._rng_to_restore = self._rng_to_restore, None
        try:
            random.setstate(_python_state(states["python"]))
            np.random.set_state(_numpy_state_from_tensors(states["numpy"]))
            torch.set_rng_state(states["torch"])
            if "cuda" in states and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
                torch.cuda.set_rng_state_all(states["cuda"])
        except (KeyError, TypeError, ValueError, RuntimeError) as err:  # a checkpoint not written as cnnlab writes
            raise CnnlabError(f"the checkpoint being resumed holds random-number states that cannot be restored "
                              f"({type(err).__name__}: {err}): it is not a cnnlab checkpoint as written. Resume "
                              "from another checkpoint of the run.") from None  # fmt: skip


def _python_state(state: Any) -> tuple:
    """Python's RNG state as `random.setstate` takes it: (version, a tuple of 625 ints, gauss); a checkpoint stores
    the inner tuple as a list or tuple."""
    version, internal, gauss = state
    return (version, tuple(internal), gauss)


def _numpy_state_to_tensors(state: tuple) -> tuple:
    """NumPy's RNG state with its key array as a tensor: checkpoints then load with torch's `weights_only`."""
    name, keys, pos, has_gauss, gauss = state
    return (name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss))


def _numpy_state_from_tensors(state: tuple) -> tuple:
    name, keys, pos, has_gauss, gauss = state
    return (name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss)
