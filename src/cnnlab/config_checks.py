"""Every user-facing value of a run, checked before any data is loaded: one message lists all the problems.

Each domain owns the rules of its own config (`cnnlab.data.checks`, `cnnlab.models.checks`, `TransferConfig.check`,
the optimizer's and scheduler's beside them, the resume check beside the checkpoints); this module owns the
trainer's and the paths' rules and runs them all.
"""

from __future__ import annotations

import difflib
import inspect
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.accelerators import MPSAccelerator, XLAAccelerator
from lightning.pytorch.strategies import StrategyRegistry
from omegaconf import DictConfig

from cnnlab.checkpoints import check_resume, checkpoint_dir
from cnnlab.data.checks import check_data
from cnnlab.errors import CnnlabError, Problems, is_int, is_number
from cnnlab.models.checks import check_model
from cnnlab.models.optimization import check_optimizer
from cnnlab.models.schedules import check_scheduler
from cnnlab.transfer.policy import TransferConfig
from cnnlab.utils.config import resolved_config

PRECISIONS = ("64-true", "64", "32-true", "32", "16-mixed", "16", "bf16-mixed", "bf16", "16-true", "bf16-true")
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")
PROFILERS = (None, "simple", "advanced", "pytorch")
LR_FIND_KEYS = ("min_lr", "max_lr", "num_training", "mode", "early_stop_threshold", "suggest", "apply")  # tune=lr_find
TRAINER_KEYS = tuple(p for p in inspect.signature(L.Trainer.__init__).parameters if p != "self")
# Trainer arguments cnnlab fills itself, and what to set instead.
SET_BY_CNNLAB = {
    "logger": "choose the logger group instead: logger=tensorboard | csv | none",
    "callbacks": "choose the callbacks group instead, or add an entry: +callbacks.<name>={_target_: ...}",
    "enable_checkpointing": "checkpoints follow callbacks.model_checkpoint (callbacks=none: no checkpoints)",
    "plugins": "cnnlab installs its atomic, code-free checkpoint IO; other plugins are not supported",
    "model_registry": "uploading to Lightning's model registry is not supported (it needs litmodels and a network)",
}


def check_trainer(values: Mapping[str, Any], problems: Problems) -> None:
    """The rules for `trainer.*`: every Lightning Trainer argument a user may set either works or is refused here."""
    _check_trainer_keys(values, problems)
    _check_run_length(values, problems)
    _check_hardware(values, problems)
    problems.int_at_least("trainer.log_every_n_steps", values.get("log_every_n_steps", 50), 1)
    problems.int_at_least("trainer.check_val_every_n_epoch", values.get("check_val_every_n_epoch", 1), 1,
                          null_ok=True)  # fmt: skip
    problems.int_at_least("trainer.accumulate_grad_batches", values.get("accumulate_grad_batches", 1), 1)
    problems.int_at_least("trainer.num_sanity_val_steps", values.get("num_sanity_val_steps", 0), -1,
                          null_ok=True, note=" (-1 = all)")  # fmt: skip
    problems.int_at_least("trainer.reload_dataloaders_every_n_epochs",
                          values.get("reload_dataloaders_every_n_epochs", 0), 0)  # fmt: skip
    clip = values.get("gradient_clip_val")
    problems.check(clip is None or (is_number(clip) and clip >= 0), "trainer.gradient_clip_val", clip,
                   "null or a number >= 0")  # fmt: skip
    problems.one_of("trainer.gradient_clip_algorithm", values.get("gradient_clip_algorithm"), (None, "norm", "value"))
    for key in ("limit_train_batches", "limit_val_batches", "limit_test_batches", "limit_predict_batches",
                "overfit_batches"):  # fmt: skip
        limit = values.get(key)
        ok = limit is None or (is_int(limit) and limit >= 0) or (is_number(limit) and 0 <= limit <= 1)
        problems.check(ok, f"trainer.{key}", limit, "null, a share in [0.0, 1.0] or a batch count >= 0")
    interval = values.get("val_check_interval")
    ok = interval is None or (is_int(interval) and interval >= 1) or (is_number(interval) and 0 < interval <= 1)
    problems.check(ok, "trainer.val_check_interval", interval, "null, a share of an epoch in (0, 1] or a batch count")
    problems.check(values.get("deterministic", False) in (True, False, "warn", None), "trainer.deterministic",
                   values.get("deterministic"), "true, false or warn")  # fmt: skip
    for key in ("enable_progress_bar", "enable_model_summary", "inference_mode", "use_distributed_sampler",
                "detect_anomaly", "sync_batchnorm", "enable_autolog_hparams", "benchmark"):  # fmt: skip
        if values.get(key) is not None:
            problems.flag(f"trainer.{key}", values[key])
    problems.one_of("trainer.profiler", values.get("profiler"), PROFILERS)
    fast = values.get("fast_dev_run", False)
    problems.check(fast in (True, False) or (is_int(fast) and fast >= 0), "trainer.fast_dev_run", fast,
                   "true, false or a batch count")  # fmt: skip
    if values.get("barebones"):
        problems.add("trainer.barebones=true: cnnlab's checkpoints, logs and signal handling are callbacks, which "
                     "barebones forbids; for the leanest loop use callbacks=none logger=none "
                     "trainer.enable_progress_bar=false.")  # fmt: skip


