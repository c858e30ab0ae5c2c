"""`cnnlab train tune=lr_find`: Lightning's LR range test on the run's own model, data and optimizer, before training.

Lightning's `Tuner.lr_find` runs the sweep (every param group at the same exponentially rising LR, the smoothed loss
per step, a stop when it diverges) and restores the model; cnnlab draws the loss-vs-LR curve (run dir and
TensorBoard), writes the numbers, and then either stops or trains with the suggestion. The suggestion is put where
the optimizer is built from (`model.hparams.optimizer.lr`) and into the run's stored config, so the LR the run
trains with is the one printed - Lightning's `LearningRateFinder` callback has been reported (Lightning issue 21030)
to print an LR it did not set; `tests/test_recipes.py` checks this one against the optimizer's first step.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.tuner import Tuner

from cnnlab.errors import CnnlabError
from cnnlab.utils.figures import log_x_curve
from cnnlab.utils.io import write_json_atomic
from cnnlab.utils.tensorboard import tensorboard_writers

log = logging.getLogger("cnnlab.run.tuning")


def find_lr(trainer: L.Trainer, model: L.LightningModule, datamodule: L.LightningDataModule,
            settings: Mapping[str, Any], output_dir: Path) -> dict[str, Any]:  # fmt: skip
    """Run the range test; write lr_find.png / lr_find.json (and the curve to TensorBoard); return its findings."""
    finder = Tuner(trainer).lr_find(
        model,
        datamodule=datamodule,
        min_lr=float(settings.get("min_lr", 1e-6)),
        max_lr=float(settings.get("max_lr", 1.0)),
        num_training=int(settings.get("num_training", 100)),
        mode=str(settings.get("mode", "exponential")),
        early_stop_threshold=settings.get("early_stop_threshold", 4.0),
        update_attr=False,
    )
    if finder is None:
        raise CnnlabError("tune=lr_find does not run with trainer.fast_dev_run: drop one of the two.")
    lrs, losses = list(finder.results["lr"]), [float(v) for v in finder.results["loss"]]
    rule = str(settings.get("suggest", "valley"))
    suggestion = valley(lrs, losses) if rule == "valley" else finder.suggestion()
    if suggestion is None:
        raise CnnlabError(f"tune=lr_find: only {len(losses)} usable steps, too few for a suggestion; raise "
                          "tune.num_training, lower tune.min_lr, or use more training data.")  # fmt: skip
    findings = {"suggestion": float(suggestion), "rule": rule, "lrs": lrs, "losses": losses, "steps": len(losses)}
    shown = slice(10, -1)  # as Lightning's own plot: the first steps' smoothed loss is still biased low
    title = f"LR range test: suggested LR {suggestion:.3g} ({rule})"
    picture = log_x_curve(lrs[shown], losses[shown], suggestion, title, "learning rate", "smoothed training loss")
    if trainer.is_global_zero:
        output_dir.mkdir(parents=True, exist_ok=True)
        picture.save(output_dir / "lr_find.png")
        write_json_atomic(output_dir / "lr_find.json", findings)
        for writer in tensorboard_writers(trainer.loggers):
            writer.add_image("tune/lr_find", torch.from_numpy(np.array(picture)).permute(2, 0, 1), 0)
    log.info(
        "LR finder: suggested LR %.4g (%d steps); curve in %s", suggestion, len(losses), output_dir / "lr_find.png"
    )
    return findings


def valley(lrs: list[float], losses: list[float]) -> float | None:
    """fastai's `valley` rule: the longest stretch over which the loss keeps falling (longest decreasing
    subsequence), and the LR about half way into it (fastai's index arithmetic: a third plus half a third).
    Lightning's own rule - the steepest slope against the LR on a linear scale - favours the smallest LRs of an
    exponential sweep, where the points are closest: on `fashion_cnn_long`'s sweep it picked 6.3e-5 on the flat start
    of the curve, 100x below the recipe's tuned 6e-3; valley picked 1.7e-3 (README, the ablation)."""
    finite = [(lr, loss) for lr, loss in zip(lrs, losses, strict=True) if math.isfinite(loss)]
    if len(finite) < 3:
        return None
    lrs, losses = [lr for lr, _ in finite], [loss for _, loss in finite]
    longest = [1] * len(losses)  # longest decreasing run ending at each point
    start = end = 0
    for i in range(1, len(losses)):
        for j in range(i):
            if losses[i] < losses[j] and longest[i] < longest[j] + 1:
                longest[i] = longest[j] + 1
            if longest[end] < longest[i]:
                end, start = i, i - longest[i]
    third = (end - start) / 3
    return lrs[start + int(third) + int(third / 2)]


def use_lr(model: L.LightningModule, lr: float) -> None:
    """Train with `lr`: the optimizer is built from the model's hyperparameters, the checkpoint's config says it."""
    model.hparams.optimizer["lr"] = lr
    if getattr(model, "run_config", None):
        model.run_config["optimizer"]["lr"] = lr
