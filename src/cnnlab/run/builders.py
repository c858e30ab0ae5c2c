"""Config -> objects, for the parts that need more than `hydra.utils.instantiate`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from lightning import Callback, LightningModule
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, ProgressBar
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf

from cnnlab.data.base import InMemoryDataModule
from cnnlab.data.feature_cache import FeatureDataModule
from cnnlab.data.info import DataInfo, describe_data, train_class_counts
from cnnlab.errors import CnnlabError
from cnnlab.models.optimization import StepSettings
from cnnlab.run.callbacks.divergence import DivergenceGuard
from cnnlab.run.callbacks.provenance import Provenance
from cnnlab.run.callbacks.pruning import Pruning
from cnnlab.run.callbacks.resumable import Resumable
from cnnlab.run.checkpoints import AtomicCheckpointIO
from cnnlab.utils.config import build

log = logging.getLogger("cnnlab.run.builders")


def build_datamodule(data_cfg: Any) -> tuple[L.LightningDataModule, DataInfo]:
    """The configured DataModule (ours or the user's) and what it tells the model, checked (see DataInfo)."""
    target = str(data_cfg.get("_target_", "?"))
    datamodule = build(data_cfg)
    if not isinstance(datamodule, L.LightningDataModule):
        raise CnnlabError(f"data._target_={target} built a {type(datamodule).__name__}, not a LightningDataModule.")
    return datamodule, describe_data(datamodule, target)


def build_model(cfg: DictConfig, info: DataInfo, datamodule: L.LightningDataModule | None = None) -> LightningModule:
    """The model config plus what the data knows (classes, channels, size, stats) and the optimisation;
    `model.class_weights=balanced` is resolved here from the `datamodule`'s training labels."""
    kwargs = OmegaConf.to_container(cfg.model, resolve=True)
    target = hydra.utils.get_class(kwargs.pop("_target_"))
    if kwargs.get("class_weights") == "balanced":
        kwargs["class_weights"] = balanced_class_weights(datamodule, info)
    elif kwargs.get("class_weights") is not None and len(kwargs["class_weights"]) != info.num_classes:
        raise CnnlabError(f"model.class_weights has {len(kwargs['class_weights'])} weights but {info.name} has "
                          f"{info.num_classes} classes ({', '.join(info.class_names)}): give one per class, in "
                          "that order, or model.class_weights=balanced.")  # fmt: skip
    return target(
        **kwargs,
        data=info.as_dict(),
        optimizer=OmegaConf.to_container(cfg.optimizer, resolve=True),
        scheduler=OmegaConf.to_container(cfg.scheduler, resolve=True) if cfg.get("scheduler") else None,
        transfer=OmegaConf.to_container(cfg.transfer, resolve=True) if cfg.get("transfer") else None,
    )


def balanced_class_weights(datamodule: L.LightningDataModule | None, info: DataInfo) -> list[float]:
    """scikit-learn's "balanced" weights, n / (classes * count of the class), from the training split's labels:
    every class then weighs as much in the loss as if the classes were equally common."""
    if datamodule is None:
        raise CnnlabError("model.class_weights=balanced needs the DataModule to count its training labels.")
    counts = train_class_counts(datamodule, info.num_classes)
    missing = [info.class_names[i] for i, c in enumerate(counts.tolist()) if c == 0]
    if missing:
        raise CnnlabError(
            f"model.class_weights=balanced: no training image of class {', '.join(missing)}; its weight would be "
            "infinite. Give model.class_weights=[...] yourself, or data with every class."
        )
    weights = counts.sum() / (info.num_classes * counts.double())
    shown = ", ".join(f"{name} {w:.3g}" for name, w in zip(info.class_names, weights.tolist(), strict=True))
    log.info("class weights (balanced): %s", shown)
    return [round(float(w), 6) for w in weights]


def wants_feature_cache(model: LightningModule, datamodule: L.LightningDataModule) -> bool:
    """Frozen feature extraction on in-memory data without augmentation: the backbone's output never changes."""
    config = getattr(model, "transfer_config", None)
    return (
        config is not None
        and config.mode == "frozen"
        and config.cache_features
        and isinstance(datamodule, InMemoryDataModule)
        and not datamodule.augments_training
        and not model.mixer.mix.active  # mixing and TTA change what the backbone sees
        and model.tta == "none"
    )


def with_feature_cache(model: LightningModule, datamodule: L.LightningDataModule, cache_dir: Path):
    """The DataModule the run trains on: its backbone features instead of its images when that is the same."""
    return FeatureDataModule(datamodule, model, cache_dir) if wants_feature_cache(model, datamodule) else datamodule


def _instantiate_each(group: DictConfig | None) -> list[Any]:
    """Instantiate every entry of a group whose values are configs with a `_target_` (callbacks, loggers)."""
    if not group:
        return []
    return [build(c) for c in group.values() if isinstance(c, DictConfig) and "_target_" in c]


# Callbacks that keep a run's work safe, in every callbacks group (callbacks=none and a user's own included): each
# goes only when its key is set to null on purpose, e.g. `+callbacks.divergence_guard=null`.
SAFETY_CALLBACKS = {"divergence_guard": DivergenceGuard, "resumable": Resumable, "provenance": Provenance}


def build_callbacks(cfg: DictConfig) -> list[Callback]:
    group = cfg.get("callbacks") or {}
    callbacks = _instantiate_each(cfg.get("callbacks"))
    for key, cls in SAFETY_CALLBACKS.items():
        if key not in group and not any(isinstance(c, cls) for c in callbacks):
            callbacks.append(cls())
    callbacks += search_callbacks(cfg)
    if not cfg.get("logger"):
        # logger=none: the LR monitor has nowhere to write (Lightning would refuse to start), so it goes
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    return callbacks


def search_callbacks(cfg: DictConfig) -> list[Callback]:
    """In a job of an Optuna search (`hydra.sweeper.trial_id` set by the sweeper): report each epoch's optimized
    metric to the trial and stop when the study's pruner says so."""
    if not HydraConfig.initialized() or OmegaConf.select(HydraConfig.get(), "sweeper.trial_id") is None:
        return []
    from cnnlab.run.search.job import JobTrial  # lazy: Optuna loads only in a search's jobs, not in every training

    return [Pruning(JobTrial(HydraConfig.get().sweeper), str(cfg.get("optimized_metric") or "val/acc_best"))]


def build_loggers(cfg: DictConfig) -> list[Logger] | bool:
    loggers = _instantiate_each(cfg.get("logger"))
    return loggers or False


def step_settings(trainer_cfg: DictConfig) -> StepSettings:
    """The trainer values the model's written-out step applies (Lightning refuses them with manual optimization)."""
    return StepSettings(
        accumulate_grad_batches=int(trainer_cfg.get("accumulate_grad_batches") or 1),
        gradient_clip_val=trainer_cfg.get("gradient_clip_val"),
        gradient_clip_algorithm=trainer_cfg.get("gradient_clip_algorithm") or "norm",
    )


def build_trainer(cfg: DictConfig, callbacks: list[Callback]) -> L.Trainer:
    """The Lightning Trainer of `cfg.trainer`, with cnnlab's loggers, callbacks and checkpoint IO. A combination
    Lightning still refuses (the config checks catch the known ones) becomes one clear error, not a traceback."""
    try:
        return build(
            cfg.trainer,
            accumulate_grad_batches=1,  # done by the model's written-out step (see step_settings)
            gradient_clip_val=None,
            gradient_clip_algorithm=None,
            callbacks=callbacks,
            logger=build_loggers(cfg),
            # Without a checkpoint callback in the config, Lightning would add its own in an odd place.
            enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in callbacks),
            # Likewise its own tqdm bar (callbacks=none, callbacks.progress_bar=null): frames even off a terminal.
            enable_progress_bar=cfg.trainer.get("enable_progress_bar") is not False
            and any(isinstance(c, ProgressBar) for c in callbacks),
            plugins=[AtomicCheckpointIO()],
        )
    except Exception as err:
        cause = err.__cause__ or err
        if isinstance(cause, MisconfigurationException | ValueError | TypeError):
            raise CnnlabError(f"Lightning refused the trainer configuration: {cause}. Fix the trainer.* values "
                              "named above.") from err  # fmt: skip
        raise
