"""Files written so that a kill at any moment leaves either the old file or the new one, never half; and
files read so that nothing in them can run code. (Text made safe to show is `cnnlab.utils.text`'s.)
"""

from __future__ import annotations

import json
import os
import pickle
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from cnnlab.errors import CnnlabError

# What cnnlab's own files hold beyond what torch's weights-only reader takes by default (tensors, dicts, lists,
# tuples, strings, numbers, None, OrderedDict, torch.Size): nothing. Every checkpoint cnnlab writes (seed CNN,
# timm, frozen, finetune, interrupted mid-epoch, with early stopping) loads with the defaults, and a test keeps it
# so; a type added here must be one whose unpickling cannot run code (a plain data class, never a callable).
SAFE_GLOBALS: tuple[type, ...] = ()


def write_atomic(path: str | Path, write: Callable[[BinaryIO], None]) -> Path:
    """`write` fills a temp file beside `path`, which then replaces `path` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_atomic(path, lambda handle: handle.write(text.encode()))


def write_json_atomic(path: str | Path, data: Any) -> Path:
    return write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True))


class UnsafeFileError(CnnlabError):
    """A file that would run code if it were unpickled; refused before anything in it ran."""


def load_without_code(path: str | Path, what: str) -> Any:
    """`torch.load` of `path` with `weights_only=True` (tensors and plain data, plus SAFE_GLOBALS): a file whose
    pickle names a function or class would run code when read, and is refused with an error naming it. `what` names
    the setting the file came from (`ckpt_path`, `model.weights`, ...) for the message."""
    import torch  # lazy: the atomic writers here serve start-up paths that must not wait for torch (cnnlab report)

    try:
        with torch.serialization.safe_globals(list(SAFE_GLOBALS)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # torch names the function or class it would have to call: "Unsupported global: GLOBAL builtins.exec ...",
        # "Trying to load unsupported GLOBAL posix.system whose module posix is blocked"
        found = re.search(r"[Uu]nsupported (?:global: )?GLOBAL ([\w.]+)", str(err))
        if found is None:  # not a function or class, but a damaged or foreign file: the caller says it is unreadable
            raise
        raise UnsafeFileError(
            f"{what}={str(path)!r} was refused: it holds Python objects whose unpickling would run code (it names "
            f"{found.group(1)}). "
            "cnnlab reads tensors and plain data only, and ran nothing from it. Use a checkpoint or weights file "
            "written by cnnlab, PyTorch's state_dict or safetensors; never load such a file from a source you do "
            "not trust."
        ) from None


# What a pickle of plain data and numpy arrays needs (CIFAR's python batches): array and dtype reconstruction, and
# `_codecs.encode`, how protocol-2 pickles written by Python 3 carry bytes (torch's weights-only reader allows it too).
ARRAY_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
})  # fmt: skip


class _Refused(Exception):
    pass


class _ArraysOnly(pickle.Unpickler):
    """Builds dicts, lists, strings, numbers and numpy arrays; any other global (a function, a class) is refused
    before it is looked up, so nothing in the file can run."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in ARRAY_GLOBALS:
            return super().find_class(module, name)
        raise _Refused(f"{module}.{name}")


def unpickle_arrays(path: str | Path, what: str) -> Any:
    """A pickle that holds plain data and numpy arrays only (CIFAR's python-format batches), read without running
    anything; a pickle that names anything else is refused with an error naming it (`what` names the setting)."""
    with open(path, "rb") as handle:
        try:
            return _ArraysOnly(handle, encoding="latin1").load()
        except _Refused as refused:
            raise UnsafeFileError(
                f"{what}: {str(path)!r} was refused: it is a pickle that names {refused}, whose unpickling would run "
                "code; a real dataset file holds plain data and arrays only. Nothing from it ran. Replace it with "
                "the dataset's original files."
            ) from None
