"""Interrupted runs resume exactly, checkpoints survive kills, divergence stops the run, bad input fails fast."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch

from cnnlab.errors import CnnlabError
from cnnlab.run.checkpoints import AtomicCheckpointIO, read_checkpoint
from cnnlab.run.training import train
from cnnlab.utils import cli
from tests.test_console import start_on_terminal, terminal_output

ROOT = Path(__file__).resolve().parents[1]
RECIPE = [  # small, but with everything that must survive a resume: dropout, shuffling, a one-cycle LR schedule
    "data.train_size=1000",
    "data.batch_size=32",
    "trainer.max_epochs=2",
    "trainer.deterministic=true",
    "scheduler=onecycle",
    "trainer.limit_val_batches=4",
    "trainer.limit_test_batches=4",
]
STEPS_PER_EPOCH = 32  # 1000 / 32, rounded up
PROGRESS = re.compile(rb"Epoch 1:\s+\d+%\|[^|]*\|\s*(\d+)/(\d+)")


def cli_env() -> dict[str, str]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    env.pop("CNNLAB_ROOT", None)
    return env


def run_train(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cnnlab", "train", *args], cwd=cwd, env=cli_env(),
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def train_until_sigterm(args: list[str], cwd: Path, after_steps: int) -> tuple[int, str]:
    """Start cnnlab-train on a terminal (off one it logs a line per epoch, no bar), send SIGTERM once the progress
    bar shows `after_steps` steps of epoch 1."""
    proc, reader = start_on_terminal([sys.executable, "-m", "cnnlab", "train", *args], cwd)
    output, seen = terminal_output(reader), b""
    for chunk in output:
        seen += chunk
        steps = [int(m.group(1)) for m in PROGRESS.finditer(seen[-4096:])]
        if steps and steps[-1] >= after_steps:
            proc.send_signal(signal.SIGTERM)
            break
    seen += b"".join(output)
    proc.wait(timeout=120)
    return proc.returncode, seen.decode(errors="replace").replace("\r\n", "\n")  # a terminal ends lines so


def comparable(metrics: dict) -> dict:
    return {k: Path(v).name if k == "best_checkpoint" else v for k, v in metrics.items() if k != "duration_s"}


# The training tools that keep state or draw random numbers: the EMA's average and step count, mixup's and the policy's
# draws, the class weights; TTA at the test. A resume must end with the same metrics with all of them on.
TOOLS = ["callbacks=ema", "callbacks.ema.decay=0.9", "model.mix={mixup_alpha: 0.4, cutmix_alpha: 1.0}",
         "+data.augment={policy: randaugment, hflip: true}", "model.class_weights=balanced",
         "model.tta=flip"]  # fmt: skip


@pytest.mark.parametrize("tools", [[], TOOLS], ids=["plain", "with_training_tools"])
def test_sigterm_mid_epoch_then_resume_ends_exactly_like_an_uninterrupted_run(tmp_path, fashion_dir, tools):
    reference = run_train([*RECIPE, *tools, f"hydra.run.dir={tmp_path / 'reference'}"], tmp_path)
    assert reference.returncode == 0, reference.stderr[-2000:]

    run_dir = tmp_path / "interrupted"
    args = [*RECIPE, *tools, f"hydra.run.dir={run_dir}", "callbacks.progress_bar.refresh_rate=1"]
    code, output = train_until_sigterm(args, tmp_path, after_steps=5)
    assert code == 128 + signal.SIGTERM, output[-2000:]
    assert "ckpt_path=last" in output and not (run_dir / "metrics.json").exists()
    saved = read_checkpoint(run_dir / "checkpoints" / "last.ckpt", needs=("loops",))
    in_epoch = saved["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]["processed"]
    assert saved["epoch"] == 1 and 0 < in_epoch < STEPS_PER_EPOCH  # stopped mid-epoch, as the test intends

    resumed = run_train([*RECIPE, *tools, f"hydra.run.dir={run_dir}", "ckpt_path=last"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    expected = json.loads((tmp_path / "reference" / "metrics.json").read_text())
    actual = json.loads((run_dir / "metrics.json").read_text())
    assert actual["global_step"] == 2 * STEPS_PER_EPOCH
    assert comparable(actual) == comparable(expected)


class SendSignalAtStep(L.Callback):
    def __init__(self, signum: int, step: int) -> None:
        self.signum, self.step = signum, step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)


def test_ctrl_c_saves_a_checkpoint_and_exits_130(make_cfg, fashion_dir, monkeypatch):
    monkeypatch.setattr(cli, "_exit_code", 0)
    handler_before = signal.getsignal(signal.SIGINT)
    cfg = make_cfg("data.train_size=640", "trainer.max_epochs=3")
    summary = train(cfg, extra_callbacks=[SendSignalAtStep(signal.SIGINT, step=13)])
    assert "SIGINT" in summary["interrupted"] and cli._exit_code == 130
    saved = read_checkpoint(summary["checkpoint"], needs=("loops",))
    assert saved["global_step"] == 14 and saved["epoch"] == 1  # 10 steps per epoch: stopped inside epoch 1
    assert signal.getsignal(signal.SIGINT) is handler_before  # the handlers are given back


WEIGHTS = [torch.full((4_000_000,), float(parity)) for parity in (0, 1)]  # built before forking: no torch threads after


def _save_forever(path: Path, version: int) -> None:
    io = AtomicCheckpointIO()
    while True:
        version += 1
        io.save_checkpoint({"version": version, "state_dict": {"w": WEIGHTS[version % 2]}}, path)


def test_killing_a_checkpoint_write_at_random_moments_never_leaves_a_broken_file(tmp_path):
    """A forked writer saves 16 MB checkpoints through the trainer's checkpoint IO in a loop and is SIGKILLed at
    random moments; after every kill the file on disk loads and is one complete version, never a mix."""
    path = tmp_path / "checkpoints" / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"version": 0, "state_dict": {"w": WEIGHTS[0]}}, path)
    rng, version = random.Random(0), 0
    fork = multiprocessing.get_context("fork")
    for _ in range(20):
        writer = fork.Process(target=_save_forever, args=(path, version))
        writer.start()
        time.sleep(rng.uniform(0.05, 0.4))  # one save takes ~0.05-0.2 s: the kill lands anywhere in it
        writer.kill()
        writer.join()
        checkpoint = read_checkpoint(path)
        assert torch.equal(checkpoint["state_dict"]["w"], WEIGHTS[checkpoint["version"] % 2])
        version = checkpoint["version"]
    assert version >= 20  # it really kept writing between the kills
    assert len(list(path.parent.glob(".last.ckpt.*.tmp"))) <= 1  # a killed write's temp file is cleaned up next time


class PoisonWeightsAtStep(L.Callback):
    """Test-only: a NaN in the first conv's weights at `step`, so the real loss becomes NaN the real way."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            with torch.no_grad():
                next(pl_module.backbone.parameters()).view(-1)[0] = float("nan")


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(make_cfg, fashion_dir):
    cfg = make_cfg("data.train_size=640", "trainer.max_epochs=3")
    with pytest.raises(CnnlabError) as err:
        train(cfg, extra_callbacks=[PoisonWeightsAtStep(step=14)])
    message = str(err.value)
    last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    assert "training diverged: the training loss is nan at epoch 1, batch 4 (global step 15)" in message
    assert "learning rates: backbone.stage0 0.001" in message and "head 0.001" in message and str(last) in message
    assert "callbacks.divergence_guard=null" in message
    good = read_checkpoint(last)
    assert good["epoch"] == 0 and good["global_step"] == 10  # the end of the last healthy epoch
    assert all(torch.isfinite(t).all() for t in good["state_dict"].values() if t.is_floating_point())
    assert not (Path(cfg.paths.output_dir) / "metrics.json").exists()


