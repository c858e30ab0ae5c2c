"""The checks that depend on this machine and its files, after `cnnlab.run.checks`' config rules have passed:
whether the GPUs a trainer asks for are here, whether Lightning knows the strategy, whether the installed timm has
the backbone named, and whether a checkpoint to resume reads. They import torch, Lightning and timm, which is why
they are not in `cnnlab.run.checks`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from lightning.pytorch.accelerators import MPSAccelerator, XLAAccelerator
from lightning.pytorch.strategies import StrategyRegistry
from omegaconf import DictConfig

from cnnlab.errors import Problems, is_int
from cnnlab.models.backbones import check_timm_name
from cnnlab.models.checks import TIMM_BACKBONE
from cnnlab.run.checkpoints import check_resume, checkpoint_dir
from cnnlab.run.checks import values_of


def check_hardware(values: Mapping[str, Any], problems: Problems) -> None:
    """`trainer.accelerator`, `precision`, `devices` and `strategy` against what this machine has."""
    accelerator = values.get("accelerator", "auto")
    precision = str(values.get("precision"))
    available = {"gpu": torch.cuda.is_available(), "cuda": torch.cuda.is_available(),
                 "mps": MPSAccelerator.is_available(), "tpu": XLAAccelerator.is_available()}  # fmt: skip
    if accelerator in available and not available[accelerator]:
        problems.add(f"trainer.accelerator={accelerator!r} but this machine has none available: use trainer=cpu, "
                     "or trainer.accelerator=auto.")  # fmt: skip
    on_cpu = accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())
    if on_cpu and precision in ("16-mixed", "16"):
        problems.add(f"trainer.precision={precision!r} needs a GPU (float16 autocast); on a CPU use bf16-mixed "
                     "or 32-true.")  # fmt: skip
    devices = values.get("devices", "auto")
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if on_gpu and is_int(devices) and devices > torch.cuda.device_count():
        problems.add(f"trainer.devices={devices} but this machine has {torch.cuda.device_count()} GPU(s): use at "
                     "most that many, or -1 for all.")  # fmt: skip
    strategy = values.get("strategy", "auto")
    known = ("auto", *StrategyRegistry.available_strategies())
    if isinstance(strategy, str) and strategy not in known:
        problems.check(False, "trainer.strategy", strategy, "auto, ddp, ddp_spawn, fsdp, ... (Lightning's "
                       "registered strategies)")  # fmt: skip


def check_backbone_name(model: Mapping[str, Any], problems: Problems) -> None:
    """`model.backbone.name` of a timm backbone against the installed timm's models: only importing timm (~0.5 s,
    after torch) tells, so `cnnlab <verb>` answers it here, once the work has started - still before any data is
    read. The rest of the backbone's values were checked before the import (`cnnlab.models.checks`)."""
    backbone = model.get("backbone") or {}
    if backbone.get("_target_") == TIMM_BACKBONE:
        check_timm_name(backbone.get("name"), problems)


def check_on_this_machine(cfg: DictConfig) -> None:
    """A training config against this machine: its hardware, its timm, and the checkpoint it resumes from."""
    values, problems = values_of(cfg), Problems()
    check_hardware(values.get("trainer") or {}, problems)
    check_backbone_name(values.get("model") or {}, problems)
    if values.get("train"):
        check_resume(values.get("ckpt_path"), checkpoint_dir(cfg), problems)
    problems.raise_if_any("invalid configuration for this machine (nothing was run)")
