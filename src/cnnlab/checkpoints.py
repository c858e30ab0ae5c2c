"""Checkpoints: written atomically, read with errors that name the file, resolved for resuming a run."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from cnnlab.errors import CnnlabError
from cnnlab.utils.io import write_atomic

READ_ERRORS = (RuntimeError, EOFError, zipfile.BadZipFile, OSError, KeyError, TypeError, pickle.UnpicklingError)


class AtomicCheckpointIO(TorchCheckpointIO):
    """`torch.save` into a temp file beside the target, fsync, then one rename: a kill at any moment leaves the
    previous checkpoint intact. (Lightning's own save stages the file in /tmp and moves it, which is a copy -
    not atomic - when /tmp is another file system, and leaves multi-GB temp files behind when killed.)"""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        if "://" in str(path):  # object stores: Lightning's fsspec transaction is their atomic write
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a writer killed mid-save (one rank writes)
            stale.unlink(missing_ok=True)
        write_atomic(path, lambda handle: torch.save(checkpoint, handle))


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
    """The checkpoint's contents on the CPU, or one error naming the file if it is truncated, corrupt or foreign."""
    path = resolve_checkpoint(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except READ_ERRORS as err:
        raise _unreadable(path, err, "checkpoint") from err
    missing = [key for key in needs if not isinstance(checkpoint, dict) or key not in checkpoint]
    if missing:
        raise CnnlabError(
            f"ckpt_path={str(path)!r} is not a Lightning checkpoint of a training run (no {', '.join(missing)}): "
            "give a .ckpt from <run dir>/checkpoints/."
        )
    return checkpoint


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


def load_classifier(path: str | Path | None, device: str | torch.device = "cpu"):
    """The ImageClassifier of a cnnlab checkpoint, in eval mode, on `device`."""
    from cnnlab.models import ImageClassifier

    path = resolve_checkpoint(path)
    try:
        model = ImageClassifier.load_from_checkpoint(path, map_location=device, weights_only=False)
    except READ_ERRORS as err:
        raise _unreadable(path, err, "cnnlab checkpoint") from err
    return model.eval().to(device)
