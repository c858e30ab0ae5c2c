"""Sweeps: every job's outcome on disk, a report of the sweep, and a non-zero exit if any job failed.

Hydra runs the jobs (basic launcher, Optuna, submitit); one module a job:
  records     job.json per job, and a sweep's jobs read back as rows (a sweep dir may be someone else's)
  replicates  configurations and their seeds / folds: spreads, ranking, the paired `compare`
  report      summary.csv / summary_groups.csv / summary.md and groups.png in the sweep dir
  callback    `SweepCallback`, which writes them as the sweep goes
The keys a sweep varies (`swept_keys`) are `cnnlab.utils.overrides`'s: they name the job dirs too.
"""

from cnnlab.run.sweeps.callback import SweepCallback
from cnnlab.run.sweeps.records import JOB_FILE, METRIC_COLUMNS, REPLICATE_KEYS, job_record, read_jobs
from cnnlab.run.sweeps.replicates import compare, group_jobs
from cnnlab.run.sweeps.report import write_summary
from cnnlab.utils.overrides import swept_keys

__all__ = ["JOB_FILE", "METRIC_COLUMNS", "REPLICATE_KEYS", "SweepCallback", "compare", "group_jobs", "job_record",
           "read_jobs", "swept_keys", "write_summary"]  # fmt: skip