def _check_trainer_keys(values: Mapping[str, Any], problems: Problems) -> None:
    for key in values:
        if key == "_target_":
            continue
        if key in SET_BY_CNNLAB:
            problems.add(f"trainer.{key} is set by cnnlab: {SET_BY_CNNLAB[key]}.")
        elif key not in TRAINER_KEYS:
            close = difflib.get_close_matches(key, TRAINER_KEYS, n=3)
            problems.add(f"trainer.{key} is not a Lightning Trainer argument"
                         + (f" (did you mean {', '.join(close)}?)" if close else "") + ".")  # fmt: skip


def _check_run_length(values: Mapping[str, Any], problems: Problems) -> None:
    epochs, steps, max_time = values.get("max_epochs"), values.get("max_steps", -1), values.get("max_time")
    bounded = (is_int(steps) and steps >= 1) or max_time is not None
    ok = (is_int(epochs) and epochs >= 1) or ((epochs is None or epochs == -1) and bounded)
    problems.check(ok, "trainer.max_epochs", epochs, "an integer >= 1 (or -1 with trainer.max_steps or max_time)")
    problems.check(is_int(steps) and (steps == -1 or steps >= 1), "trainer.max_steps", steps, "-1 (no limit) or >= 1")
    problems.int_at_least("trainer.min_epochs", values.get("min_epochs"), 0, null_ok=True)
    problems.int_at_least("trainer.min_steps", values.get("min_steps"), 0, null_ok=True)
    ok = max_time is None or (isinstance(max_time, str) and len(max_time.split(":")) == 4
                              and all(p.isdigit() for p in max_time.split(":")))  # fmt: skip
    ok = ok or (isinstance(max_time, Mapping) and set(max_time) <= {"days", "hours", "minutes", "seconds"}
                and all(is_number(v) and v >= 0 for v in max_time.values()))  # fmt: skip
    problems.check(ok, "trainer.max_time", max_time, 'null, "DD:HH:MM:SS" or {hours: 1, minutes: 30}')


def _check_hardware(values: Mapping[str, Any], problems: Problems) -> None:
    precision = str(values.get("precision"))
    problems.check(precision in PRECISIONS, "trainer.precision", values.get("precision"),
                   "one of 32-true, bf16-mixed, 16-mixed, 64-true, bf16-true, 16-true")  # fmt: skip
    accelerator = values.get("accelerator", "auto")
    problems.one_of("trainer.accelerator", accelerator, ACCELERATORS)
    available = {"gpu": torch.cuda.is_available(), "cuda": torch.cuda.is_available(),
                 "mps": MPSAccelerator.is_available(), "tpu": XLAAccelerator.is_available()}  # fmt: skip
    if accelerator in available and not available[accelerator]:
        problems.add(f"trainer.accelerator={accelerator!r} but this machine has none available: use trainer=cpu, "
                     "or trainer.accelerator=auto.")  # fmt: skip
    on_cpu = accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())
    if on_cpu and precision in ("16-mixed", "16"):
        problems.add(f"trainer.precision={precision!r} needs a GPU (float16 autocast); on a CPU use bf16-mixed "
                     "or 32-true.")  # fmt: skip
    devices = values.get("devices", "auto")
    ok = devices == "auto" or (is_int(devices) and (devices >= 1 or devices == -1)) or isinstance(devices, list | str)
    problems.check(ok, "trainer.devices", devices, "auto, -1 (all), a count >= 1 or a list of device ids")
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if on_gpu and is_int(devices) and devices > torch.cuda.device_count():
        problems.add(f"trainer.devices={devices} but this machine has {torch.cuda.device_count()} GPU(s): use at "
                     "most that many, or -1 for all.")  # fmt: skip
    problems.int_at_least("trainer.num_nodes", values.get("num_nodes", 1), 1)
    strategy = values.get("strategy", "auto")
    known = ("auto", *StrategyRegistry.available_strategies())
    problems.check(strategy in known, "trainer.strategy", strategy, "auto, ddp, ddp_spawn, fsdp, ... (Lightning's "
                   "registered strategies)")  # fmt: skip


