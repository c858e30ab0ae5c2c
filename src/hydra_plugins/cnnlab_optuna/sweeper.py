"""`OptunaSweeper`: Hydra's side of a search (the launcher, the sweep dir, the run config); the search is
`cnnlab.run.search.worker.run_worker`, on Optuna's ask-and-tell interface."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from cnnlab.errors import CnnlabError
from cnnlab.utils.cli import USER_ERROR_EXIT_CODE


class OptunaSweeper(Sweeper):
    """Runs one worker of a (possibly shared) Optuna study; each trial is one job of Hydra's launcher."""

    def __init__(self, **settings: Any) -> None:
        self.settings = settings
        self.config: DictConfig | None = None
        self.launcher = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(hydra_context=hydra_context,
                                                                task_function=task_function, config=config)  # fmt: skip

    def sweep(self, arguments: list[str]) -> Any:
        # Optuna, SQLAlchemy and the search load only when a search runs, not whenever Hydra scans its plugins.
        from cnnlab.run.search.space import search_space  # lazy: see above
        from cnnlab.run.search.worker import Settings, run_worker  # lazy: see above

        assert self.config is not None and self.launcher is not None
        given = self.settings
        settings = Settings(
            study_name=str(given.get("study_name") or self.config.get("run_name") or "cnnlab"),
            storage=str(given["storage"]),
            direction=str(given.get("direction", "maximize")),
            n_trials=int(given.get("n_trials", 20)),
            n_jobs=int(given.get("n_jobs", 1)),
            max_failure_rate=float(given.get("max_failure_rate", 1.0)),
            heartbeat_interval=float(given.get("heartbeat_interval", 30)),
            grace_period=float(given.get("grace_period", 120)),
            seed=int(self.config.get("seed") or 0),
            metric=str(self.config.get("optimized_metric") or "val/acc_best"),
            sampler=given.get("sampler"),
            pruner=given.get("pruner"),
        )
        try:
            space = search_space(given.get("params"), list(arguments))
            return run_worker(settings, space, self.launcher.launch, Path(self.config.hydra.sweep.dir))
        except CnnlabError as err:  # a refusal of the search's own settings: one message, exit 2, no traceback
            logging.getLogger("cnnlab.run.search").error("error: %s", err)
            raise SystemExit(USER_ERROR_EXIT_CODE) from None
