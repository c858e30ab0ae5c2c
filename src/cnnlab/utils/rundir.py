"""Run directories: unique even when two runs start in the same second, and each one a single run's own.

A run claims its directory before anything is written there (`claim_run_dir`): a lock file that one process holds
(`flock`, released by the kernel when the process ends, however it ends, so a lock left by a killed run is seen to be
stale), and a refusal to start a new run in a directory that already holds one - the run there would be mixed with,
or overwritten by, the new one. Resuming (`cnnlab train ... ckpt_path=`) is the one way back into a used run dir.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import re
import shlex
import shutil
import socket
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from cnnlab.errors import CnnlabError
from cnnlab.utils.overrides import swept_keys, swept_overrides

log = logging.getLogger("cnnlab")
LOCK_NAME = ".cnnlab.lock"
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID")  # Lightning's DDP children, torchrun, SLURM
_claims: dict[Path, int] = {}  # run dir -> the descriptor of its lock file, held by this process
_created: set[Path] = set()  # the run dirs this process made (unique_dir): only those may be discarded


def unique_dir(base: str) -> str:
    """Create and return `base`, or `base_2`, `base_3`, ... if taken: mkdir is atomic, so no two runs share one."""
    path = Path(base)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for n in range(1, 10_000):
            candidate = path if n == 1 else path.with_name(f"{path.name}_{n}")
            try:
                os.mkdir(candidate)
                _created.add(candidate.resolve())
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


def discard_if_untouched(path: str | Path, own: Iterable[str]) -> bool:
    """Remove the run dir `path` of a refused command when this process made it and it holds nothing but `own` (the
    launcher's `.hydra/` and log, whose only news is the refusal already printed) and the lock: a refused command
    leaves nothing behind. Any other file - a checkpoint, a resumed run's logs - keeps the directory."""
    path = Path(path).resolve()
    if path not in _created or not path.is_dir():
        return False
    if not set(os.listdir(path)) <= {*own, LOCK_NAME}:
        return False
    shutil.rmtree(path, ignore_errors=True)
    _created.discard(path)
    with contextlib.suppress(OSError):
        path.parent.rmdir()  # the day's folder, when this was its only run
    return True


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


def job_dir_name(num: int, sweep_dir: str, overrides: Iterable[str]) -> str:
    """A sweep job's dir name before `unique_subdir` makes it safe: its number and the values the sweep varies
    (`3_optimizer.lr=0.001,seed=1`; just `3` when nothing varies). The values every job shares would only repeat
    in every name; job.json and .hydra/overrides.yaml keep them all."""
    swept = swept_overrides(overrides, swept_keys(sweep_dir))
    return f"{num}_{','.join(swept)}" if swept else str(num)


def ensure_dir(path: str) -> str:
    """`path`, created if missing: for files opened before Hydra makes the dir (the Optuna study's SQLite db
    when hydra.sweep.dir names a new directory)."""
    Path(path).mkdir(parents=True, exist_ok=True)
    return path


def verb_folder(task_name: str) -> str:
    """The folder under `paths.log_dir` a verb's run dirs go to: `runs/` for trainings only, `<verb>/` for the
    others (eval, predict, export, explain, layers, shards), so that outputs/runs/ lists trainings and nothing else."""
    return "runs" if task_name == "train" else safe_name(str(task_name))


def register_resolvers() -> None:
    # use_cache: resolved once per config, like Hydra's ${now:}; Hydra copies the cache into each sweep job's
    # config, so every access to a run or sweep dir sees the same directory.
    resolvers = (("unique_dir", unique_dir), ("unique_subdir", unique_subdir), ("cwd", os.getcwd),
                 ("ensure_dir", ensure_dir), ("verb_folder", verb_folder))  # fmt: skip
    for name, resolver in resolvers:
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver, use_cache=True)
    # Not cached: a cache is keyed by the arguments' text (`${hydra.job.num}`), which every job's config shares.
    if not OmegaConf.has_resolver("job_dir_name"):
        OmegaConf.register_new_resolver("job_dir_name", job_dir_name)


def is_main_process() -> bool:
    """Rank 0 of a distributed run (or a plain run): the one process that claims the run dir the ranks share."""
    return all(os.environ.get(name, "0") == "0" for name in RANK_VARIABLES)


