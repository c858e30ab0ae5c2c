"""Config helpers shared by entry points, benchmarks and tests."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict


def resolved_config(cfg: DictConfig) -> dict[str, Any]:
    """The run's own config as plain, resolved data; Hydra's node (present when composed from Python) is left out."""
    return {
        key: OmegaConf.to_container(cfg[key], resolve=True) if OmegaConf.is_config(cfg[key]) else cfg[key]
        for key in cfg
        if key != "hydra"
    }


def compose_config(
    overrides: list[str] | tuple[str, ...] = (),
    output_dir: str | Path | None = None,
    root_dir: str | Path | None = None,
    config_name: str = "train",
) -> DictConfig:
    """conf/<config_name>.yaml composed with `overrides` as the CLI would, for Python callers (notebooks, the
    study, benchmarks, tests): the run writes to `output_dir` (a fresh temp dir if None), paths are relative
    to `root_dir` (default: the current directory, like the CLI)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    from cnnlab.train import CONF_DIR

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name, overrides=list(overrides), return_hydra_config=True)
    HydraConfig().set_config(cfg)  # ${hydra:...} interpolations resolve as in a CLI run
    output_dir = Path(output_dir) if output_dir is not None else Path(tempfile.mkdtemp(prefix="cnnlab-run-"))
    output_dir.mkdir(parents=True, exist_ok=True)
    with open_dict(cfg):
        if root_dir is not None:
            cfg.paths.root_dir = str(root_dir)
        cfg.paths.output_dir = str(output_dir)
    GlobalHydra.instance().clear()
    return cfg
