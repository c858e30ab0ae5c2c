"""Every user-facing value of each verb, checked before any data is loaded: one message lists all the problems.

Each domain owns the rules of its own config (`cnnlab.data.checks`, `cnnlab.models.checks`, `TransferConfig.check`, the
optimizer's and scheduler's beside them); this module owns the trainer's, the paths' and each verb's own keys (and the
SLURM launcher's counts, which must fit the trainer's), and runs them all. Nothing here imports torch or Lightning:
`cnnlab <verb>` runs these checks before the work is imported, so a bad value is answered in about a second. What
depends on this machine (its GPUs, the installed timm's models, a resumed checkpoint's contents) is
`cnnlab.run.machine_checks`'.
"""

from __future__ import annotations

import difflib
import errno
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from cnnlab.data.checks import check_byte_size, check_data
from cnnlab.errors import CnnlabError, Problems, is_int, is_number
from cnnlab.models.checks import TTA_MODES, check_model, check_optimizer
from cnnlab.models.schedules import check_scheduler
from cnnlab.transfer.config import TransferConfig
from cnnlab.utils.config import resolved_config

PRECISIONS = ("64-true", "64", "32-true", "32", "16-mixed", "16", "bf16-mixed", "bf16", "16-true", "bf16-true")
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")
PROFILERS = (None, "simple", "advanced", "pytorch")
LR_FIND_KEYS = ("min_lr", "max_lr", "num_training", "mode", "early_stop_threshold", "suggest", "apply")  # tune=lr_find
# lightning.Trainer's arguments (2.6), written out so that checking needs no import of Lightning; a test compares
# them with the installed Trainer's signature.
TRAINER_KEYS = ("accelerator", "strategy", "devices", "num_nodes", "precision", "logger", "callbacks", "fast_dev_run",
                "max_epochs", "min_epochs", "max_steps", "min_steps", "max_time", "limit_train_batches",
                "limit_val_batches", "limit_test_batches", "limit_predict_batches", "overfit_batches",
                "val_check_interval", "check_val_every_n_epoch", "num_sanity_val_steps", "log_every_n_steps",
                "enable_checkpointing", "enable_progress_bar", "enable_model_summary", "accumulate_grad_batches",
                "gradient_clip_val", "gradient_clip_algorithm", "deterministic", "benchmark", "inference_mode",
                "use_distributed_sampler", "profiler", "detect_anomaly", "barebones", "plugins", "sync_batchnorm",
                "reload_dataloaders_every_n_epochs", "default_root_dir", "enable_autolog_hparams",
                "model_registry")  # fmt: skip
EMA_TARGET = "cnnlab.run.callbacks.EMA"  # conf/callbacks/ema.yaml
# hydra/launcher=submitit_slurm (and conf/hydra/launcher/slurm_ddp.yaml): the launcher whose allocation DDP must fit.
SLURM_LAUNCHER = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
SLURM_COUNTS = ("nodes", "tasks_per_node", "gpus_per_node")
# Trainer arguments cnnlab fills itself, and what to set instead.
SET_BY_CNNLAB = {
    "logger": "choose the logger group instead: logger=tensorboard | csv | mlflow | wandb | many | none",
    "callbacks": "choose the callbacks group instead, or add an entry: +callbacks.<name>={_target_: ...}",
    "enable_checkpointing": "checkpoints follow callbacks.model_checkpoint (callbacks=none: no checkpoints)",
    "plugins": "cnnlab installs its atomic, code-free checkpoint IO; other plugins are not supported",
    "model_registry": "uploading to Lightning's model registry is not supported (it needs litmodels and a network)",
}


# Where the modules of cnnlab 0.1 went in 0.2 (the package was redrawn): a user's config naming an old path gets
# the new one, instead of Hydra's "Error locating target".
MOVED_MODULES = {"cnnlab.callbacks": "cnnlab.run.callbacks", "cnnlab.sweeps": "cnnlab.run.sweeps",
                 "cnnlab.builders": "cnnlab.run.builders", "cnnlab.tuning": "cnnlab.run.tuning",
                 "cnnlab.checkpoints": "cnnlab.run.checkpoints", "cnnlab.inference": "cnnlab.run.inference",
                 "cnnlab.config_checks": "cnnlab.run.checks", "cnnlab.train": "cnnlab.run.training",
                 "cnnlab.evaluate": "cnnlab.run.evaluation", "cnnlab.predict": "cnnlab.run.prediction",
                 "cnnlab.export": "cnnlab.run.exporting", "cnnlab.explain": "cnnlab.run.explaining",
                 "cnnlab.summary": "cnnlab.run.layers", "cnnlab.optimize": "cnnlab.run.sharding",
                 "cnnlab.study": "cnnlab.run.study", "cnnlab.baselines": "cnnlab.run.baselines"}  # fmt: skip


