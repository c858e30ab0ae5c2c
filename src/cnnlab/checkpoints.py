"""Loading a cnnlab checkpoint for evaluation, prediction and export, with errors that name the file."""

from __future__ import annotations

import zipfile
from pathlib import Path

import torch

from cnnlab.errors import CnnlabError


def resolve_checkpoint(path: str | Path | None) -> Path:
    if not path:
        raise CnnlabError("ckpt_path is required: ckpt_path=<run dir>/checkpoints/best-epochNNN.ckpt (or last.ckpt)")
    path = Path(path).expanduser()
    if not path.is_file():
        raise CnnlabError(f"ckpt_path={str(path)!r}: no such file. Checkpoints are in <run dir>/checkpoints/.")
    return path


def load_classifier(path: str | Path | None, device: str | torch.device = "cpu"):
    """The ImageClassifier of a cnnlab checkpoint, in eval mode, on `device`."""
    from cnnlab.models import ImageClassifier

    path = resolve_checkpoint(path)
    try:
        model = ImageClassifier.load_from_checkpoint(path, map_location=device, weights_only=False)
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, KeyError, TypeError) as err:
        raise CnnlabError(
            f"ckpt_path={str(path)!r} is not a readable cnnlab checkpoint ({type(err).__name__}: "
            f"{str(err).splitlines()[0][:200]}). It may be truncated or from another program; use another "
            "checkpoint of the run (best-*.ckpt or last.ckpt)."
        ) from err
    return model.eval().to(device)
