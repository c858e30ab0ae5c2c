"""Checkpoints: written atomically, read so that nothing in them can run code, resolved for resuming a run.

A checkpoint is data: tensors and plain values, read with `weights_only=True` (see `cnnlab.utils.io`). What it
names - the model class, the backbone and the data it was trained on, as `_target_` paths at any depth - is imported
only from trusted modules (`trusted_modules`: cnnlab's, the torch / timm classes its configs use, the user's own), and
called only when it is a class of the kind expected there (an ImageClassifier, a torch Module, a
LightningDataModule): a crafted `_target_: os.system` or a class of some installed library is refused by name.
"""

from __future__ import annotations

import importlib.util
import inspect
import pickle
import zipfile
from collections.abc import Iterable, Mapping
from importlib.machinery import PathFinder
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import get_object
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch import nn

from cnnlab.errors import CnnlabError, Problems, failed_write, write_error_behind
from cnnlab.models import ImageClassifier
from cnnlab.models.saved import saved_record
from cnnlab.utils.config import user_config_dirs
from cnnlab.utils.io import load_without_code, write_atomic
from cnnlab.utils.provenance import CHECKPOINT_KEY
from cnnlab.utils.tensorboard import flatten

READ_ERRORS = (RuntimeError, EOFError, zipfile.BadZipFile, OSError, KeyError, TypeError, pickle.UnpicklingError)
CLASSIFIER = f"{ImageClassifier.__module__}.{ImageClassifier.__qualname__}"


