"""Provenance: what made a run - the code (cnnlab's version, its git commit, a dirty tree's diff), the libraries,
the machine, the command and the data - recorded beside every run, in every checkpoint and for the trackers.

Torch-free, like every leaf: the versions come from the installed packages' metadata, the device a torch-aware
caller describes (`device=`). Git runs read-only, with argument lists, without optional locks (another git command
in the same tree never waits on it) and without the file-system monitor a repository's config could name; a missing
git or a folder outside any repository gives `None`, never an error. A record read back from a checkpoint is
hostile: `code_differences` accepts anything and shows at most ~200 characters of any value it holds.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from cnnlab import __version__
from cnnlab.utils.io import write_atomic, write_json_atomic
from cnnlab.utils.text import printable

FORMAT = 1  # the record's layout; raised when a field changes meaning
CHECKPOINT_KEY = "cnnlab_provenance"  # where a checkpoint holds the record of the run that saved it
FILE_NAME = "provenance.json"
DIFF_FILES = {"code": "git.diff", "project": "git-project.diff"}  # <run dir>/<name>: a dirty tree's `git diff HEAD`
# Each library by its distribution name -> the module whose `__version__` is the one that runs, once imported
PACKAGES = {"torch": "torch", "torchvision": "torchvision", "lightning": "lightning", "timm": "timm",
            "hydra-core": "hydra", "omegaconf": "omegaconf", "optuna": "optuna"}  # fmt: skip
COMPARED_PACKAGES = ("torch", "torchvision", "lightning", "timm")  # whose versions change what a model computes
INSTALLED = "installed package"
GIT_TIMEOUT_S = 10
TAG_CHARS = 500  # a tracker tag's value is cut to this
SHOWN_CHARS = 200  # the most of any stored value a message shows
SOURCE_DIR = Path(__file__).resolve().parents[1]  # cnnlab's own package folder: the code that runs


# --- git -------------------------------------------------------------------------------------------------------------
def _git(directory: str | Path, *args: str) -> str | None:
    """The output of one read-only git command in `directory`, or None (no git, not a repository, a timeout)."""
    command = ["git", "-C", str(directory), "-c", "core.fsmonitor=", "--no-optional-locks", *args]
    try:
        done = subprocess.run(command, capture_output=True, timeout=GIT_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    # surrogateescape: a diff of files in another encoding comes back byte for byte in git.diff
    return done.stdout.decode("utf-8", "surrogateescape") if done.returncode == 0 else None


def _top_level(directory: str | Path) -> str | None:
    top = _git(directory, "rev-parse", "--show-toplevel")
    return top.strip() if top else None


def git_state(directory: str | Path) -> dict[str, Any] | None:
    """The repository that holds `directory`: its root, commit, branch, whether tracked files changed (untracked
    ones are not code that ran) and, when they did, the text of `git diff HEAD` and its sha256. None outside git."""
    root = _top_level(directory)
    if root is None:
        return None
    commit = _git(root, "rev-parse", "--verify", "-q", "HEAD")
    branch = _git(root, "symbolic-ref", "-q", "--short", "HEAD")
    status = _git(root, "status", "--porcelain", "--untracked-files=no")
    state: dict[str, Any] = {
        "root": root,
        "commit": commit.strip() if commit else None,  # None in a repository with no commit yet
        "branch": branch.strip() if branch else None,  # None on a detached HEAD
        "dirty": None if status is None else bool(status.strip()),
    }
    if state["dirty"]:
        diff = _git(root, "diff", "--no-ext-diff", "--no-textconv", "HEAD") or ""  # no driver a config names runs
        state["diff"] = diff
        state["diff_sha256"] = hashlib.sha256(diff.encode("utf-8", "surrogateescape")).hexdigest()
    return state


def _tracks(package: Path) -> bool:
    """Whether the repository around `package` holds cnnlab's source itself, not merely a folder cnnlab is installed in
    (a virtual environment inside a project's work tree)."""
    return bool((_git(package, "ls-files", "--", "__init__.py") or "").strip())


def code_state(package: Path = SOURCE_DIR) -> dict[str, Any] | None:
    """The git state of the code that runs: cnnlab's own source folder's repository, or None for an installed
    package (a wheel carries no git history)."""
    state = git_state(package)
    return state if state is not None and _tracks(package) else None


def project_state(code: dict[str, Any] | None, cwd: Path | None) -> dict[str, Any] | None:
    """The git state of the working directory's repository (the user's project), when that is not cnnlab's own."""
    root = _top_level(cwd) if cwd is not None else None
    if root is None or (code is not None and Path(root) == Path(code["root"])):
        return None
    return git_state(root)


# --- the machine and the libraries -----------------------------------------------------------------------------------
def package_versions() -> dict[str, str | None]:
    """Python's and each library's version (None: not installed): the imported module's own when it is loaded
    already (torch's carries its build, `2.4.1+cu121`, which the metadata may not), else the installed metadata's.
    Nothing is imported for it."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name, module in PACKAGES.items():
        loaded = getattr(sys.modules.get(module), "__version__", None)
        try:
            versions[name] = str(loaded) if loaded is not None else metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def cpu_model() -> str:
    """The CPU's model name, from /proc/cpuinfo on Linux, else what the platform says."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Hardware", "Processor") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def device_state(device: Mapping[str, Any] | None) -> dict[str, Any]:
    """The machine: `device` (the accelerator a torch-aware caller saw: kind, name, ...), else this CPU; always the
    host name, the CPU model and the operating system."""
    cpu = cpu_model()
    given = {key: value for key, value in (device or {}).items() if value is not None}
    return {"accelerator": "cpu", "name": cpu, **given, "hostname": socket.gethostname(), "cpu": cpu,
            "os": platform.platform()}  # fmt: skip


# --- the record ------------------------------------------------------------------------------------------------------
def collect_provenance(argv: list[str] | None = None, data: dict[str, str] | None = None,
                       device: dict | None = None) -> dict[str, Any]:  # fmt: skip
    """Everything that made this run, as plain JSON data. `argv`: the command (sys.argv by default); `data`: each
    split's fingerprint (`cnnlab.data.fingerprint.data_fingerprints`); `device`: the accelerator (kind, name).
    A dirty tree's diff text rides along under `git.<code|project>.diff` until `write_provenance` puts it in its
    own file (`stored_record` is the record without it)."""
    argv = list(sys.argv if argv is None else argv)
    cwd = _working_dir()
    code = code_state()
    return {
        "format": FORMAT,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cnnlab": {"version": __version__, "path": str(SOURCE_DIR), "source": "git" if code else INSTALLED},
        "git": {"code": code, "project": project_state(code, cwd)},
        "packages": package_versions(),
        "device": device_state(device),
        "command": shlex.join(argv),
        "argv": argv,
        "interpreter_argv": list(getattr(sys, "orig_argv", [])),  # with the interpreter's own: `python -m cnnlab`
        "executable": sys.executable,
        "cwd": None if cwd is None else str(cwd),
        "pid": os.getpid(),
        "data": dict(data or {}),
    }


def _working_dir() -> Path | None:
    try:
        return Path.cwd()
    except OSError:  # removed while the process ran in it
        return None


def stored_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """The record as provenance.json and checkpoints hold it: each dirty tree's diff replaced by the name of the file
    beside the run that holds it (its sha256 stays)."""
    stored = dict(record)
    repos = dict(record.get("git") or {})
    for role, state in repos.items():
        if isinstance(state, Mapping) and "diff" in state:
            repos[role] = {**{k: v for k, v in state.items() if k != "diff"}, "diff_file": DIFF_FILES[role]}
    stored["git"] = repos
    return stored


def write_provenance(run_dir: Path, record: dict) -> None:
    """`<run dir>/provenance.json` and, for each dirty tree, its diff (`git.diff` for cnnlab's code,
    `git-project.diff` for the working directory's project): nothing else, each written atomically."""
    run_dir = Path(run_dir)
    for role, state in (record.get("git") or {}).items():
        if isinstance(state, Mapping) and state.get("diff") is not None:
            diff = state["diff"].encode("utf-8", "surrogateescape")  # the bytes exactly as git gave them
            write_atomic(run_dir / DIFF_FILES[role], lambda handle, diff=diff: handle.write(diff))
    write_json_atomic(run_dir / FILE_NAME, stored_record(record))


# --- reading a record ------------------------------------------------------------------------------------------------
def _at(record: Any, *keys: str) -> Any:
    """The value at `keys` in a record of any shape; None where a level is missing or not a mapping."""
    for key in keys:
        if not isinstance(record, Mapping):
            return None
        record = record.get(key)
    return record


def _shown(value: Any) -> str:
    """A stored value for a message: plain scalars as text (at most SHOWN_CHARS, control characters escaped), any
    other type by its name only (a crafted list could be huge or nested too deep to print)."""
    if isinstance(value, str):
        return printable(value[:SHOWN_CHARS])[:SHOWN_CHARS]
    if value is None or isinstance(value, bool | int | float):
        return str(value)
    return f"({type(value).__name__})"


def _code_of(record: Any) -> tuple[str, str, str, str]:
    """(version, commit, dirty, diff sha256) of a record's cnnlab code, as text: what says two runs ran one code."""
    code = _at(record, "git", "code")
    return (_shown(_at(record, "cnnlab", "version")), _shown(_at(code, "commit")), _shown(_at(code, "dirty")),
            _shown(_at(code, "diff_sha256")))  # fmt: skip


def _describe_code(version: str, commit: str, dirty: str, record: Any) -> str:
    """`0.2.0 at 1a2b3c4d5e6f (dirty)`, or `0.2.0 (installed package)`."""
    code = _at(record, "git", "code")
    if not isinstance(code, Mapping):
        return f"{version} ({INSTALLED if code is None else 'no readable git record'})"
    return f"{version} at {commit[:12]}" + (" (dirty)" if dirty == "True" else "")


def code_differences(stored: dict | None, current: dict) -> list[str]:
    """What differs between the code that saved a checkpoint (its record, hostile: any shape is accepted) and the
    code that runs now, as phrases ("cnnlab 0.2.0 at 1a2b3c4 (dirty) vs now 0.2.0 at 5d6e7f8"); empty when the
    same. Two dirty trees at one commit are the same code when their diffs are."""
    if stored is None:
        return ["it holds no provenance record (saved before cnnlab recorded one, or by another program): its code "
                "cannot be compared with this one"]  # fmt: skip
    if not isinstance(stored, Mapping):
        return [f"its provenance record is a {type(stored).__name__}, not a record cnnlab writes: its code cannot be "
                "compared with this one"]  # fmt: skip
    phrases = []
    then, now = _code_of(stored), _code_of(current)
    if then != now:
        phrases.append(f"cnnlab {_describe_code(*then[:3], stored)} vs now {_describe_code(*now[:3], current)}")
    for name in COMPARED_PACKAGES:
        old, new = _at(stored, "packages", name), _at(current, "packages", name)
        if old is not None and old != new:
            phrases.append(f"{name} {_shown(old)} vs now {_shown(new)}")
    return phrases


def provenance_tags(record: dict) -> dict[str, str]:
    """The record as flat string tags for a tracker (MLflow, W&B): `cnnlab.version`, `git.commit`, `git.dirty`,
    `torch`, ..., `device.name`, `data.train`, `command`; values cut to TAG_CHARS, missing ones left out."""
    code, project = _at(record, "git", "code"), _at(record, "git", "project")
    tags: dict[str, Any] = {
        "cnnlab.version": _at(record, "cnnlab", "version"),
        "git.commit": _at(code, "commit") if isinstance(code, Mapping) else INSTALLED,
        "git.branch": _at(code, "branch"),
        "git.dirty": _at(code, "dirty"),
        "git.diff_sha256": _at(code, "diff_sha256"),
        "project.git.root": _at(project, "root"),
        "project.git.commit": _at(project, "commit"),
        "project.git.branch": _at(project, "branch"),
        "project.git.dirty": _at(project, "dirty"),
        "project.git.diff_sha256": _at(project, "diff_sha256"),
    }
    packages = _at(record, "packages")
    tags.update(packages if isinstance(packages, Mapping) else {})
    for key in ("accelerator", "name", "hostname", "cpu"):
        tags[f"device.{key}"] = _at(record, "device", key)
    data = _at(record, "data")
    tags.update({f"data.{split}": value for split, value in (data if isinstance(data, Mapping) else {}).items()})
    tags.update(command=_at(record, "command"), cwd=_at(record, "cwd"))
    # scalars only: a stored record's crafted list could be huge, or nested too deep to print
    return {str(key)[:TAG_CHARS]: str(value)[:TAG_CHARS] for key, value in tags.items()
            if isinstance(value, str | bool | int | float)}  # fmt: skip