def check_moved_targets(values: Any, problems: Problems, where: str = "") -> None:
    """Every `_target_` (at any depth) that names a module of cnnlab 0.1 which moved: the new name to write."""
    if isinstance(values, Mapping):
        target = values.get("_target_")
        if isinstance(target, str):
            module = target.rsplit(".", 1)[0]
            for old, new in MOVED_MODULES.items():
                if module == old or module.startswith(old + "."):
                    problems.add(f"{where}_target_={target}: {old} moved to {new} in cnnlab 0.2; write "
                                 f"_target_: {new}{target[len(old):]}")  # fmt: skip
        for key, value in values.items():
            check_moved_targets(value, problems, f"{where}{key}.")
    elif isinstance(values, list):
        for index, value in enumerate(values):
            check_moved_targets(value, problems, f"{where}{index}.")


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
    devices = values.get("devices", "auto")
    ok = devices == "auto" or (is_int(devices) and (devices >= 1 or devices == -1)) or isinstance(devices, list | str)
    problems.check(ok, "trainer.devices", devices, "auto, -1 (all), a count >= 1 or a list of device ids")
    problems.int_at_least("trainer.num_nodes", values.get("num_nodes", 1), 1)
    strategy = values.get("strategy", "auto")
    problems.check(isinstance(strategy, str) and bool(strategy), "trainer.strategy", strategy,
                   "auto, ddp, ddp_spawn, fsdp, ... (Lightning's registered strategies)")  # fmt: skip


def check_callbacks(values: Mapping[str, Any] | None, problems: Problems) -> None:
    """The rules for cnnlab's own callbacks' values (`callbacks.ema.*`); Lightning's check their own."""
    for name, entry in (values or {}).items():
        if not isinstance(entry, Mapping) or entry.get("_target_") != EMA_TARGET:
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
        check_writable(f"paths.{key}", str(value), problems)


def check_writable(key: str, value: str, problems: Problems, file: bool = False) -> None:
    """`key=value` names a folder to write in - or, with `file`, a file whose folder it is - that must be (or
    become) a writable directory."""
    path = Path(value).expanduser()
    problem = writable_dir_problem(path.parent if file else path)
    if problem:
        problems.add(f"{key}={value!r}{': its folder' if file else ''} {problem}")


def writable_dir_problem(path: Path) -> str | None:
    """Why files cannot be written in `path`, or None when they can: `path`, or the nearest folder above it that
    exists (where it would be created), is tried - not guessed from permission bits, which say yes to root even on
    a read-only mount - and nothing is created."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        if not existing.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, f"{existing} is a file")
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        return (
            f"is not a writable directory ({err.strerror or err}): set paths.log_dir=<a writable dir> "
            "or run from a directory you can write to (or set CNNLAB_ROOT)."
        )
    return None


def values_of(cfg: DictConfig) -> dict[str, Any]:
    """The resolved values of `cfg`, or one error naming the interpolation that does not resolve."""
    try:
        return resolved_config(cfg)
    except Exception as err:  # an interpolation that cannot resolve (e.g. a missing environment variable)
        raise CnnlabError(f"the configuration does not resolve: {err}") from err


def train_problems(values: Mapping[str, Any], problems: Problems) -> None:
    """The rules of a training config (also those of `cnnlab layers`, which builds the same model)."""
    check_moved_targets(values, problems)
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
    ckpt = values.get("ckpt_path")
    problems.check(ckpt is None or isinstance(ckpt, str), "ckpt_path", ckpt, "null, last, or a .ckpt file to resume")


def check_train_config(cfg: DictConfig) -> None:
    """All of `cnnlab train`'s values; raises one CnnlabError listing every problem, or returns."""
    problems = Problems()
    values = values_of(cfg)
    train_problems(values, problems)
    check_slurm_launcher(slurm_launcher_counts(cfg), values.get("trainer") or {}, problems)
    problems.raise_if_any("invalid configuration (nothing was run)")


def slurm_launcher_counts(cfg: DictConfig) -> dict[str, Any] | None:
    """hydra.launcher's nodes, tasks_per_node and gpus_per_node when the config asks for the SLURM launcher, else
    None. Only a config composed with Hydra's node holds them (the CLI's check before a run, `compose_config`); a
    running job's does not, and Lightning checks the allocation it got there. Each count is resolved alone:
    resolving the launcher's `submitit_folder` would create the sweep dir."""
    if OmegaConf.select(cfg, "hydra.launcher._target_", default=None) != SLURM_LAUNCHER:
        return None
    return {key: OmegaConf.select(cfg, f"hydra.launcher.{key}", throw_on_resolution_failure=False)
            for key in SLURM_COUNTS}  # fmt: skip


