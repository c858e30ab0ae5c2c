"""Checkpoints: written atomically, read so that nothing in them can run code, resolved for resuming a run.

A checkpoint is data: tensors and plain values, read with `weights_only=True` (see `cnnlab.utils.io`). What it
names - the model class, the backbone and the data it was trained on, as `_target_` paths - is imported only when it
is a class of the kind expected there (a subclass of ImageClassifier, of torch's Module, of LightningDataModule)
from outside Python's standard library, and called only then: a crafted `_target_: os.system` is refused by name.
"""

from __future__ import annotations

import inspect
import pickle
import sys
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import get_class
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch import nn

from cnnlab.errors import CnnlabError, Problems
from cnnlab.models import ImageClassifier
from cnnlab.utils.io import load_without_code, write_atomic

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
        write_atomic(path, lambda handle: torch.save(checkpoint, handle))

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


def trusted_class(target: Any, base: type, where: str, source: Path) -> type:
    """The class a checkpoint names at `where`, imported and returned only if it can be a `base` there."""
    module = str(target).rpartition(".")[0]
    top = module.split(".")[0]
    refused = CnnlabError(
        f"ckpt_path={str(source)!r} names {where}={target!r}, which is not a {base.__name__} class: refused, and "
        "nothing it names was run. The file was not written by cnnlab as it is; use the run's own checkpoint."
    )
    if not isinstance(target, str) or not module or top in sys.stdlib_module_names or top == "builtins":
        raise refused
    try:
        cls = get_class(target)
    except Exception as err:  # Hydra wraps import errors of every kind
        raise CnnlabError(
            f"ckpt_path={str(source)!r} was trained with {where}={target}, which cannot be imported here ({err}). "
            "Install the package that defines it, or run from the project that holds it."
        ) from None
    if not (inspect.isclass(cls) and issubclass(cls, base)):
        raise refused
    return cls


def check_targets(config: Any, base: type, where: str, source: Path) -> None:
    """Every `_target_` in a config read from a checkpoint: the top one a `base` class, any nested one a class."""
    if not isinstance(config, Mapping):
        return
    if "_target_" in config:
        trusted_class(config["_target_"], base, f"{where}._target_", source)
    for key, value in config.items():
        if isinstance(value, Mapping):
            check_targets(value, object, f"{where}.{key}", source)


def load_classifier(path: str | Path | None, device: str | torch.device = "cpu") -> ImageClassifier:
    """The ImageClassifier (or the user's subclass) of a cnnlab checkpoint, in eval mode, on `device`."""
    path = resolve_checkpoint(path)
    checkpoint = read_checkpoint(path, needs=("state_dict", "hyper_parameters"))
    saved = checkpoint.get("cnnlab") or {}
    cls = trusted_class(saved.get("model_class", CLASSIFIER), ImageClassifier, "the model class", path)
    check_targets((checkpoint["hyper_parameters"] or {}).get("backbone"), nn.Module, "model.backbone", path)
    try:
        model = cls.from_checkpoint(checkpoint)
    except CnnlabError:
        raise
    except (*READ_ERRORS, ValueError, AttributeError) as err:
        raise _unreadable(path, err, "cnnlab checkpoint") from err
    return model.eval().to(device)


def trained_data_config(model: ImageClassifier, path: Path) -> dict[str, Any] | None:
    """The data config the checkpoint's run used (to rebuild its test split), its targets checked."""
    data = (model.run_config or {}).get("data")
    check_targets(data, L.LightningDataModule, "data", Path(path))
    return data


def checkpoint_dir(cfg: Any) -> Path:
    """The run's checkpoint folder: the checkpoint callback's, else <run dir>/checkpoints."""
    dirpath = (cfg.get("callbacks") or {}).get("model_checkpoint", {}).get("dirpath")
    return Path(dirpath or Path(cfg.paths.output_dir) / "checkpoints")


def resume_checkpoint(ckpt_path: str | None, checkpoint_dir: Path) -> Path | None:
    """The checkpoint `cnnlab-train ckpt_path=...` resumes from. `last` means `<checkpoint_dir>/last.ckpt` and,
    when the run has none yet, a fresh start: so a preemptible job can always be (re)submitted with it."""
    if ckpt_path is None:
        return None
    if str(ckpt_path) == "last":
        last = checkpoint_dir / "last.ckpt"
        return last if last.is_file() else None
    return resolve_checkpoint(ckpt_path)


def check_resume(ckpt_path: Any, checkpoint_dir: Path, problems: Problems) -> None:
    """`ckpt_path` of cnnlab-train: a readable, code-free checkpoint of a training run (or `last`, or null)."""
    try:
        path = resume_checkpoint(None if ckpt_path is None else str(ckpt_path), checkpoint_dir)
        if path is not None:
            read_checkpoint(path, needs=("state_dict", "loops"))
    except CnnlabError as err:
        problems.add(str(err))
