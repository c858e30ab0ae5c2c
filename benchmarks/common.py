"""Helpers shared by the benchmark scripts: compose a real config, time things, print ratios."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import lightning as L
from omegaconf import DictConfig

import cnnlab


def compose_train(*overrides: str, out: str | None = None) -> DictConfig:
    """conf/train.yaml as the CLI would compose it, writing into `out` (a temporary run dir when None)."""
    return cnnlab.compose(*overrides, output_dir=out, root_dir=Path.cwd())


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run_timed(command: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    """Wall seconds of a whole process (and its stdout); a failure stops the benchmark with its output."""
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return elapsed, done.stdout


def run_cnnlab(run_dir: Path, *overrides: str) -> tuple[float, dict]:
    """A whole `cnnlab train` process writing into `run_dir`: its wall seconds and its metrics.json."""
    elapsed, _ = run_timed([sys.executable, "-m", "cnnlab", "train", f"hydra.run.dir={run_dir}", *overrides])
    return elapsed, json.loads((Path(run_dir) / "metrics.json").read_text())


def report(name_a: str, times_a: list[float], name_b: str, times_b: list[float], unit: str = "s") -> float:
    """Print both medians and a/b; returns the ratio."""
    a, b = statistics.median(times_a), statistics.median(times_b)
    print(f"{name_a}: median {a:.3f} {unit} over {len(times_a)} ({', '.join(f'{t:.2f}' for t in times_a)})")
    print(f"{name_b}: median {b:.3f} {unit} over {len(times_b)} ({', '.join(f'{t:.2f}' for t in times_b)})")
    print(f"ratio {name_a} / {name_b} = {a / b:.3f}")
    return a / b


class EpochTimer(L.Callback):
    """Seconds from each training epoch's start to its last training batch's end: the training loop alone
    (Lightning runs validation before `on_train_epoch_end`, so that hook would count it too)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.images = 0

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.start = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        if batch_idx == 0:
            self.images = 0
        self.images += len(batch[1])
        if batch_idx == trainer.num_training_batches - 1:
            if module.device.type == "cuda":
                import torch

                torch.cuda.synchronize()
            self.times.append(time.perf_counter() - self.start)

    def images_per_s(self, skip_first: bool = True) -> float:
        """Training images per second, by default leaving out the first epoch (warm-up, compilation)."""
        times = self.times[1:] if skip_first and len(self.times) > 1 else self.times
        return self.images / statistics.median(times)
