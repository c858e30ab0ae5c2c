"""cnnlab train: compose the config, build data + model + trainer, fit, test the best, write metrics.json."""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf

from cnnlab import metrics as M
from cnnlab.inspection.summary import summarize_model
from cnnlab.run.builders import (
    build_callbacks,
    build_datamodule,
    build_model,
    build_trainer,
    step_settings,
    with_feature_cache,
)
from cnnlab.run.callbacks.interruption import TrainingInterrupted
from cnnlab.run.callbacks.ordering import in_saving_order
from cnnlab.run.callbacks.provenance import Provenance
from cnnlab.run.callbacks.pruning import Pruning
from cnnlab.run.checkpoints import (
    check_weights_fit,
    checkpoint_dir,
    read_checkpoint,
    resume_checkpoint,
    resume_differences,
)
from cnnlab.run.checks import check_train_config
from cnnlab.run.machine_checks import check_on_this_machine
from cnnlab.run.tracking import Status, close_trackers, confusion_picture, log_run_to_trackers
from cnnlab.run.tuning import find_lr, use_lr
from cnnlab.utils.cli import is_multirun, record_exit_code
from cnnlab.utils.config import resolved_config
from cnnlab.utils.files import read_json
from cnnlab.utils.io import write_json_atomic
from cnnlab.utils.overrides import swept_keys, swept_overrides
from cnnlab.utils.provenance import provenance_tags
from cnnlab.utils.rundir import is_resume, owning_run_dir, resume_command
from cnnlab.utils.tables import metrics_table
from cnnlab.utils.tensorboard import log_hparams, table_hparams

log = logging.getLogger("cnnlab.run.training")


def train(cfg: DictConfig, extra_callbacks: list | None = None) -> dict[str, Any]:
    """Run one training job as `cfg` says; returns the final metrics (also written to metrics.json).

    `extra_callbacks` lets Python callers (benchmarks, notebooks) watch the run without a config entry.
    """
    started = time.perf_counter()
    _route_lightning_logs()
    check_train_config(cfg)  # every value, before any data is loaded
    check_on_this_machine(cfg)
    output_dir = Path(cfg.paths.output_dir)
    with owning_run_dir(output_dir, is_resume(cfg), resume_command(_task_overrides(), output_dir),
                        _launcher_files(output_dir)):  # fmt: skip
        return _train_then_end_trackers(cfg, started, extra_callbacks)


def _train_then_end_trackers(cfg: DictConfig, started: float, extra_callbacks: list | None) -> dict[str, Any]:
    """`_train`, then every tracker run it started (MLflow, W&B) ended with the job's status, however it ends.

    Here and not in a callback: Lightning's teardown comes after fit and again after test, and its on_exception
    misses a failure outside fit / test (lr_find, the end-of-run extras); a sweep's next job, in the same process,
    must find every tracker run of this one ended."""
    trackers: list[Logger] = []  # filled by _train once its trainer exists
    try:
        summary = _train(cfg, started, extra_callbacks, trackers)
    except BaseException as error:
        if trackers and _ending(error) == "failed":  # a failed run still says what it was: its params, config, tags
            with contextlib.suppress(Exception):  # never let the trackers hide the run's own error
                _log_run(trackers, cfg, {}, None, _provenance_record(Path(cfg.paths.output_dir)))
        close_trackers(trackers, _ending(error))
        raise
    close_trackers(trackers, "killed" if "interrupted" in summary else "success")
    return summary


def _train(cfg: DictConfig, started: float, extra_callbacks: list | None, trackers: list[Logger]) -> dict[str, Any]:
    checkpoints = checkpoint_dir(cfg)
    resume_from = resume_checkpoint(cfg.ckpt_path, checkpoints) if cfg.train else None
    if cfg.train and cfg.ckpt_path == "last" and resume_from is None:
        log.info("ckpt_path=last: no last.ckpt in %s yet, so training starts from scratch", checkpoints)
    output_dir = Path(cfg.paths.output_dir)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule, info = build_datamodule(cfg.data)
    model = build_model(cfg, info, datamodule)
    model.run_config = resolved_config(cfg)  # stored in every checkpoint: cnnlab eval rebuilds the data from it
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
    trackers.extend(trainer.loggers)

    if cfg.train and cfg.get("tune"):
        findings = find_lr(trainer, model, datamodule, cfg.tune, output_dir)
        if not cfg.tune.get("apply"):
            log.info("tune.apply=false: stopping here; train with optimizer.lr=%.4g, or rerun with tune.apply=true",
                     findings["suggestion"])  # fmt: skip
            summary = {"lr_find": {"suggestion": findings["suggestion"], "steps": findings["steps"]}}
            write_json_atomic(output_dir / "metrics.json", summary)
            return summary
        use_lr(model, findings["suggestion"])
    if resume_from is not None:
        _check_resume(model, resume_from, cfg)
    if cfg.train:
        try:
            trainer.fit(model, datamodule=datamodule, ckpt_path=resume_from)
        except TrainingInterrupted as stop:
            return _report_interruption(stop, output_dir)
    metrics = _final_metrics(trainer.callback_metrics)
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    pruned = _pruning(trainer)
    if pruned:
        log.info("pruned by the search after epoch %d: not tested (docs/search.md#pruning)", pruned["epoch"])
    if cfg.test and not pruned:
        ckpt = best or (None if cfg.train else cfg.ckpt_path)
        trainer.test(model, datamodule=datamodule, ckpt_path=ckpt, verbose=False)
        tested = _final_metrics(trainer.callback_metrics)
        metrics.update({k: v for k, v in tested.items() if k.startswith(M.TEST_PREFIX)})

    summary: dict[str, Any] = {
        **metrics,
        "params": params,
        "best_checkpoint": best or None,
        "epochs": trainer.current_epoch,
        "global_step": trainer.global_step,
        "duration_s": round(time.perf_counter() - started, 2),
    }
    if pruned:
        summary["pruned"] = pruned
    if cfg.test and getattr(model, "last_confusion", None) is not None:
        summary[M.TEST_CONFUSION] = model.last_confusion.tolist()
    if trainer.is_global_zero:
        write_json_atomic(output_dir / "metrics.json", summary)
        log_hparams(trainer.loggers, resolved_config(cfg), metrics, _table_overrides())
        _log_run(trainer.loggers, cfg, metrics, model, next((c.record for c in trainer.callbacks
                                                            if isinstance(c, Provenance)), None))  # fmt: skip
        rows = metrics_table(metrics).splitlines()
        # One record, a row an argument: the log filter escapes line breaks inside arguments, not in cnnlab's format.
        log.info("final metrics:" + "\n  %s" * len(rows), *rows)
        log.info("outputs: %s", output_dir)
    return summary


