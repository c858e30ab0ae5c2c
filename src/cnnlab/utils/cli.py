"""What every verb shares: user errors as one clear message and exit code 2 (not a traceback), a refused command's
run dir discarded, a console without third-party noise."""

from __future__ import annotations

import functools
import logging
import os
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from cnnlab.errors import CnnlabError, find_user_error
from cnnlab.utils.rundir import discard_if_untouched
from cnnlab.utils.text import printable

log = logging.getLogger("cnnlab")
T = TypeVar("T")
USER_ERROR_EXIT_CODE = 2
PARTIAL_FAILURE_EXIT_CODE = 1  # the work went on, but some of it (sweep jobs, input files) failed
_exit_code = 0


def record_exit_code(code: int) -> None:
    """What the console script exits with once the Hydra main returns (the most severe code wins)."""
    global _exit_code
    _exit_code = max(_exit_code, code)


def exit_code() -> int:
    """What the console script exits with: 0, or the most severe code recorded."""
    return _exit_code


def is_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def reports_user_errors(task: Callable[[DictConfig], T]) -> Callable[[DictConfig], T | None]:
    """In a single run, log a CnnlabError as one message and remember exit code 2.

    In a sweep the error propagates, so the launcher records that job as failed and goes on.
    """

    @functools.wraps(task)
    def wrapper(cfg: DictConfig) -> T | None:
        escape_foreign_text_in_logs()
        try:
            return task(cfg)
        except Exception as err:
            user_error = find_user_error(err)
            if user_error is None or is_multirun():
                raise
            log.error("error: %s", user_error)
            record_exit_code(USER_ERROR_EXIT_CODE)
            _discard_refused_run_dir()
            return None

    return wrapper


def _discard_refused_run_dir() -> None:
    """A refused command writes nothing: its run dir goes when it holds only what Hydra wrote before the refusal."""
    if not HydraConfig.initialized():
        return
    hydra_cfg = HydraConfig.get()
    output_dir = OmegaConf.select(hydra_cfg, "runtime.output_dir", throw_on_missing=False)
    if output_dir:
        _close_log_files_in(Path(output_dir))
        discard_if_untouched(output_dir, (hydra_cfg.output_subdir or ".hydra", f"{hydra_cfg.job.name}.log"))


def _close_log_files_in(folder: Path) -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).parent.resolve() == folder.resolve():
            root.removeHandler(handler)
            handler.close()


class _EscapeArguments(logging.Filter):
    """The values a log line quotes (file and class names from a dataset, a checkpoint, an error) with their control
    characters escaped: a class named "x\\n[...][cnnlab][INFO] - ..." cannot forge a line of train.log, nor an ANSI
    escape rewrite the terminal. cnnlab's own messages (the format, and its CnnlabErrors, which quote what they name
    with repr) keep their line breaks."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and not getattr(record, "cnnlab_escaped", False):
            record.args = tuple(_escaped(a) for a in record.args)
            record.cnnlab_escaped = True  # the record goes to each handler: escaped once
        return True


def _escaped(value: object) -> object:
    """Strings, paths and errors escaped (a CnnlabError keeps the line breaks of its list of problems); numbers, for
    `%d` and `%.4f`, as they are."""
    if isinstance(value, CnnlabError):
        return printable(value, keep="\n")
    return printable(value) if isinstance(value, str | os.PathLike | BaseException) else value


def escape_foreign_text_in_logs() -> None:
    """Every handler of the root logger (Hydra's console and the run's log file) escapes what a line quotes."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _EscapeArguments) for f in handler.filters):
            handler.addFilter(_EscapeArguments())


class _DropMessages(logging.Filter):
    def __init__(self, pattern: str) -> None:
        super().__init__()
        self.pattern = re.compile(pattern)

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.match(record.getMessage())


def quiet_third_party_noise() -> None:
    """Drop what third parties print on every run but is no news to a cnnlab user, each by its exact message and
    source (never all warnings): Lightning's advertisement for its cloud products, a torch deprecation that
    Lightning's own code triggers, and Lightning's advice to log more often than an epoch holds steps (cnnlab's
    epoch metrics do not depend on it)."""
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_DropMessages(r"💡 Tip: "))
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                            category=FutureWarning, module=r"lightning\.pytorch\.utilities\._pytree")  # fmt: skip
    warnings.filterwarnings("ignore", message=r"The number of training batches \(\d+\) is smaller than the logging "
                            "interval", module=r"lightning\.pytorch\.loops\.fit_loop")  # fmt: skip