def check_slurm_launcher(counts: Mapping[str, Any] | None, trainer: Mapping[str, Any], problems: Problems) -> None:
    """What SLURM allocates must be what Lightning's DDP runs on: one task per device on `trainer.num_nodes` nodes,
    one GPU per task. Lightning refuses a mismatch only once the job has waited in the queue and started
    (SLURMEnvironment.validate_settings); GPUs asked for and not used sit idle."""
    if counts is None:
        return
    nodes, tasks, gpus = (counts.get(key) for key in SLURM_COUNTS)
    for key, value in (("nodes", nodes), ("tasks_per_node", tasks)):
        if value is None:  # slurm_ddp's ${trainer.devices} when that is `auto`: no valid int, so it does not resolve
            problems.add(f"hydra.launcher.{key} is not a count: hydra/launcher=slurm_ddp sets it from trainer.devices "
                         "and trainer.num_nodes, which must then be numbers (trainer.devices=<devices per node>, not "
                         "auto or -1).")  # fmt: skip
        else:
            problems.int_at_least(f"hydra.launcher.{key}", value, 1)
    problems.int_at_least("hydra.launcher.gpus_per_node", gpus, 0, null_ok=True)
    num_nodes, devices = trainer.get("num_nodes", 1), _device_count(trainer.get("devices", "auto"))
    if is_int(nodes) and is_int(num_nodes) and nodes != num_nodes:
        problems.add(f"hydra.launcher.nodes={nodes} but trainer.num_nodes={num_nodes}: SLURM would start {nodes} "
                     f"node(s) and Lightning would refuse the job once it ran. Give both the same count, e.g. "
                     f"trainer.num_nodes={nodes} (hydra/launcher=slurm_ddp takes trainer's counts).")  # fmt: skip
    if devices is None:  # auto / -1: as many as the node shows, which SLURM decides
        return
    if is_int(tasks) and tasks != devices:
        problems.add(f"hydra.launcher.tasks_per_node={tasks} but trainer.devices={devices}: Lightning's DDP runs one "
                     f"SLURM task per device. Set hydra.launcher.tasks_per_node={devices} (or trainer.devices={tasks}; "
                     "hydra/launcher=slurm_ddp takes trainer's counts).")  # fmt: skip
    if is_int(gpus) and gpus != devices and str(trainer.get("accelerator")) != "cpu":
        problems.add(f"hydra.launcher.gpus_per_node={gpus} but trainer.devices={devices}: each node's "
                     f"{devices} task(s) use one GPU each. Set hydra.launcher.gpus_per_node={devices}.")  # fmt: skip


def _device_count(devices: Any) -> int | None:
    """How many devices per node `trainer.devices` names, or None where the node decides (auto, -1)."""
    if isinstance(devices, list | tuple):
        return len(devices)
    if isinstance(devices, str) and "," in devices:  # Lightning's "0,1": device ids
        return len([d for d in devices.split(",") if d.strip()])
    if isinstance(devices, str) and devices.isdigit():
        devices = int(devices)
    return devices if is_int(devices) and devices >= 1 else None


TTA_CHOICES = (None, *TTA_MODES)  # null: the checkpoint's own model.tta
EXPORT_FORMATS = ("onnx", "torchscript")
VIEWS = ("cam", "features")
CAM_METHODS = ("gradcam", "gradcam++", "hirescam", "xgradcam", "layercam", "eigencam", "eigengradcam", "scorecam")


def checkpoint_problems(values: Mapping[str, Any], problems: Problems) -> None:
    """`ckpt_path` (required), `tta` and `trust` of the verbs that load a checkpoint (eval, predict, export,
    explain); what the file holds is checked when it is read."""
    check_moved_targets(values, problems)
    ckpt = values.get("ckpt_path")
    if ckpt is None or ckpt == "":
        problems.add("ckpt_path is required: ckpt_path=<run dir>/checkpoints/best-epochNNN.ckpt (or last.ckpt).")
    elif not isinstance(ckpt, str):
        problems.check(False, "ckpt_path", ckpt, "the path of a .ckpt file")
    else:
        path = Path(ckpt).expanduser()
        if path.is_dir():
            problems.add(f"ckpt_path={ckpt!r} is a directory: give a .ckpt file in it, e.g. {path}/last.ckpt.")
        elif not path.is_file():
            problems.add(f"ckpt_path={ckpt!r}: no such file. Checkpoints are in <run dir>/checkpoints/.")
    problems.one_of("tta", values.get("tta"), TTA_CHOICES)
    trust = values.get("trust") or []
    problems.check(isinstance(trust, list) and all(isinstance(m, str) and m for m in trust), "trust", trust,
                   "a list of module names, e.g. [my_project]")  # fmt: skip
    if "max_pixels" in values:
        problems.int_at_least("max_pixels", values.get("max_pixels"), 1, null_ok=True)
    check_output_dirs(values.get("paths") or {}, problems)


