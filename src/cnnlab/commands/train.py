"""cnnlab train: compose the config, build data + model + trainer, fit, test the best checkpoint."""

from __future__ import annotations

from omegaconf import DictConfig

from cnnlab.commands import Verb
from cnnlab.run.checks import check_train_config


def run(cfg: DictConfig) -> float | None:
    """Train as `cfg` says; returns the optimized metric, which sweepers (Optuna) maximize."""
    from cnnlab.run.training import run_training  # lazy: torch and Lightning load once the config has passed

    return run_training(cfg)


VERB = Verb(
    name="train",
    summary="train a model (the seed CNN or any timm backbone): from scratch, frozen or fine-tuned",
    examples=(
        "cnnlab train experiment=seed_fashion",
        "cnnlab train model=efficientnet_lite0 transfer=finetune data=image_folder data.root=my_images",
        "cnnlab train -m optimizer.lr=1e-3,3e-3 seed=1,2,3",
    ),
    run=run,
    config="train",
    check=check_train_config,
    docs="docs/recipes.md",
)