def _pruning(trainer: L.Trainer) -> dict[str, Any] | None:
    """The search's pruning of this run (trial, epoch), None when it ran to its end."""
    return next((c.state() for c in trainer.callbacks if isinstance(c, Pruning) and c.state()), None)


def _log_run(loggers: list[Logger], cfg: DictConfig, metrics: dict[str, float], model: Any,
             provenance: dict[str, Any] | None) -> None:  # fmt: skip
    """What MLflow / W&B get beyond Lightning's metrics: the hparams table's params, config.yaml, the confusion
    matrix and the run's provenance as tags (commit, packages, device, command, data fingerprints)."""
    config = resolved_config(cfg)
    log_run_to_trackers(loggers, params=table_hparams(config, _table_overrides()), config=config, metrics=metrics,
                        tags=provenance_tags(provenance) if provenance else {},
                        confusion_png=confusion_picture(getattr(model, "last_confusion", None),
                                                        getattr(model, "class_names", None)))  # fmt: skip


def _provenance_record(run_dir: Path) -> dict[str, Any] | None:
    """The record the run's Provenance callback wrote in its run dir (a failed run's trainer is gone)."""
    path = run_dir / "provenance.json"
    return read_json(path, run_dir) if path.is_file() else None


def _ending(error: BaseException) -> Status:
    """How a job that raised ended, for its tracker runs: an interruption (Ctrl+C, SIGTERM; in a sweep the exit
    130 / 143 of _report_interruption) is `killed` - resumable - not `failed`."""
    interrupted = isinstance(error, KeyboardInterrupt | TrainingInterrupted)
    return "killed" if interrupted or (isinstance(error, SystemExit) and error.code in (130, 143)) else "failed"


def _check_resume(model: Any, checkpoint: Path, cfg: DictConfig) -> None:
    """Resuming with other data / model values: refused where the weights cannot fit, else said, key by key (the
    run's checkpoints record this run's config, not the resumed one's)."""
    stored = read_checkpoint(checkpoint)  # read once for both checks
    differences = resume_differences(stored, resolved_config(cfg))
    check_weights_fit(model, stored, checkpoint, differences)
    if differences:
        log.warning("resuming %s with other values than its run had (this run's are recorded): %s", checkpoint,
                    "; ".join(differences))  # fmt: skip


def _report_interruption(stop: TrainingInterrupted, output_dir: Path) -> dict[str, Any]:
    """Log how to resume; exit 130 / 143 like an interrupted shell command. A sweep stops too (Ctrl+C means all)."""
    log.warning("interrupted (%s); resume in the same run dir with:\n  %s", stop,
                resume_command(_task_overrides(), output_dir))  # fmt: skip
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
    return swept_overrides(overrides, swept_keys(HydraConfig.get().sweep.dir))


def _launcher_files(output_dir: Path) -> list[str]:
    """What Hydra wrote into this job's directory before the job began (a sweep job's `.hydra/` and log)."""
    if not HydraConfig.initialized():
        return []
    hydra = HydraConfig.get()
    job_dir = OmegaConf.select(hydra, "runtime.output_dir", throw_on_missing=False)
    if not job_dir or Path(job_dir).resolve() != output_dir.resolve():
        return []
    return [hydra.output_subdir or ".hydra", f"{hydra.job.name}.log"]


def _final_metrics(callback_metrics: dict[str, Any]) -> dict[str, float]:
    """Epoch-level values under their plain names (Lightning adds `_step` / `_epoch` twins)."""
    return {
        k: float(v)
        for k, v in callback_metrics.items()
        if k.startswith(M.STAGES) and not k.endswith(("_step", "_epoch"))
    }


def _route_lightning_logs() -> None:
    """Lightning adds its own console handler when imported before logging is set up: Hydra's already prints."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.propagate = True


def run_training(cfg: DictConfig) -> float | None:
    """Train as `cfg` says; returns the optimized metric, which sweepers (Optuna) maximize."""
    summary = train(cfg)
    value = summary.get(cfg.optimized_metric) if cfg.get("optimized_metric") else None
    return None if value is None else float(value)