def check_callbacks(values: Mapping[str, Any] | None, problems: Problems) -> None:
    """The rules for cnnlab's own callbacks' values (`callbacks.ema.*`); Lightning's check their own."""
    for name, entry in (values or {}).items():
        if not isinstance(entry, Mapping) or entry.get("_target_") != "cnnlab.callbacks.EMA":
            continue
        decay = entry.get("decay", 0.999)
        problems.check(is_number(decay) and 0 < decay < 1, f"callbacks.{name}.decay", decay,
                       "a number in (0, 1), e.g. 0.999 (an average over about 1 / (1 - decay) steps)")  # fmt: skip
        problems.int_at_least(f"callbacks.{name}.every_n_steps", entry.get("every_n_steps", 1), 1)
        problems.int_at_least(f"callbacks.{name}.start_step", entry.get("start_step", 0), 0)


def check_tune(values: Mapping[str, Any] | None, problems: Problems) -> None:
    """The rules for `tune.*` (tune=lr_find)."""
    if values is None:
        return
    for key in values:
        problems.check(key in LR_FIND_KEYS, f"tune.{key}", values[key], "one of the keys " + ", ".join(LR_FIND_KEYS))
    low, high = values.get("min_lr", 1e-6), values.get("max_lr", 1.0)
    problems.check(is_number(low) and low > 0, "tune.min_lr", low, "a number > 0")
    ok = is_number(high) and (not is_number(low) or high > low)
    problems.check(ok, "tune.max_lr", high, "a number > tune.min_lr")
    problems.int_at_least("tune.num_training", values.get("num_training", 100), 20, note=" (steps of the sweep)")
    problems.one_of("tune.mode", values.get("mode", "exponential"), ("exponential", "linear"))
    threshold = values.get("early_stop_threshold", 4.0)
    problems.check(threshold is None or (is_number(threshold) and threshold > 1), "tune.early_stop_threshold",
                   threshold, "null (never stop early) or a number > 1")  # fmt: skip
    problems.one_of("tune.suggest", values.get("suggest", "valley"), ("valley", "steepest"))
    problems.flag("tune.apply", values.get("apply", False))


def check_output_dirs(paths: Mapping[str, Any], problems: Problems) -> None:
    """The run writes under log_dir and output_dir: both must be (or become) writable directories."""
    for key in ("log_dir", "output_dir"):
        value = paths.get(key)
        if value is None:
            continue
        problem = writable_dir_problem(Path(str(value)).expanduser())
        if problem:
            problems.add(f"paths.{key}={str(value)!r} {problem}")


def writable_dir_problem(path: Path) -> str | None:
    """Why files cannot be written in `path` (created if missing), or None when they can. Tried, not guessed
    from permission bits: those say yes to root even on a read-only mount."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as err:
        return (
            f"is not a writable directory ({err.strerror or err}): set paths.log_dir=<a writable dir> "
            "or run from a directory you can write to (or set CNNLAB_ROOT)."
        )
    return None


def check_train_config(cfg: DictConfig) -> None:
    """All of `cnnlab-train`'s values; raises one CnnlabError listing every problem, or returns."""
    problems = Problems()
    try:
        values = resolved_config(cfg)
    except Exception as err:  # an interpolation that cannot resolve (e.g. a missing environment variable)
        raise CnnlabError(f"the configuration does not resolve: {err}") from err
    problems.int_at_least("seed", values.get("seed"), 0)
    check_data(values.get("data") or {}, problems)
    check_model(values.get("model") or {}, problems)
    check_optimizer(values.get("optimizer") or {}, problems)
    check_scheduler(values.get("scheduler"), problems)
    TransferConfig.check(values.get("transfer"), problems)
    check_trainer(values.get("trainer") or {}, problems)
    check_callbacks(values.get("callbacks"), problems)
    check_tune(values.get("tune"), problems)
    if values.get("tune") and not values.get("train"):
        problems.add("tune=lr_find with train=false: the LR finder trains for its sweep; drop tune or set train=true.")
    check_output_dirs(values.get("paths") or {}, problems)
    if values.get("train"):
        check_resume(values.get("ckpt_path"), checkpoint_dir(cfg), problems)
    problems.raise_if_any("invalid configuration (nothing was run)")
