"""cnnlab-train: compose the config, build data + model + trainer, fit, test the best, write metrics.json."""

from __future__ import annotations

import logging
import shlex
import time
from pathlib import Path
from typing import Any

import lightning as L
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from cnnlab.builders import (
    build_callbacks,
    build_datamodule,
    build_model,
    build_trainer,
    step_settings,
    with_feature_cache,
)
from cnnlab.callbacks import TrainingInterrupted, in_saving_order
from cnnlab.checkpoints import checkpoint_dir, resume_checkpoint
from cnnlab.config_checks import check_train_config
from cnnlab.inspection.summary import summarize_model
from cnnlab.sweeps import swept_keys
from cnnlab.tuning import find_lr, use_lr
from cnnlab.utils.cli import hydra_cli, is_multirun, record_exit_code
from cnnlab.utils.config import resolved_config, split_override
from cnnlab.utils.io import write_json_atomic
from cnnlab.utils.tensorboard import log_hparams

log = logging.getLogger("cnnlab.train")


def train(cfg: DictConfig, extra_callbacks: list | None = None) -> dict[str, Any]:
    """Run one training job as `cfg` says; returns the final metrics (also written to metrics.json).

    `extra_callbacks` lets Python callers (benchmarks, notebooks) watch the run without a config entry.
    """
    started = time.perf_counter()
    _route_lightning_logs()
    check_train_config(cfg)  # every value, before any data is loaded
    checkpoints = checkpoint_dir(cfg)
    resume_from = resume_checkpoint(cfg.ckpt_path, checkpoints) if cfg.train else None
    if cfg.train and cfg.ckpt_path == "last" and resume_from is None:
        log.info("ckpt_path=last: no last.ckpt in %s yet, so training starts from scratch", checkpoints)
    output_dir = Path(cfg.paths.output_dir)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule, info = build_datamodule(cfg.data)
    model = build_model(cfg, info, datamodule)
    model.run_config = resolved_config(cfg)  # stored in every checkpoint: cnnlab-eval rebuilds the data from it
    model.set_step_settings(step_settings(cfg.trainer))
    datamodule = with_feature_cache(model, datamodule, Path(cfg.paths.cache_dir))
    report = summarize_model(model)
    params = {"total": report.params, "trainable": report.trainable, "macs": report.macs}
    log.info(
        "data: %s, %d classes, %d channels, %dx%d; model: %s parameters (%s trainable), %s multiply-adds per image",
        info.name,
        info.num_classes,
        info.in_chans,
        *info.image_size,
        f"{params['total']:,}",
        f"{params['trainable']:,}",
        f"{params['macs']:,}",
    )
    trainer = build_trainer(cfg, in_saving_order(build_callbacks(cfg) + list(extra_callbacks or [])))

    if cfg.train and cfg.get("tune"):
        findings = find_lr(trainer, model, datamodule, cfg.tune, output_dir)
        if not cfg.tune.get("apply"):
            log.info("tune.apply=false: stopping here; train with optimizer.lr=%.4g, or rerun with tune.apply=true",
                     findings["suggestion"])  # fmt: skip
            summary = {"lr_find": {"suggestion": findings["suggestion"], "steps": findings["steps"]}}
            write_json_atomic(output_dir / "metrics.json", summary)
            return summary
        use_lr(model, findings["suggestion"])
    if cfg.train:
        try:
            trainer.fit(model, datamodule=datamodule, ckpt_path=resume_from)
        except TrainingInterrupted as stop:
            return _report_interruption(stop, output_dir)
    metrics = _final_metrics(trainer.callback_metrics)
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    if cfg.test:
        ckpt = best or (None if cfg.train else cfg.ckpt_path)
        trainer.test(model, datamodule=datamodule, ckpt_path=ckpt, verbose=False)
        metrics.update({k: v for k, v in _final_metrics(trainer.callback_metrics).items() if k.startswith("test/")})

    summary: dict[str, Any] = {
        **metrics,
        "params": params,
        "best_checkpoint": best or None,
        "epochs": trainer.current_epoch,
        "global_step": trainer.global_step,
        "duration_s": round(time.perf_counter() - started, 2),
    }
    if cfg.test and getattr(model, "last_confusion", None) is not None:
        summary["test/confusion_matrix"] = model.last_confusion.tolist()
    if trainer.is_global_zero:
        write_json_atomic(output_dir / "metrics.json", summary)
        log_hparams(trainer.loggers, resolved_config(cfg), metrics, _table_overrides())
        log.info("metrics: %s", {k: round(v, 4) for k, v in metrics.items()})
        log.info("outputs: %s", output_dir)
    return summary


def _report_interruption(stop: TrainingInterrupted, output_dir: Path) -> dict[str, Any]:
    """Log how to resume; exit 130 / 143 like an interrupted shell command. A sweep stops too (Ctrl+C means all)."""
    log.warning("interrupted (%s); resume in the same run dir with:\n  %s", stop, _resume_command(output_dir))
    if is_multirun():
        raise SystemExit(stop.exit_code)
    record_exit_code(stop.exit_code)
    return {"interrupted": str(stop), "checkpoint": str(stop.checkpoint)}


def _task_overrides() -> list[str]:
    """The overrides this run was given (in a sweep: this job's), as Hydra recorded them."""
    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def _table_overrides() -> list[str]:
    """The overrides the hparams table shows: in a sweep, the swept ones (not the values every job shares)."""
    overrides = _task_overrides()
    if not is_multirun():
        return overrides
    swept = swept_keys(HydraConfig.get().sweep.dir)
    return [o for o in overrides if split_override(o)[0] in swept]


def _resume_command(output_dir: Path) -> str:
    """The command that resumes this run (a sweep job too) in its own directory, quoted to paste into a shell."""
    kept = [o for o in _task_overrides() if not o.startswith(("ckpt_path=", "hydra.run.dir=", "hydra.sweep.dir="))]
    return shlex.join(["cnnlab-train", *kept, f"hydra.run.dir={output_dir}", "ckpt_path=last"])


def _final_metrics(callback_metrics: dict[str, Any]) -> dict[str, float]:
    """Epoch-level values under their plain names (Lightning adds `_step` / `_epoch` twins)."""
    return {
        k: float(v)
        for k, v in callback_metrics.items()
        if k.startswith(("train/", "val/", "test/")) and not k.endswith(("_step", "_epoch"))
    }


def _route_lightning_logs() -> None:
    """Lightning adds its own console handler when imported before logging is set up: Hydra's already prints."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.propagate = True


def run(cfg: DictConfig) -> float | None:
    """Train as `cfg` says; returns the optimized metric, which sweepers (Optuna) maximize."""
    summary = train(cfg)
    value = summary.get(cfg.optimized_metric) if cfg.get("optimized_metric") else None
    return None if value is None else float(value)


cli = hydra_cli("train", run)

if __name__ == "__main__":
    cli()