def resume_command(overrides: Iterable[str], output_dir: str | Path) -> str:
    """The command that resumes the run of `overrides` in `output_dir`, quoted to paste into a shell."""
    kept = [o for o in overrides if not o.startswith(("ckpt_path=", "hydra.run.dir=", "hydra.sweep.dir="))]
    return shlex.join(["cnnlab", "train", *kept, f"hydra.run.dir={output_dir}", "ckpt_path=last"])


def claim_run_dir(path: str | Path, reuse: bool, resume_hint: str, own: Iterable[str] = ()) -> bool:
    """Lock `path` (created if missing) for this process; unless `reuse` (a resume), refuse it when it already holds
    anything but `own` (the files this very run's launcher wrote there). False when this process already holds it or
    is not rank 0, True when claimed now: release it with `release_run_dir`."""
    path = Path(path).resolve()
    if path in _claims or not is_main_process():
        return False
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd = os.open(path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise CnnlabError(f"cannot write the run directory {path} ({err.strerror or err}): set paths.log_dir=<a "
                          "writable directory>, or give hydra.run.dir=<one you can write>.") from None  # fmt: skip
    try:
        _lock(fd, path)
    except BaseException:
        os.close(fd)
        raise
    _claims[path] = fd
    if not reuse:
        try:
            _refuse_used(path, set(own) | {LOCK_NAME}, resume_hint)
        except CnnlabError:
            release_run_dir(path)
            raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}: "
                  f"{shlex.join(sys.argv)}\n".encode(), 0)  # fmt: skip
    return True


def _lock(fd: int, path: Path) -> None:
    """The lock or an error naming its holder; a lock file whose process is gone (it left its line) is stale."""
    holder = os.pread(fd, 4096, 0).decode(errors="replace").strip()
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise CnnlabError(
            f"the run directory {path} is in use by another run ({holder or 'a process starting up'}): two runs "
            "never write one directory. Let that run finish, or give this one its own directory (drop "
            "hydra.run.dir=, and each run gets a new one)."
        ) from None
    if holder:
        log.info("run dir %s: the lock of a run that ended without releasing it (%s) is stale; taken over", path,
                 holder)  # fmt: skip


def _refuse_used(path: Path, own: set[str], resume_hint: str) -> None:
    used = sorted(entry.name for entry in path.iterdir() if entry.name not in own)
    if used:
        shown = ", ".join(used[:6]) + (", ..." if len(used) > 6 else "")
        raise CnnlabError(
            f"the run directory {path} already holds a run ({shown}): a new run is never written over another. "
            f"To continue that run, resume it:\n  {resume_hint}\nTo start a new run, drop hydra.run.dir= (each run "
            "gets a new directory) or give a new one."
        )


def release_run_dir(path: str | Path) -> None:
    """Give up a claim of this process: the lock file goes, then the lock."""
    fd = _claims.pop(Path(path).resolve(), None)
    if fd is not None:
        with contextlib.suppress(OSError):
            (Path(path).resolve() / LOCK_NAME).unlink()
        os.close(fd)


@contextlib.contextmanager
def owning_run_dir(path: str | Path, reuse: bool, resume_hint: str, own: Iterable[str] = ()) -> Iterator[None]:
    """`claim_run_dir` for the length of a block (a no-op where the process holds it already, e.g. from the CLI)."""
    claimed = claim_run_dir(path, reuse, resume_hint, own)
    try:
        yield
    finally:
        if claimed:
            release_run_dir(path)


def is_resume(config: Any) -> bool:
    """`cnnlab train ... ckpt_path=<file | last>`: the one run that may go on in a used run dir."""
    return config.get("task_name") == "train" and bool(config.get("train")) and config.get("ckpt_path") is not None


class RunDirCallback(Callback):
    """Claims a single run's directory before Hydra writes its `.hydra/` files and its log there (a refusal leaves
    the run that is there untouched), for every cnnlab command; sweep jobs get new directories of their own."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        run_dir = Path(config.hydra.run.dir)
        hint = resume_command(list(config.hydra.overrides.task), run_dir)
        try:
            claim_run_dir(run_dir, is_resume(config), hint)
        except CnnlabError as err:  # Hydra would print it as a traceback; this is a user's error, exit code 2
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(2) from None

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        release_run_dir(config.hydra.run.dir)
