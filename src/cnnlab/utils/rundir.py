"""Run directories: unique even when two runs start in the same second, and each one a single run's own.

A run claims its directory before anything is written there (`claim_run_dir`): a lock file that one process holds
(`flock`, released by the kernel when the process ends, however it ends, so a lock left by a killed run is seen to be
stale), and a refusal to start a new run in a directory that already holds one - the run there would be mixed with,
or overwritten by, the new one. Resuming (`cnnlab train ... ckpt_path=`) is the one way back into a used run dir.
The ranks of a distributed run (DDP, on one node or many) share rank 0's: only rank 0 claims it, the others write a
log of their own there and nothing else (`write_as_further_rank`).
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
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

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from cnnlab.errors import CnnlabError
from cnnlab.utils.overrides import swept_keys, swept_overrides

log = logging.getLogger("cnnlab")
LOCK_NAME = ".cnnlab.lock"
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID")  # Lightning's DDP children, torchrun, SLURM
# The logs of further ranks started outside Lightning (`rank_tag`): each may be written before rank 0 claims the dir.
FURTHER_RANK_LOG = re.compile(r".+_(rank|node)\d+\.log")
LIGHTNING_CHILD = re.compile(r"train_ddp_process_\d+")  # the job name Lightning gives the DDP processes it starts
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
    """`name` made safe, or `name_2`, ... so that no job of a resumed sweep (same job numbers) overwrites another.
    A job of several tasks (SLURM, submitit: one per rank) resolves this in every task: task 0 makes the dir and
    marks it with the job's id, the others take the dir so marked."""
    return job_subdir(Path(parent), short_name(safe_name(name)), os.environ).name


JOB_MARK = ".job-id"  # in a sweep job's dir: the scheduler job whose tasks share it
JOB_TASK_VARIABLES = (("SLURM_JOB_ID", "SLURM_PROCID"), ("SUBMITIT_LOCAL_JOB_ID", "SUBMITIT_LOCAL_GLOBALID"))


def scheduler_task(env: Any) -> tuple[str, int] | None:
    """(job id, task rank) inside a SLURM or submitit-local job, None elsewhere."""
    for job_variable, task_variable in JOB_TASK_VARIABLES:
        if env.get(job_variable):
            return str(env[job_variable]), int(env.get(task_variable) or 0)
    return None


def job_subdir(parent: Path, base: str, env: Any, wait_s: float = 600.0) -> Path:
    """The job's dir under `parent`: made unique by task 0 (or outside a scheduler); found by the other tasks."""
    task = scheduler_task(env)
    if task is None or task[1] == 0:
        made = Path(unique_dir(str(parent / base)))
        if task is not None:
            (made / JOB_MARK).write_text(task[0])
        return made
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        for candidate in sorted(parent.glob(f"{glob.escape(base)}*")):
            mark = candidate / JOB_MARK
            if mark.is_file() and mark.read_text().strip() == task[0] and _same_job_name(candidate.name, base):
                return candidate
        time.sleep(0.2)
    raise CnnlabError(
        f"task {task[1]} of job {task[0]} found no dir {parent / base}[_n] marked by its task 0 within "
        f"{wait_s:.0f} s: task 0 did not start. See its log; the scheduler's output has its error."
    )


def _same_job_name(name: str, base: str) -> bool:
    """`base` itself or `base_<n>` (what `unique_dir` makes), not another job whose name merely starts alike."""
    return name == base or re.fullmatch(re.escape(base) + r"_\d+", name) is not None


def job_dir_name(num: int, sweep_dir: str, overrides: Iterable[str]) -> str:
    """A sweep job's dir name before `unique_subdir` makes it safe: its number and the values the sweep varies
    (`3_optimizer.lr=0.001,seed=1`; just `3` when nothing varies). The values every job shares would only repeat
    in every name; job.json and .hydra/overrides.yaml keep them all."""
    swept = [_short_float(o) for o in swept_overrides(overrides, swept_keys(sweep_dir))]
    return f"{num}_{','.join(swept)}" if swept else str(num)


def _short_float(override: str) -> str:
    """`optimizer.lr=0.000816845589476017` (a value a search sampled) -> `optimizer.lr=0.0008168` in a dir name;
    the job's records keep the exact value, and its number keeps the name unique."""
    key, _, value = override.partition("=")
    try:
        number = float(value)
    except ValueError:
        return override
    short = f"{number:.4g}"
    return f"{key}={short}" if "." in value and len(short) < len(value) else override


def ensure_dir(path: str) -> str:
    """`path`, created if missing: for files opened before Hydra makes the dir (the Optuna study's SQLite db
    when hydra.sweep.dir names a new directory)."""
    Path(path).mkdir(parents=True, exist_ok=True)
    return path


def verb_folder(task_name: str) -> str:
    """The folder under `paths.log_dir` a verb's run dirs go to: `runs/` for trainings only, `<verb>/` for the
    others (eval, predict, export, explain, layers, shards), so that outputs/runs/ lists trainings and nothing else."""
    return "runs" if task_name == "train" else safe_name(str(task_name))


