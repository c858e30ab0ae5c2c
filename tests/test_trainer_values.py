"""The trainer values a user may reasonably set: each either trains, or is refused before any work with one clear
message; and gradient accumulation is exact (4 x 16 accumulated == one batch of 64)."""

import copy
import os
import signal
from pathlib import Path

import lightning as L
import pytest
import torch

from cnnlab.errors import CnnlabError
from cnnlab.run.checkpoints import read_checkpoint
from cnnlab.run.training import train
from cnnlab.utils import cli

TINY = ["data=digits", "model.backbone.padding=1", "logger=none", "callbacks=none", "trainer.max_epochs=1",
        "trainer.limit_train_batches=4", "trainer.limit_val_batches=1", "trainer.limit_test_batches=1"]  # fmt: skip

TRAINS = [
    "trainer.accumulate_grad_batches=3",
    "trainer.val_check_interval=0.5",
    "trainer.fast_dev_run=true",
    "trainer.overfit_batches=2",
    "trainer.max_time=00:00:05:00",
    "trainer.min_epochs=1",
    "trainer.profiler=simple",
    "trainer.num_sanity_val_steps=1",
    "trainer.reload_dataloaders_every_n_epochs=1",
    "trainer.precision=bf16-mixed",
    "trainer.precision=64-true",
    "trainer.max_epochs=-1 trainer.max_steps=3",
    "trainer.gradient_clip_algorithm=value trainer.gradient_clip_val=0.5",
    "trainer.detect_anomaly=true",
    "trainer.enable_model_summary=true",
]
REFUSED = [
    ("+trainer.barebones=true", "trainer.barebones=true: cnnlab's checkpoints, logs and signal handling"),
    ("+trainer.callbacks=[]", "trainer.callbacks is set by cnnlab: choose the callbacks group instead"),
    ("+trainer.max_epoch=3", r"trainer.max_epoch is not a Lightning Trainer argument \(did you mean max_epochs"),
    ("trainer.precision=16-mixed", "trainer.precision='16-mixed' needs a GPU"),
    ("trainer.accelerator=mps", "trainer.accelerator='mps' but this machine has none available"),
    ("+trainer.strategy=warp_drive", "trainer.strategy='warp_drive': auto, ddp"),
    ("+trainer.profiler=fancy", "trainer.profiler='fancy': one of None, simple, advanced, pytorch"),
    ("trainer.val_check_interval=0", "trainer.val_check_interval=0: null, a share of an epoch"),
    ("trainer.accumulate_grad_batches=0", "trainer.accumulate_grad_batches=0: an integer >= 1"),
    ("trainer.gradient_clip_algorithm=sideways", "trainer.gradient_clip_algorithm='sideways': one of None, norm"),
]


@pytest.mark.parametrize("overrides", TRAINS)
def test_trainer_value_trains(make_cfg, overrides):
    summary = train(make_cfg(*TINY, *(f"++{o}" for o in overrides.split())))  # ++: add or override
    assert summary["global_step"] >= 1 and 0 <= summary["test/acc"] <= 1


@pytest.mark.parametrize(("override", "message"), REFUSED)
def test_trainer_value_is_refused_with_one_message(make_cfg, override, message):
    with pytest.raises(CnnlabError, match=message):
        train(make_cfg(*TINY, override))


class KeepsFinalState(L.Callback):
    def on_train_end(self, trainer, pl_module):
        self.state = copy.deepcopy(pl_module.state_dict())
        self.lrs = [group["lr"] for group in trainer.optimizers[0].param_groups]
        self.global_step = trainer.global_step


