"""Config helpers shared by entry points, benchmarks and tests."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf


def resolved_config(cfg: DictConfig) -> dict[str, Any]:
    """The run's own config as plain, resolved data; Hydra's node (present when composed from Python) is left out."""
    return {
        key: OmegaConf.to_container(cfg[key], resolve=True) if OmegaConf.is_config(cfg[key]) else cfg[key]
        for key in cfg
        if key != "hydra"
    }