def inputs_problems(values: Mapping[str, Any], problems: Problems) -> None:
    inputs = values.get("inputs")
    ok = isinstance(inputs, str | list) and bool(inputs)
    problems.check(ok, "inputs", inputs, "required: an image, a folder (searched recursively) or a glob such as "
                   "'shots/*.jpg'")  # fmt: skip


def check_eval_config(cfg: DictConfig) -> None:
    """All of `cnnlab eval`'s values."""
    values, problems = values_of(cfg), Problems()
    checkpoint_problems(values, problems)
    problems.int_at_least("batch_size", values.get("batch_size"), 1)
    problems.int_at_least("num_mistakes", values.get("num_mistakes"), 0)
    if values.get("data"):
        problems.int_at_least("seed", values.get("seed"), 0)
        check_data(values["data"], problems)
    problems.raise_if_any("invalid cnnlab eval configuration (nothing was run)")


def check_predict_config(cfg: DictConfig) -> None:
    """All of `cnnlab predict`'s values."""
    values, problems = values_of(cfg), Problems()
    checkpoint_problems(values, problems)
    inputs_problems(values, problems)
    problems.int_at_least("top_k", values.get("top_k"), 1)
    problems.int_at_least("batch_size", values.get("batch_size"), 1)
    output = values.get("output")
    ok = output is None or (isinstance(output, str) and Path(output).suffix.lower() in (".csv", ".json"))
    problems.check(ok, "output", output, "null (print only) or a .csv / .json file")
    if ok and output is not None:
        check_writable("output", output, problems, file=True)
    problems.raise_if_any("invalid cnnlab predict configuration (nothing was run)")


def check_export_config(cfg: DictConfig) -> None:
    """All of `cnnlab export`'s values."""
    values, problems = values_of(cfg), Problems()
    checkpoint_problems(values, problems)
    problems.one_of("format", values.get("format"), EXPORT_FORMATS)
    output = values.get("output")
    problems.check(output is None or (isinstance(output, str) and bool(output)), "output", output,
                   "null (this export's own folder) or a file path")  # fmt: skip
    if isinstance(output, str) and output:
        check_writable("output", output, problems, file=True)
    problems.raise_if_any("invalid cnnlab export configuration (nothing was run)")


def check_explain_config(cfg: DictConfig) -> None:
    """All of `cnnlab explain`'s values that need no model (the target class and the layer are checked against
    the model once it is loaded)."""
    values, problems = values_of(cfg), Problems()
    checkpoint_problems(values, problems)
    inputs_problems(values, problems)
    problems.one_of("what", values.get("what"), VIEWS)
    problems.one_of("method", values.get("method"), CAM_METHODS)
    for key in ("top_k", "batch_size", "max_channels"):
        problems.int_at_least(key, values.get(key), 1)
    problems.flag("sanity", values.get("sanity"))
    if values.get("sanity") is True and values.get("what") == "features":
        problems.add("sanity=true checks class activation maps: use it with what=cam, not what=features")
    layer = values.get("layer")
    problems.check(layer is None or isinstance(layer, str), "layer", layer, "null or a module name, e.g. head")
    if values.get("output") is not None:
        check_writable("output", str(values["output"]), problems)
    problems.raise_if_any("invalid cnnlab explain configuration (nothing was run)")


def check_layers_config(cfg: DictConfig) -> None:
    """All of `cnnlab layers`' values: a training config's, and `depth`."""
    values, problems = values_of(cfg), Problems()
    depth = values.get("depth")
    problems.check(is_int(depth) and (depth == -1 or depth >= 1), "depth", depth,
                   "-1 (every layer) or an integer >= 1 (the modules that many levels down)")  # fmt: skip
    train_problems(values, problems)
    problems.raise_if_any("invalid cnnlab layers configuration (nothing was run)")


def check_shards_config(cfg: DictConfig) -> None:
    """All of `cnnlab shards`' values."""
    values, problems = values_of(cfg), Problems()
    output = values.get("output_dir")
    problems.check(isinstance(output, str) and bool(output), "output_dir", output,
                   "required: a folder or s3:// URI for the shards")  # fmt: skip
    if isinstance(output, str) and output and "://" not in output:
        check_writable("output_dir", output, problems)
    problems.int_at_least("num_workers", values.get("num_workers"), 1)
    check_byte_size("chunk_bytes", values.get("chunk_bytes"), problems)
    problems.int_at_least("seed", values.get("seed"), 0)
    check_data(values.get("data") or {}, problems)
    problems.raise_if_any("invalid cnnlab shards configuration (nothing was written)")
