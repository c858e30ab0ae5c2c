"""The one exception type users see for bad input, and the small checks every config rule is built from.

A message names the thing, what was expected and the fix.
"""

from __future__ import annotations

import errno
import math
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any


class CnnlabError(ValueError):
    """A problem with the user's configuration, files or data, reported before any work is lost."""


# Why a file could not be written, for the errors a user can fix (torch hides them behind its own RuntimeError).
WRITE_ERRNOS = {
    errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up", errno.EROFS: "a read-only file system",
    errno.EACCES: "no permission to write there", errno.EPERM: "not permitted",
}  # fmt: skip


def write_error_behind(err: BaseException | None) -> OSError | None:
    """The OSError of WRITE_ERRNOS behind `err`: raised as it is, or as the cause or context of another error."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in WRITE_ERRNOS:
            return err
        err = err.__cause__ or err.__context__
    return None


def failed_write(err: OSError, path: str | Path | None = None) -> CnnlabError:
    """One message for a file that could not be written: which, why, and that what was written before is intact."""
    where = Path(path or err.filename or "a file")
    reason = WRITE_ERRNOS.get(err.errno, "an OS error")
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        free = next((shutil.disk_usage(p).free for p in (where, *where.parents) if p.exists()), None)
        reason += f", {free / 1e6:.1f} MB free" if free is not None else ""
    return CnnlabError(
        f"cannot write {where}: {err.strerror or err} ({reason}). Nothing written before was changed (checkpoints "
        "are replaced whole or not at all). Make room or choose a writable place (paths.log_dir=<dir>); a training "
        "run goes on from its last checkpoint with hydra.run.dir=<its run dir> ckpt_path=last."
    )


def find_user_error(err: BaseException | None) -> CnnlabError | None:
    """The CnnlabError behind `err`, also when Hydra's instantiate wrapped it; a file that could not be written
    (disk full, read-only, no permission) becomes one too."""
    first = err
    while err is not None:
        if isinstance(err, CnnlabError):
            return err
        err = err.__cause__
    written = write_error_behind(first)
    return failed_write(written) if written is not None else None


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class Problems:
    """Collects every problem found in one pass, so the user fixes them all at once, not one per run."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def check(self, ok: bool, key: str, value: object, allowed: str) -> None:
        if not ok:
            self.items.append(f"{key}={value!r}: {allowed}")

    def add(self, message: str) -> None:
        self.items.append(message)

    def int_at_least(self, key: str, value: Any, low: int, null_ok: bool = False, note: str = "") -> None:
        ok = (null_ok and value is None) or (is_int(value) and value >= low)
        self.check(ok, key, value, ("null or " if null_ok else "") + f"an integer >= {low}{note}")

    def in_range(self, key: str, value: Any, low: float, high: float, closed: str = "[)") -> None:
        """`closed`: which ends are allowed, as in interval notation."""
        ok = is_number(value) and (value >= low if closed[0] == "[" else value > low)
        ok = ok and (value <= high if closed[1] == "]" else value < high)
        self.check(ok, key, value, f"a number in {closed[0]}{low}, {high}{closed[1]}")

    def one_of(self, key: str, value: Any, allowed: Iterable[Any]) -> None:
        allowed = tuple(allowed)
        self.check(value in allowed, key, value, "one of " + ", ".join(map(str, allowed)))

    def flag(self, key: str, value: Any) -> None:
        self.check(value in (True, False), key, value, "true or false")

    def raise_if_any(self, context: str = "invalid configuration") -> None:
        if self.items:
            lines = "\n".join(f"  - {item}" for item in self.items)
            raise CnnlabError(f"{context}:\n{lines}")
