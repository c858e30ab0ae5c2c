"""Config -> objects, for the parts that need more than `hydra.utils.instantiate`."""

from __future__ import annotations

from typing import Any

import hydra
from lightning import Callback, LightningModule
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf

from cnnlab.data.base import DataInfo


def build_model(cfg: DictConfig, info: DataInfo) -> LightningModule:
    """The model config plus what the data knows (classes, channels, size, stats) and the optimisation."""
    kwargs = OmegaConf.to_container(cfg.model, resolve=True)
    target = hydra.utils.get_class(kwargs.pop("_target_"))
    return target(
        **kwargs,
        data=info.as_dict(),
        optimizer=OmegaConf.to_container(cfg.optimizer, resolve=True),
        scheduler=OmegaConf.to_container(cfg.scheduler, resolve=True) if cfg.get("scheduler") else None,
        transfer=OmegaConf.to_container(cfg.transfer, resolve=True) if cfg.get("transfer") else None,
    )


def _instantiate_each(group: DictConfig | None) -> list[Any]:
    """Instantiate every entry of a group whose values are configs with a `_target_` (callbacks, loggers)."""
    if not group:
        return []
    return [hydra.utils.instantiate(c) for c in group.values() if isinstance(c, DictConfig) and "_target_" in c]


def build_callbacks(cfg: DictConfig) -> list[Callback]:
    callbacks = _instantiate_each(cfg.get("callbacks"))
    if not cfg.get("logger"):
        # logger=none: the LR monitor has nowhere to write (Lightning would refuse to start), so it goes
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    return callbacks


def build_loggers(cfg: DictConfig) -> list[Logger] | bool:
    loggers = _instantiate_each(cfg.get("logger"))
    return loggers or False


def count_parameters(model: LightningModule) -> dict[str, int]:
    params = list(model.parameters())
    return {
        "total": sum(p.numel() for p in params),
        "trainable": sum(p.numel() for p in params if p.requires_grad),
    }