def train_sgd(make_cfg, tmp_path: Path, name: str, batch: int, accumulate: int, limit: int, *extra: str):
    """Plain SGD (update = lr x gradient) on the seed CNN without BatchNorm or dropout: nothing random but the
    data order, which is the same permutation sliced into batches of 16 or 64."""
    cfg = make_cfg("data=digits", "model.backbone.padding=1", "model.head.dropout=0.0", "optimizer=sgd",
                   "optimizer.momentum=0.0", "optimizer.nesterov=false", "optimizer.weight_decay=0.0",
                   "optimizer.lr=0.5", "scheduler=cosine", "logger=none", "callbacks=none", "test=false",
                   "trainer.limit_val_batches=0", f"trainer.limit_train_batches={limit}", f"data.batch_size={batch}",
                   f"trainer.accumulate_grad_batches={accumulate}", *extra)  # fmt: skip
    cfg.paths.output_dir = str(tmp_path / name)
    keep = KeepsFinalState()
    train(cfg, extra_callbacks=[keep])
    return keep


@pytest.mark.parametrize("clip", ["null", "0.05"])
def test_four_accumulated_batches_of_16_equal_one_batch_of_64(make_cfg, tmp_path, clip):
    """Same weights after 3 optimizer steps, also with a norm clip (which must see the accumulated gradient: clipping
    each batch of 16 would give other weights); the LR schedule spans optimizer steps, not batches."""
    extra = ("trainer.max_epochs=1", f"trainer.gradient_clip_val={clip}")
    accumulated = train_sgd(make_cfg, tmp_path, "acc", 16, 4, 12, *extra)
    whole = train_sgd(make_cfg, tmp_path, "whole", 64, 1, 3, *extra)
    untouched = train_sgd(make_cfg, tmp_path, "one", 64, 1, 1, "trainer.max_epochs=1")
    assert accumulated.global_step == whole.global_step == 3
    for key, value in whole.state.items():
        torch.testing.assert_close(accumulated.state[key], value, rtol=1e-5, atol=1e-6, msg=key)
    assert not torch.equal(untouched.state["head.2.weight"], whole.state["head.2.weight"])
    assert accumulated.lrs == pytest.approx(whole.lrs) and accumulated.lrs[0] == pytest.approx(0.0, abs=1e-12)


def test_accumulation_steps_at_the_end_of_every_epoch(make_cfg, tmp_path):
    """6 batches per epoch, windows of 4: steps after batches 4 and 6 of each epoch, 4 in 2 epochs; the cosine
    schedule is sized for those 4 steps, so the LR ends at exactly 0."""
    run = train_sgd(make_cfg, tmp_path, "ends", 16, 4, 6, "trainer.max_epochs=2")
    assert run.global_step == 4
    assert run.lrs[0] == pytest.approx(0.0, abs=1e-12)


def test_clipping_changes_the_accumulated_result(make_cfg, tmp_path):
    clipped = train_sgd(make_cfg, tmp_path, "clip", 16, 4, 8, "trainer.max_epochs=1", "trainer.gradient_clip_val=0.01")
    free = train_sgd(make_cfg, tmp_path, "free", 16, 4, 8, "trainer.max_epochs=1")
    assert not torch.allclose(clipped.state["head.2.weight"], free.state["head.2.weight"])


class SignalOnce(L.Callback):
    def __init__(self, batch: int) -> None:
        self.batch, self.sent = batch, False

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == self.batch and not self.sent:
            self.sent = True
            os.kill(os.getpid(), signal.SIGINT)


def test_an_interrupt_inside_an_accumulation_window_saves_at_its_step(make_cfg, monkeypatch):
    """A checkpoint in the middle of a window would lose the summed gradients: Ctrl+C at the window's 2nd batch
    finishes the window, steps, and only then saves; the resume then starts with a fresh window."""
    monkeypatch.setattr(cli, "_exit_code", 0)
    cfg = make_cfg("data=digits", "model.backbone.padding=1", "logger=none", "trainer.max_epochs=1",
                   "trainer.accumulate_grad_batches=4", "test=false")  # fmt: skip
    summary = train(cfg, extra_callbacks=[SignalOnce(batch=5)])
    saved = read_checkpoint(summary["checkpoint"], needs=("loops",))
    assert saved["global_step"] == 2  # windows end after batches 4 and 8: the stop waited for the second
    assert saved["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]["processed"] == 8
