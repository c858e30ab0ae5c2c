"""Helpers shared by the benchmark scripts: compose a real config, time things, print ratios."""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from cnnlab.train import CONF_DIR


def compose_train(*overrides: str, out: str | None = None) -> DictConfig:
    """conf/train.yaml as the CLI would compose it, writing into a temporary run dir."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=list(overrides), return_hydra_config=True)
    HydraConfig().set_config(cfg)
    out = out or tempfile.mkdtemp(prefix="cnnlab-bench-")
    with open_dict(cfg):
        cfg.paths.root_dir = str(Path.cwd())
        cfg.paths.output_dir = out
    GlobalHydra.instance().clear()
    return cfg


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def report(name_a: str, times_a: list[float], name_b: str, times_b: list[float], unit: str = "s") -> float:
    """Print both medians and a/b; returns the ratio."""
    a, b = statistics.median(times_a), statistics.median(times_b)
    print(f"{name_a}: median {a:.3f} {unit} over {len(times_a)} ({', '.join(f'{t:.2f}' for t in times_a)})")
    print(f"{name_b}: median {b:.3f} {unit} over {len(times_b)} ({', '.join(f'{t:.2f}' for t in times_b)})")
    print(f"ratio {name_a} / {name_b} = {a / b:.3f}")
    return a / b
