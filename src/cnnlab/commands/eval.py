"""cnnlab eval: a checkpoint on the test split of its own data (or of another `data=`)."""

from __future__ import annotations

from omegaconf import DictConfig

from cnnlab import metrics as M
from cnnlab.commands import Verb
from cnnlab.run.checks import check_eval_config


def run(cfg: DictConfig) -> float:
    """Evaluate a checkpoint; returns its test accuracy."""
    from cnnlab.run.evaluation import evaluate  # lazy: torch loads once the config has passed

    return evaluate(cfg)[M.TEST_ACC]


VERB = Verb(
    name="eval",
    summary="a checkpoint on a test split: accuracy, per-class F1, confusion matrix, the worst mistakes",
    examples=(
        "cnnlab eval ckpt_path=outputs/runs/2026-12-04/10-00-00_seed_fashion/checkpoints/last.ckpt",
        "cnnlab eval ckpt_path=model.ckpt data=mnist",
        "cnnlab eval ckpt_path=model.ckpt tta=flip batch_size=256",
    ),
    run=run,
    config="eval",
    check=check_eval_config,
    docs="docs/apply.md",
)
