"""`SweepCallback` (conf/hydra/default.yaml): every sweep job's outcome on disk, the sweep's report kept current, and a
non-zero exit when a job failed - a failed job never takes the sweep down with it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from cnnlab.run.sweeps.records import JOB_FILE, job_record
from cnnlab.run.sweeps.report import write_summary
from cnnlab.utils.cli import PARTIAL_FAILURE_EXIT_CODE, record_exit_code
from cnnlab.utils.io import write_json_atomic, write_text_atomic
from cnnlab.utils.overrides import SWEEP_CONFIG

log = logging.getLogger(__name__)


def _is_multirun(config: DictConfig) -> bool:
    return config.hydra.mode == RunMode.MULTIRUN


class SweepCallback(Callback):
    """job.json per job (also when it raised), summary.csv / summary.md after every job, the failure count."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        """The sweep's config in `<sweep dir>/multirun.yaml` before any job's dir is named: the names and the hparams
        table show the swept keys it lists. Hydra's basic sweeper writes the same file later; Optuna's never does."""
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(sweep_dir / SWEEP_CONFIG, OmegaConf.to_yaml(config))

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        if not _is_multirun(config):
            return
        job_dir = Path(config.hydra.runtime.output_dir)
        write_json_atomic(job_dir / JOB_FILE, job_record(job_return))
        try:
            write_summary(config.hydra.sweep.dir, config.get("optimized_metric"))
        except Exception as err:  # a summary is a convenience: never let it fail a job
            log.warning("could not update the sweep summary: %s", err)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        rows = write_summary(config.hydra.sweep.dir, config.get("optimized_metric"), plot=True)
        failed_jobs = sum(r["status"] == "failed" for r in rows)
        summary = Path(config.hydra.sweep.dir) / "summary.md"
        if failed_jobs:
            record_exit_code(PARTIAL_FAILURE_EXIT_CODE)
            log.error("%d of %d jobs failed; see %s", failed_jobs, len(rows), summary)
        else:
            log.info("%d jobs done; summary: %s", len(rows), summary)
