"""Reading files someone else may have made (dataset folders, shards, sweep dirs): regular files only - a FIFO would
hang the read, a device never end it -, inside the folder they belong to - a symlink leading out is another file,
anywhere on the machine -, and small where they should be small (JSON and YAML metadata).
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import IO, Any

import yaml

MAX_METADATA_BYTES = 64 * 2**20  # an index of ~500,000 shard chunks; a larger "metadata" file is not one


class RefusedFile(ValueError):
    """A file cnnlab will not open: not a regular file, outside its folder, or too large for what it claims to be."""


def file_kind(mode: int) -> str:
    """What a file of this `st_mode` is, in words (for the reasons a file is refused)."""
    kinds = ((stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
             (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"))  # fmt: skip
    return next((kind for test, kind in kinds if test(mode)), "not a regular file")


def require_regular_file(path: str | Path) -> os.stat_result:
    """The stat of `path` (symlinks followed) when it is a regular file; RefusedFile for a FIFO, socket or device,
    OSError when it cannot be stat'ed."""
    status = os.stat(path)
    if not stat.S_ISREG(status.st_mode):
        raise RefusedFile(f"{file_kind(status.st_mode)}, not a regular file: not opened")
    return status


def open_regular_file(path: str | Path) -> IO[bytes]:
    """`path` opened for reading only when it is a regular file: opened non-blocking and checked on the open file,
    so a FIFO swapped in after the check cannot hang the caller."""
    require_regular_file(path)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise RefusedFile(f"{file_kind(mode)}, not a regular file: not opened")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def real_root(root: str | Path) -> str:
    """A folder's real path (symlinks resolved), as `inside` compares against."""
    return os.path.realpath(os.path.expanduser(str(root)))


def inside(path: str | Path, root: str) -> bool:
    """Whether `path`, every symlink resolved, lies in the folder whose real path is `root` (`real_root`)."""
    real = os.path.realpath(path)
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


def read_small(path: str | Path, root: str | Path | None = None, limit: int = MAX_METADATA_BYTES) -> bytes:
    """The bytes of a regular file of at most `limit` bytes, inside the folder `root` when given."""
    if root is not None and not inside(path, real_root(root)):
        raise RefusedFile(f"{path} leads outside {root} (to {os.path.realpath(path)}): not opened")
    with open_regular_file(path) as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise RefusedFile(f"{path} is over {limit:,} bytes: not a metadata file")
    return data


def read_json(path: str | Path, root: str | Path | None = None, limit: int = MAX_METADATA_BYTES) -> Any:
    """`read_small`, parsed as JSON (nesting too deep for the parser is a ValueError, not a crash)."""
    data = read_small(path, root, limit)
    try:
        return json.loads(data)
    except RecursionError:  # [[[[...]]]]: valid JSON that no metadata file is
        raise ValueError(f"{path}: JSON nested too deeply") from None


def read_yaml(path: str | Path, root: str | Path | None = None, limit: int = MAX_METADATA_BYTES) -> Any:
    """`read_small`, parsed with YAML's safe loader (plain data; no tags that build objects); a ValueError when it is
    not YAML."""
    data = read_small(path, root, limit)
    try:
        return yaml.safe_load(data)
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not YAML ({str(err).splitlines()[0]})") from None