def test_divergence_from_a_huge_learning_rate_is_caught(make_cfg):
    cfg = make_cfg("data=digits", "optimizer=sgd", "optimizer.lr=1e12", "model.backbone.padding=1")
    with pytest.raises(CnnlabError, match=r"training diverged: the training loss is (nan|inf) at epoch 0"):
        train(cfg)


def test_divergence_guard_can_be_turned_off(make_cfg, fashion_dir):
    cfg = make_cfg("data.train_size=640", "trainer.max_epochs=2", "callbacks.divergence_guard=null")
    summary = train(cfg, extra_callbacks=[PoisonWeightsAtStep(step=14)])
    assert summary["epochs"] == 2  # nothing stopped it (its val accuracy is chance, as it should be)


def test_an_interrupted_sweep_job_resumes_from_the_command_it_printed(tmp_path, fashion_dir):
    """A sweep job's directory needs no quoting (3_optimizer.lr-0.001, not 3_optimizer.lr=0.001), so the resume
    command the interrupted job prints pastes as it is."""
    args = ["-m", "optimizer.lr=0.001,0.002", *RECIPE, "trainer.max_epochs=2", "callbacks.progress_bar.refresh_rate=1"]
    code, output = train_until_sigterm(args, tmp_path, after_steps=5)
    assert code == 128 + signal.SIGTERM, output[-2000:]
    command = next(line.strip() for line in output.splitlines() if line.strip().startswith("cnnlab train "))
    pasted = shlex.split(command)[2:]  # what a shell makes of the printed line, after `cnnlab train`
    job_dir = Path(next(a for a in pasted if a.startswith("hydra.run.dir=")).split("=", 1)[1])
    assert job_dir.name.startswith("0_") and "optimizer.lr-0.001" in job_dir.name and "=" not in job_dir.name
    assert (job_dir / "checkpoints" / "last.ckpt").is_file()
    resumed = run_train(pasted, tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads((job_dir / "metrics.json").read_text())["global_step"] == 2 * STEPS_PER_EPOCH
