"""What every entry point shares: user errors become one clear message and exit code 2, not a traceback."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from omegaconf import DictConfig

from cnnlab.errors import CnnlabError

log = logging.getLogger("cnnlab")
T = TypeVar("T")
USER_ERROR_EXIT_CODE = 2
PARTIAL_FAILURE_EXIT_CODE = 1  # the work went on, but some of it (sweep jobs, input files) failed
_exit_code = 0


def record_exit_code(code: int) -> None:
    """What the console script exits with once the Hydra main returns (the most severe code wins)."""
    global _exit_code
    _exit_code = max(_exit_code, code)


def find_user_error(err: BaseException | None) -> CnnlabError | None:
    """The CnnlabError behind `err`, also when Hydra's instantiate wrapped it."""
    while err is not None:
        if isinstance(err, CnnlabError):
            return err
        err = err.__cause__
    return None


def is_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def reports_user_errors(task: Callable[[DictConfig], T]) -> Callable[[DictConfig], T | None]:
    """In a single run, log a CnnlabError as one message and remember exit code 2.

    In a sweep the error propagates, so the launcher records that job as failed and goes on.
    """

    @functools.wraps(task)
    def wrapper(cfg: DictConfig) -> T | None:
        try:
            return task(cfg)
        except Exception as err:
            user_error = find_user_error(err)
            if user_error is None or is_multirun():
                raise
            log.error("error: %s", user_error)
            record_exit_code(USER_ERROR_EXIT_CODE)
            return None

    return wrapper


def run_cli(hydra_main: Callable[[], Any]) -> None:
    """Console-script body: run the Hydra main, then exit with the code it recorded: 2 for a user error,
    1 when part of the work failed (sweep jobs, unreadable input files) and the rest was done."""
    hydra_main()
    if _exit_code:
        sys.exit(_exit_code)