def dir_name(path: str) -> str:
    """The last part of a path: a tracker's run is named as its run dir (`0_optimizer.lr-0.001`, `14-02-33_train`)."""
    return Path(str(path)).name


def sweep_name(run_dir: str) -> str | None:
    """The name of the sweep a job's `run_dir` belongs to (its parent's name) in a multirun, None in a single run: a
    tracker groups a sweep's jobs by it."""
    in_sweep = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    return Path(str(run_dir)).parent.name if in_sweep else None


TRACKING_SERVER_SCHEMES = ("http", "https", "databricks")  # a server keeps a run's files in its own artifact store


def mlflow_artifacts(tracking_uri: str, folder: str) -> str | None:
    """Where a new MLflow experiment keeps its files: `folder` (under outputs/) for a store the client writes itself
    (SQLite, a database, a path), None for a tracking server, which decides (a path here would mean nothing there)."""
    scheme = str(tracking_uri).split(":", 1)[0].lower() if ":" in str(tracking_uri) else ""
    return None if scheme.startswith(TRACKING_SERVER_SCHEMES) else str(folder)


def register_resolvers() -> None:
    # use_cache: resolved once per config, like Hydra's ${now:}; Hydra copies the cache into each sweep job's
    # config, so every access to a run or sweep dir sees the same directory.
    resolvers = (("unique_dir", unique_dir), ("unique_subdir", unique_subdir), ("cwd", os.getcwd),
                 ("ensure_dir", ensure_dir), ("verb_folder", verb_folder))  # fmt: skip
    for name, resolver in resolvers:
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver, use_cache=True)
    # Not cached: a cache is keyed by the arguments' text (`${hydra.job.num}`), which every job's config shares.
    for name, resolver in (("job_dir_name", job_dir_name), ("dir_name", dir_name), ("sweep_name", sweep_name),
                           ("mlflow_artifacts", mlflow_artifacts)):  # fmt: skip
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)


def is_main_process() -> bool:
    """Rank 0 of a distributed run (or a plain run): the one process that claims the run dir the ranks share."""
    return all(os.environ.get(name, "0") == "0" for name in RANK_VARIABLES)


def rank_tag() -> str:
    """This process's place in a distributed run, for its log's name: `rank3` (torchrun, SLURM), else `node1` (the
    first process of node 1 under Lightning's own launch, which knows its node but not yet its rank)."""
    for name in ("RANK", "SLURM_PROCID"):
        if os.environ.get(name, "0") != "0":
            return f"rank{os.environ[name]}"
    return f"node{node_rank()}"


def node_rank() -> str:
    """The node this process runs on: NODE_RANK (Lightning, by hand) or GROUP_RANK (torchrun); 0 on one node."""
    return os.environ.get("NODE_RANK", os.environ.get("GROUP_RANK", "0"))


def write_as_further_rank(config: DictConfig) -> None:
    """A rank > 0 that torchrun, SLURM or a command on another node started shares rank 0's run dir, and may get
    there first: like Lightning's own DDP children it writes no `.hydra/` (rank 0's) and logs to a file of its own,
    `train_rank1.log`, which rank 0's claim accepts. Refused when its run dir would be a new one of its own."""
    if "unique_dir:" in str(OmegaConf.to_container(config.hydra.run)["dir"]):  # unresolved: resolving creates it
        raise CnnlabError(
            f"this process is a further rank of a distributed run ({rank_tag()}) but has no run dir of rank 0's to "
            "share: give every process (every node) the same hydra.run.dir=<a directory all nodes can write>."
        )
    suffix = f"_{rank_tag()}"
    if LIGHTNING_CHILD.fullmatch(str(config.hydra.job.name)):  # named by Lightning, but alike on every node
        suffix = f"_node{node_rank()}" if node_rank() != "0" else ""
    with read_write(config.hydra), open_dict(config.hydra):
        config.hydra.output_subdir = None
        config.hydra.job.name = f"{config.hydra.job.name}{suffix}"


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
            _refuse_used(path, set(own) | {LOCK_NAME, JOB_MARK}, resume_hint)
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
    used = sorted(e.name for e in path.iterdir() if e.name not in own and not FURTHER_RANK_LOG.fullmatch(e.name))
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
    the run that is there untouched), for every cnnlab command; sweep jobs get new directories of their own. A further
    rank of a distributed run writes there as one (`write_as_further_rank`)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            if not is_main_process():
                write_as_further_rank(config)
                return
            run_dir = Path(config.hydra.run.dir)
            claim_run_dir(run_dir, is_resume(config), resume_command(list(config.hydra.overrides.task), run_dir))
        except CnnlabError as err:  # Hydra would print it as a traceback; this is a user's error, exit code 2
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(2) from None

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        release_run_dir(config.hydra.run.dir)
