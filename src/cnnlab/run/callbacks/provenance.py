"""`Provenance`: what made a run (code, libraries, machine, command, data), in its run dir and in every checkpoint.

The record is made when fitting (or testing alone) starts, once the DataModule is set up, so the data fingerprints
are of the splits the run really uses; rank 0 writes `provenance.json` (and a dirty tree's diff) into the run dir,
and every checkpoint carries the record under `cnnlab_provenance`, where `cnnlab eval` / `predict` compare it with
the code that loads it. See `cnnlab.utils.provenance` for what the record holds.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch

from cnnlab.data.fingerprint import data_fingerprints
from cnnlab.utils.provenance import CHECKPOINT_KEY, collect_provenance, stored_record, write_provenance

log = logging.getLogger("cnnlab")


def device_record(device: torch.device) -> dict[str, Any]:
    """The accelerator `device` is on: its kind and, for a GPU, its name and CUDA version (the CPU's model name is
    added by `collect_provenance`)."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return {"accelerator": "cuda", "name": torch.cuda.get_device_name(index), "cuda": torch.version.cuda}
    return {"accelerator": device.type}


class Provenance(L.Callback):
    """Records the run's provenance at fit (or test) start: `.record` (as provenance.json holds it), written by rank
    0 into the run dir (`trainer.default_root_dir`, the run dir in cnnlab's configs) and stored in each checkpoint.
    A resumed run's record keeps the one of the checkpoint it resumed from (`resumed_from`)."""

    def __init__(self) -> None:
        self.record: dict[str, Any] | None = None
        self._loaded: Any = None  # the record of the checkpoint this fit resumes from
        self._full: dict[str, Any] = {}  # the record with the diff texts, for the files beside the run

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        self._loaded = checkpoint.get(CHECKPOINT_KEY)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._make_record(trainer)

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Testing alone records here; after fitting, only a split the fit could not see yet (a DataModule that
        sets its test split up at `setup("test")`) is added."""
        if self.record is None:
            self._make_record(trainer)
            return
        data = data_fingerprints(trainer.datamodule) if trainer.datamodule is not None else {}
        if data.keys() - self.record["data"].keys():
            self.record["data"] = {**data, **self.record["data"]}
            self._write(trainer)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        if self.record is not None:
            checkpoint[CHECKPOINT_KEY] = self.record

    def _make_record(self, trainer: L.Trainer) -> None:
        device = {**device_record(trainer.strategy.root_device), "devices": trainer.num_devices,
                  "nodes": trainer.num_nodes}  # fmt: skip
        data = data_fingerprints(trainer.datamodule) if trainer.datamodule is not None else {}
        record = collect_provenance(data=data, device=device)
        if self._loaded is not None and trainer.state.fn == "fit":
            record["resumed_from"] = self._loaded
        self._full = record
        self.record = stored_record(record)
        self._write(trainer)

    def _write(self, trainer: L.Trainer) -> None:
        """Rank 0, into a local run dir (an object store's root gets no files: the checkpoints still hold it)."""
        run_dir = str(trainer.default_root_dir)
        if not trainer.is_global_zero or "://" in run_dir:
            return
        write_provenance(Path(run_dir), {**self._full, "data": self.record["data"]})
        log.debug("provenance: %s", Path(run_dir) / "provenance.json")