class AtomicCheckpointIO(TorchCheckpointIO):
    """`torch.save` into a temp file beside the target, fsync, then one rename: a kill at any moment leaves the
    previous checkpoint intact. (Lightning's own save stages the file in /tmp and moves it, which is a copy -
    not atomic - when /tmp is another file system, and leaves multi-GB temp files behind when killed.)
    Every checkpoint Lightning reads (resume, testing the best) is read without running code."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        if "://" in str(path):  # object stores: Lightning's fsspec transaction is their atomic write
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a writer killed mid-save (one rank writes)
            stale.unlink(missing_ok=True)
        try:
            write_atomic(path, lambda handle: torch.save(checkpoint, handle))
        except (OSError, RuntimeError) as err:  # torch reports a full disk as "inline_container.cc: unexpected pos"
            cause = write_error_behind(err)
            if cause is None:
                raise
            raise failed_write(cause, path) from None

    def load_checkpoint(self, path: Any, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        if "://" in str(path):
            return super().load_checkpoint(path, map_location=map_location, weights_only=True)
        return read_checkpoint(path, needs=())


def resolve_checkpoint(path: str | Path | None) -> Path:
    if not path:
        raise CnnlabError("ckpt_path is required: ckpt_path=<run dir>/checkpoints/best-epochNNN.ckpt (or last.ckpt)")
    path = Path(path).expanduser()
    if path.is_dir():
        raise CnnlabError(f"ckpt_path={str(path)!r} is a directory: give a .ckpt file in it, e.g. {path}/last.ckpt.")
    if not path.is_file():
        raise CnnlabError(f"ckpt_path={str(path)!r}: no such file. Checkpoints are in <run dir>/checkpoints/.")
    return path


def _unreadable(path: Path, err: BaseException, what: str) -> CnnlabError:
    detail = str(err).splitlines()[0][:200] if str(err) else "no detail"
    return CnnlabError(
        f"ckpt_path={str(path)!r} is not a readable {what} ({type(err).__name__}: {detail}). It may be truncated "
        "or from another program; use another checkpoint of the run (best-*.ckpt or last.ckpt)."
    )


def read_checkpoint(path: str | Path | None, needs: tuple[str, ...] = ("state_dict",)) -> dict[str, Any]:
    """The checkpoint's contents on the CPU, or one error naming the file if it is truncated, corrupt, foreign or
    would run code when read."""
    path = resolve_checkpoint(path)
    try:
        checkpoint = load_without_code(path, "ckpt_path")
    except READ_ERRORS as err:
        raise _unreadable(path, err, "checkpoint") from err
    missing = [key for key in needs if not isinstance(checkpoint, dict) or key not in checkpoint]
    if missing:
        raise CnnlabError(
            f"ckpt_path={str(path)!r} is not a Lightning checkpoint of a training run (no {', '.join(missing)}): "
            "give a .ckpt from <run dir>/checkpoints/."
        )
    return checkpoint


# The modules a checkpoint's `_target_`s may name, at any depth: cnnlab's own and the torch / timm classes its configs
# use. The user adds their own (`trust=[my_pkg]`); the modules of their project (beside a user config dir) join by
# themselves. Checked on the name, before anything is imported.
TRUSTED_MODULES = ("cnnlab", "torch.nn", "torch.optim", "timm.models", "timm.layers")


def trusted_modules(extra: Iterable[str] | None = ()) -> tuple[str, ...]:
    """Every module prefix a checkpoint may name: cnnlab's, the user's projects' (the packages and .py files beside
    each user config dir) and `extra` (the verbs' `trust=[...]`)."""
    extra = [extra] if isinstance(extra, str) else list(extra or ())
    bad = [m for m in extra if not (isinstance(m, str) and all(part.isidentifier() for part in m.split(".")))]
    if bad:
        raise CnnlabError(f"trust={extra!r}: each entry is a module name such as my_project or my_project.nets "
                          f"(not {', '.join(map(repr, bad))}).")  # fmt: skip
    return (*TRUSTED_MODULES, *project_modules(), *extra)


def project_modules() -> list[str]:
    """The top-level packages and modules of the user's own projects (the folder holding each user config dir) that
    an import really finds there: a folder named like an installed library (`numpy/`) does not make that library
    trusted, since the installed one is what would be imported. Found without importing anything."""
    found = []
    for directory in user_config_dirs():
        project = directory.resolve().parent
        for entry in sorted(project.iterdir()):
            name = entry.stem if entry.suffix == ".py" else entry.name if entry.is_dir() else ""
            if name.isidentifier() and name != "conf" and _imported_from(name, project):
                found.append(name)
    return found


def _imported_from(name: str, project: Path) -> bool:
    """Whether `import name` takes the project's own module (not an installed one of that name)."""
    local = PathFinder.find_spec(name, [str(project)])
    if local is None:
        return False
    try:
        used = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return False
    where = lambda spec: (spec.origin, list(spec.submodule_search_locations or []))  # noqa: E731
    return used is None or where(used) == where(local)


def _is_trusted(target: str, trusted: tuple[str, ...]) -> bool:
    return any(target.startswith(f"{module}.") for module in trusted)


def _refused_target(source: Path, where: str, target: Any, why: str) -> CnnlabError:
    return CnnlabError(
        f"ckpt_path={str(source)!r} names {where}={target!r}, {why}: refused, and nothing it names was imported or "
        "run. A checkpoint builds only classes of cnnlab, torch.nn / torch.optim, timm and your own project; if "
        "that module is yours, say so with trust=[<module>]. Otherwise use a checkpoint written by cnnlab."
    )


def trusted_class(target: Any, base: type, where: str, source: Path, trusted: tuple[str, ...] = TRUSTED_MODULES
                  ) -> type:  # fmt: skip
    """The class a checkpoint names at `where`, imported only if its module is trusted, returned only if it can be
    a `base` there."""
    if not isinstance(target, str) or not _is_trusted(target, trusted):
        raise _refused_target(source, where, target, "which is not from a trusted module")
    try:
        cls = get_object(target)
    except Exception as err:  # Hydra wraps import errors of every kind
        raise CnnlabError(
            f"ckpt_path={str(source)!r} was trained with {where}={target}, which cannot be imported here ({err}). "
            "Install the package that defines it, or run from the project that holds it."
        ) from None
    if not (inspect.isclass(cls) and issubclass(cls, base)):
        kind = "a class" if base is object else f"a {base.__name__} class"
        raise _refused_target(source, where, target, f"which is not {kind}")
    return cls


def check_targets(config: Any, where: str, source: Path, trusted: tuple[str, ...], base: type = object,
                  functions_from: tuple[str, ...] = ()) -> None:  # fmt: skip
    """Every `_target_` of a config read from a checkpoint, at any depth (lists included): from a trusted module and
    a class (the top one a `base`), or a function of `functions_from`. A `${...}` string is refused too: composing
    it would call resolvers (environment variables, the directories cnnlab's own resolvers make)."""
    if isinstance(config, str) and "${" in config:
        raise _refused_target(source, where, config, "an interpolation that composing would resolve")
    if isinstance(config, list | tuple):
        for i, value in enumerate(config):
            check_targets(value, f"{where}[{i}]", source, trusted, functions_from=functions_from)
    if not isinstance(config, Mapping):
        return
    if "_target_" in config:
        target = config["_target_"]
        if not (isinstance(target, str) and _is_trusted(target, functions_from)):
            trusted_class(target, base, f"{where}._target_", source, trusted)
    for key, value in config.items():
        if key != "_target_":
            check_targets(value, f"{where}.{key}", source, trusted, functions_from=functions_from)


def load_classifier(path: str | Path | None, device: str | torch.device = "cpu",
                    trust: Iterable[str] | None = ()) -> ImageClassifier:  # fmt: skip
    """The ImageClassifier (or the user's subclass) of a cnnlab checkpoint, in eval mode, on `device`. Everything it
    names is checked before anything is imported (see `trusted_modules`; `trust` adds the user's own modules)."""
    path = resolve_checkpoint(path)
    trusted = trusted_modules(trust)
    checkpoint = read_checkpoint(path, needs=("state_dict", "hyper_parameters"))
    saved = saved_record(checkpoint)
    hparams = checkpoint["hyper_parameters"] or {}
    cls = trusted_class(saved.get("model_class", CLASSIFIER), ImageClassifier, "the model class", path, trusted)
    check_targets(hparams.get("backbone"), "model.backbone", path, trusted, base=nn.Module)
    others = {key: value for key, value in hparams.items() if key != "backbone"}
    check_targets(others, "model", path, trusted, functions_from=("cnnlab.models.schedules",))  # LR schedules
    try:
        model = rebuilt(cls, checkpoint)
    except CnnlabError:
        raise
    except (*READ_ERRORS, ValueError, AttributeError) as err:
        raise _unreadable(path, err, "cnnlab checkpoint") from err
    model.saved_provenance = checkpoint.get(CHECKPOINT_KEY)  # plain data, unchecked: compared, never acted on
    return model.eval().to(device)


def rebuilt(cls: type[ImageClassifier], checkpoint: dict[str, Any]) -> ImageClassifier:
    """The model of an already read and checked checkpoint, on the CPU. The backbone is not fetched as pretrained
    again: the checkpoint holds the trained weights, and the original ones (a file, a package, the hub) may not be
    reachable where it is loaded."""
    hparams = {**checkpoint["hyper_parameters"], "pretrained": False, "compile": False}
    model = cls(**hparams)
    model.on_load_checkpoint(checkpoint)
    model.load_state_dict(checkpoint["state_dict"])
    return model


def trained_data_config(model: ImageClassifier, path: Path, trust: Iterable[str] | None = ()) -> dict[str, Any] | None:
    """The data config the checkpoint's run used (to rebuild its test split), its targets checked. It may point at
    local data only: nothing a handed-over checkpoint names is downloaded or fetched."""
    data = (model.run_config or {}).get("data")
    check_targets(data, "data", Path(path), trusted_modules(trust), base=L.LightningDataModule)
    for key, value in (data or {}).items():
        fetches = "is a remote address" if isinstance(value, str) and "://" in value else None
        if key == "download" and value:
            fetches = "downloads the dataset"
        if (
            key == "name"
            and value
            and str(data.get("_target_")).endswith("HuggingFaceDataModule")
            and not data.get("path")
        ):
            fetches = "loads a dataset from the Hugging Face hub"
        if fetches:
            raise CnnlabError(
                f"ckpt_path={str(path)!r} was trained with data.{key}={value!r}, which {fetches}: cnnlab fetches "
                "nothing a checkpoint names. Give the data yourself: data=<option> (e.g. data=streaming "
                "data.input_dir=<folder>, or the same dataset from a local copy)."
            )
    return data


def checkpoint_dir(cfg: Any) -> Path:
    """The run's checkpoint folder: the checkpoint callback's, else <run dir>/checkpoints."""
    dirpath = (cfg.get("callbacks") or {}).get("model_checkpoint", {}).get("dirpath")
    return Path(dirpath or Path(cfg.paths.output_dir) / "checkpoints")


def resume_checkpoint(ckpt_path: str | None, checkpoint_dir: Path) -> Path | None:
    """The checkpoint `cnnlab train ckpt_path=...` resumes from. `last` means `<checkpoint_dir>/last.ckpt` and,
    when the run has none yet, a fresh start: so a preemptible job can always be (re)submitted with it."""
    if ckpt_path is None:
        return None
    if str(ckpt_path) == "last":
        last = checkpoint_dir / "last.ckpt"
        return last if last.is_file() else None
    return resolve_checkpoint(ckpt_path)


def check_resume(ckpt_path: Any, checkpoint_dir: Path, problems: Problems) -> None:
    """`ckpt_path` of cnnlab train: a readable, code-free checkpoint of a training run (or `last`, or null)."""
    try:
        path = resume_checkpoint(None if ckpt_path is None else str(ckpt_path), checkpoint_dir)
        if path is not None:
            read_checkpoint(path, needs=("state_dict", "loops"))
    except CnnlabError as err:
        problems.add(str(err))


def resume_differences(checkpoint: Mapping[str, Any], config: Mapping[str, Any]) -> list[str]:
    """The `data.*` and `model.*` values of this run that differ from those the checkpoint's run was started with,
    as `key: checkpoint's -> this run's`."""
    stored = saved_record(checkpoint).get("config") or {}
    then = {k: v for group in ("data", "model") for k, v in flatten(stored.get(group) or {}, f"{group}.", ".").items()}
    now = {k: v for group in ("data", "model") for k, v in flatten(config.get(group) or {}, f"{group}.", ".").items()}
    return [f"{key}: {then.get(key, '(unset)')} -> {now.get(key, '(unset)')}" for key in sorted(then.keys() | now)
            if then.get(key) != now.get(key)]  # fmt: skip


def check_weights_fit(model: nn.Module, checkpoint: Mapping[str, Any], path: Path, differences: list[str]) -> None:
    """A resumed run's model must take the checkpoint's weights as they are (names and shapes); else one error that
    names the first mismatches and the config values that changed, instead of Lightning's state-dict traceback."""
    theirs = checkpoint["state_dict"]
    own = model.state_dict()
    problems = [f"{k} missing" for k in sorted(own.keys() - theirs.keys())]
    problems += [f"{k} not in this model" for k in sorted(theirs.keys() - own.keys())]
    problems += [f"{k} {tuple(theirs[k].shape)} vs {tuple(own[k].shape)}" for k in sorted(own.keys() & theirs.keys())
                 if hasattr(theirs[k], "shape") and theirs[k].shape != own[k].shape]  # fmt: skip
    if problems:
        changed = "; ".join(differences[:8]) or "none of data.* / model.*"
        raise CnnlabError(
            f"ckpt_path={str(path)!r} cannot be resumed with this configuration: its weights do not fit the model "
            f"({len(problems)} tensors differ, e.g. {'; '.join(problems[:3])}). Changed since that run: {changed}. "
            "Resume with the overrides the run was started with (its .hydra/overrides.yaml), or start a new run "
            "that takes its weights: model.weights=<that .ckpt>."
        )
