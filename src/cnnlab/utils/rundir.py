"""Run directories that are unique even when two runs start in the same second."""

from __future__ import annotations

import hashlib
import os
import re
import sys
from pathlib import Path

from omegaconf import OmegaConf


def unique_dir(base: str) -> str:
    """Create and return `base`, or `base_2`, `base_3`, ... if taken: mkdir is atomic, so no two runs share one."""
    path = Path(base)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for n in range(1, 10_000):
            candidate = path if n == 1 else path.with_name(f"{path.name}_{n}")
            try:
                os.mkdir(candidate)
                return str(candidate)
            except FileExistsError:
                continue
    except OSError as err:
        # Hydra resolves this before the task runs, where it would print an exception with a traceback instead.
        print(
            f"error: cannot create the run directory {path} ({err.strerror or err}): set paths.log_dir=<a writable "
            "directory>, or run from a directory you can write to (or set CNNLAB_ROOT).",
            file=sys.stderr,
        )
        raise SystemExit(2) from err
    raise RuntimeError(f"could not create a unique run directory next to {base}")


MAX_NAME = 150  # file systems allow 255 bytes; leave room for the _2, _3 suffixes


def short_name(name: str) -> str:
    """`name`, or when too long for a file name, its start plus a hash of the whole (still unique, still readable)."""
    if len(name.encode()) <= MAX_NAME:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    return name.encode()[: MAX_NAME - 10].decode(errors="ignore") + "_h" + digest


def safe_name(name: str) -> str:
    """A job's `<n>_<overrides>` as a name that needs no quoting in a shell or a Hydra override: `=` -> `-`,
    `,` -> `_`, any other character outside letters, digits and `._+-` -> `-` (`3_optimizer.lr-0.001_seed-1`).
    The overrides themselves are in the job's job.json and .hydra/overrides.yaml."""
    name = name.replace("=", "-").replace(",", "_")
    return re.sub(r"[^A-Za-z0-9._+-]", "-", name) or "job"


def unique_subdir(parent: str, name: str) -> str:
    """`name` made safe, or `name_2`, ... so that no job of a resumed sweep (same job numbers) overwrites another."""
    return Path(unique_dir(str(Path(parent) / short_name(safe_name(name))))).name


def ensure_dir(path: str) -> str:
    """`path`, created if missing: for files opened before Hydra makes the dir (the Optuna study's SQLite db
    when hydra.sweep.dir names a new directory)."""
    Path(path).mkdir(parents=True, exist_ok=True)
    return path


def register_resolvers() -> None:
    # use_cache: resolved once per config, like Hydra's ${now:}; Hydra copies the cache into each sweep job's
    # config, so every access to a run or sweep dir sees the same directory.
    resolvers = (("unique_dir", unique_dir), ("unique_subdir", unique_subdir), ("cwd", os.getcwd),
                 ("ensure_dir", ensure_dir))  # fmt: skip
    for name, resolver in resolvers:
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver, use_cache=True)
