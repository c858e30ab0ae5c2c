"""cnnlab layers: the model `cnnlab train` would build, layer by layer."""

from __future__ import annotations

from omegaconf import DictConfig

from cnnlab.commands import Verb
from cnnlab.run.checks import check_layers_config


def run(cfg: DictConfig) -> None:
    """Print (and write) the per-layer table."""
    from cnnlab.run.layers import layer_table  # lazy: torch loads once the config has passed

    layer_table(cfg)


VERB = Verb(
    name="layers",
    summary="the model train would build, layer by layer: shapes, parameters, trainable or frozen, multiply-adds",
    examples=(
        "cnnlab layers",
        "cnnlab layers model=efficientnet_lite0 transfer=frozen depth=2",
        "cnnlab layers experiment=seed_fashion",
    ),
    run=run,
    config="layers",
    check=check_layers_config,
    docs="docs/apply.md",
)
