"""cnnlab explain: where a model looks (class activation maps) and what its conv stages respond to."""

from __future__ import annotations

from omegaconf import DictConfig

from cnnlab.commands import Verb
from cnnlab.run.checks import check_explain_config


def run(cfg: DictConfig) -> None:
    """Draw the maps (or the features) of every image of `inputs`."""
    from cnnlab.run.explaining import explain_images  # lazy: torch loads once the config has passed

    explain_images(cfg)


VERB = Verb(
    name="explain",
    summary="Grad-CAM (and its family) per image, a sanity check of the maps, feature maps and filters",
    examples=(
        "cnnlab explain ckpt_path=model.ckpt inputs=my_images/",
        "cnnlab explain ckpt_path=model.ckpt inputs=photo.jpg method=gradcam++ sanity=true",
        "cnnlab explain ckpt_path=model.ckpt inputs=photo.jpg what=features",
    ),
    run=run,
    config="explain",
    check=check_explain_config,
    docs="docs/apply.md",
)
