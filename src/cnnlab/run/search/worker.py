"""One search worker: join the study, then ask -> launch -> tell until the study holds `n_trials` trials.

Start the same command on as many machines as you like (or as a SLURM / submitit array): they share the study
through its storage, and `cnnlab.run.search.ledger` keeps their bookkeeping straight. A job that fails is told as
failed and the worker goes on; Ctrl+C stops this worker only (its running trial is marked lost by the next worker
after the grace period, or failed at once when the worker exits cleanly).
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from hydra.core.utils import JobReturn, JobStatus
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import distribution_to_json
from optuna.trial import TrialState

from cnnlab.errors import CnnlabError
from cnnlab.run.search import ledger
from cnnlab.run.search.job import build_pruner
from cnnlab.run.search.space import SearchSpace
from cnnlab.run.search.storage import has_password, open_storage, shown
from cnnlab.utils.io import write_text_atomic

log = logging.getLogger("cnnlab.run.search")

RESULTS_FILE = "optimization_results.yaml"
SPACE = ledger.PREFIX + "space"
METRIC = ledger.PREFIX + "metric"
MAX_DUPLICATES_IN_A_ROW = 25  # then the space is taken as exhausted

Launch = Callable[[Sequence[Sequence[str]], int], Sequence[JobReturn]]


@dataclass(frozen=True)
class Settings:
    """What a worker needs from `hydra.sweeper` and the run config."""

    study_name: str
    storage: str
    direction: str
    n_trials: int
    n_jobs: int
    max_failure_rate: float
    heartbeat_interval: float
    grace_period: float
    seed: int
    metric: str
    sampler: Any = None
    pruner: Any = None


def run_worker(settings: Settings, space: SearchSpace, launch: Launch, sweep_dir: Path) -> dict[str, int]:
    """Work on the study until its budget is spent (or its space exhausted); returns the study's tally."""
    _check(settings, space)
    if has_password(settings.storage):
        log.warning("optuna: hydra.sweeper.storage holds a password, which every job's .hydra/hydra.yaml records: "
                    "put it in PGPASSWORD or ~/.pgpass instead")  # fmt: skip
    study = _open_study(settings, space)
    seed = ledger.join(study, settings.seed)
    study.sampler = build_sampler(settings.sampler, seed)
    log.info("optuna: worker %s on study %r in %s (sampler seed %d), %d of %d trials already in it",
             ledger.worker_name(), settings.study_name, shown(settings.storage), seed,
             ledger.budget_used(study.trials), settings.n_trials)  # fmt: skip
    failures = finished = duplicates = 0
    job_index, waited = 0, False
    with ledger.Heartbeat(study, settings.heartbeat_interval) as heartbeat:
        while True:
            ledger.reclaim_lost(study, settings.grace_period)
            batch, duplicates, spent = _ask_batch(study, space, settings, seed, heartbeat, duplicates)
            if not batch:
                if not spent:
                    log.warning("optuna: the sampler proposed only parameter sets already tried, %d times in a row: "
                                "the search space looks exhausted", MAX_DUPLICATES_IN_A_ROW)  # fmt: skip
                    break
                if not _wait_for_others(study, settings, waited):
                    break
                waited = True
                continue
            waited = False
            numbers = [t.number for t in batch]
            consecutive = numbers == list(range(numbers[0], numbers[0] + len(numbers)))
            first_index = numbers[0] if consecutive else job_index  # job dirs are named by their trial's number
            overrides = [[*space.overrides(t.params), f"hydra.sweeper.trial_id={t._trial_id}"] for t in batch]
            try:
                returns = launch(overrides, first_index)
            except BaseException:
                for trial in batch:  # stopped by Ctrl+C / SIGTERM: this worker's trials end as failed, not lost
                    _fail(study, trial, "the worker was stopped during the trial")
                raise
            job_index += len(batch)
            for trial, job_return in zip(batch, returns, strict=True):
                heartbeat.forget(trial._trial_id)
                failed = not _tell(study, trial, job_return, settings.metric)
                failures += failed
                finished += 1
            write_results(study, settings, sweep_dir)
            if finished and failures / finished > settings.max_failure_rate:
                raise CnnlabError(f"optuna: {failures} of {finished} trials of this worker failed, more than "
                                  f"hydra.sweeper.max_failure_rate={settings.max_failure_rate}; see the jobs' job.json "
                                  "in the sweep dir.")  # fmt: skip
    write_results(study, settings, sweep_dir)
    tally = ledger.tally(study.trials)
    log.info("optuna: study %r: %s", settings.study_name, ", ".join(f"{v} {k}" for k, v in tally.items() if v))
    return tally


def _wait_for_others(study: optuna.Study, settings: Settings, waited: bool) -> bool:
    """The budget is spent but other workers' trials still run: wait a heartbeat, so that one whose worker died is
    reclaimed (and rerun) here rather than left RUNNING. False when nothing runs any more: the study is complete."""
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    if not running:
        return False
    if not waited:
        log.info(
            "optuna: budget spent; waiting for %d trial(s) of other workers to end (or to be found lost after "
            "%.0f s without a heartbeat). Ctrl+C here loses nothing.",
            len(running),
            settings.grace_period,
        )
    time.sleep(min(settings.heartbeat_interval, 5))  # a quick look at the storage, so the last trial's end is seen soon
    return True


def _check(settings: Settings, space: SearchSpace) -> None:
    if settings.direction not in ("maximize", "minimize"):
        raise CnnlabError(f"hydra.sweeper.direction={settings.direction!r}: give maximize or minimize.")
    if settings.n_trials < 1 or settings.n_jobs < 1:
        raise CnnlabError(f"hydra.sweeper.n_trials={settings.n_trials}, n_jobs={settings.n_jobs}: both must be at "
                          "least 1 (n_trials is the study's total, over all its workers).")  # fmt: skip
    if not space.distributions:
        raise CnnlabError("hydra.sweeper.params is empty: nothing to search. Give e.g. "
                          "hydra.sweeper.params.optimizer.lr='tag(log, interval(1e-4, 1e-2))' or an "
                          "hparams_search=... config.")  # fmt: skip
    if settings.grace_period <= 2 * settings.heartbeat_interval:
        raise CnnlabError(
            f"hydra.sweeper.grace_period={settings.grace_period} must be more than twice "
            f"heartbeat_interval={settings.heartbeat_interval}, or a slow beat marks a live trial lost."
        )


def _open_study(settings: Settings, space: SearchSpace) -> optuna.Study:
    """The study, created by the first worker; a later one must search the same space in the same direction."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # cnnlab logs one line per trial itself
    study = optuna.create_study(study_name=settings.study_name, storage=open_storage(settings.storage),
                                direction=settings.direction, load_if_exists=True,
                                pruner=build_pruner(settings.pruner))  # fmt: skip
    wanted = {key: distribution_to_json(d) for key, d in space.distributions.items()}
    stored = study.user_attrs.get(SPACE)
    if stored is None:
        study.set_user_attr(SPACE, wanted)
        study.set_user_attr(METRIC, settings.metric)
    elif stored != wanted:
        raise CnnlabError(
            f"study {settings.study_name!r} in {shown(settings.storage)} searches {sorted(stored)} "
            f"over other ranges than this command ({sorted(wanted)}): a worker joins a study only with "
            "the same hydra.sweeper.params. Give another hydra.sweeper.study_name for a new search."
        )
    if study.direction.name.lower() != settings.direction:
        raise CnnlabError(
            f"study {settings.study_name!r} was created to {study.direction.name.lower()}, this "
            f"command says direction={settings.direction}: use the study's or another study_name."
        )
    return study


def build_sampler(config: Any, seed: int) -> optuna.samplers.BaseSampler:
    """The configured sampler (`hydra/sweeper/sampler=tpe | random`) with this worker's seed."""
    if not config:
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True)
    if isinstance(config, DictConfig):
        config = OmegaConf.create(OmegaConf.to_container(config, resolve=True))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return instantiate(config, seed=seed) if "seed" in config else instantiate(config)


def _ask_batch(study: optuna.Study, space: SearchSpace, settings: Settings, seed: int, heartbeat: ledger.Heartbeat,
               duplicates: int) -> tuple[list[optuna.trial.Trial], int, bool]:  # fmt: skip
    """Up to n_jobs new trials to run; the consecutive-duplicate count; whether the budget is spent."""
    batch: list[optuna.trial.Trial] = []
    while len(batch) < settings.n_jobs:
        trials = study.get_trials(deepcopy=False)
        if ledger.budget_used(trials) >= settings.n_trials and not _waiting(trials):
            return batch, duplicates, True
        trial = study.ask(space.distributions)
        trial.set_user_attr(ledger.WORKER, ledger.worker_name())
        trial.set_user_attr(ledger.SAMPLER_SEED, seed)
        heartbeat.watch(trial._trial_id)
        trials = study.get_trials(deepcopy=False)
        if ledger.budget_used(trials, before_id=trial._trial_id) >= settings.n_trials:
            heartbeat.forget(trial._trial_id)
            ledger.void(study, trial, f"over the budget of {settings.n_trials} trials (another worker asked first)")
            return batch, duplicates, True
        earlier = ledger.duplicate_of(trial, [*trials, *(_frozen(study, t) for t in batch)])
        if earlier is not None:
            heartbeat.forget(trial._trial_id)
            ledger.void(study, trial, f"a duplicate of trial {earlier.number}")
            duplicates += 1
            if duplicates >= MAX_DUPLICATES_IN_A_ROW:
                return batch, duplicates, False
            continue
        duplicates = 0
        batch.append(trial)
    return batch, duplicates, True


def _waiting(trials: Sequence[optuna.trial.FrozenTrial]) -> bool:
    return any(t.state == TrialState.WAITING for t in trials)


def _frozen(study: optuna.Study, trial: optuna.trial.Trial) -> optuna.trial.FrozenTrial:
    return study._storage.get_trial(trial._trial_id)


def _tell(study: optuna.Study, trial: optuna.trial.Trial, job_return: JobReturn, metric: str) -> bool:
    """Tell the study what the job ended with; False when it failed."""
    job_dir = OmegaConf.select(job_return.hydra_cfg or {}, "hydra.runtime.output_dir") if job_return.hydra_cfg else None
    if job_dir:
        trial.set_user_attr(ledger.JOB_DIR, str(job_dir))
    if job_return.status != JobStatus.COMPLETED:
        error = job_return._return_value
        return _fail(study, trial, f"{type(error).__name__}: {error}")
    value = job_return.return_value
    if _frozen(study, trial).user_attrs.get(ledger.PRUNED_AT) is not None:
        _told(study, trial, state=TrialState.PRUNED)
        log.info("optuna: trial %d pruned: %s", trial.number, trial.params)
        return True
    if not isinstance(value, int | float) or math.isnan(value):
        return _fail(study, trial, f"the job returned no value for {metric} ({value!r})")
    _told(study, trial, values=float(value))
    log.info("optuna: trial %d: %s=%.4f %s", trial.number, metric, value, trial.params)
    return True


def _fail(study: optuna.Study, trial: optuna.trial.Trial, error: str) -> bool:
    trial.set_user_attr(ledger.ERROR, error[:2000])
    _told(study, trial, state=TrialState.FAIL)
    log.warning("optuna: trial %d failed: %s", trial.number, error[:500])
    return False


def _told(study: optuna.Study, trial: optuna.trial.Trial, **kwargs: Any) -> None:
    try:
        study.tell(trial, **kwargs)
    except (optuna.exceptions.UpdateFinishedTrialError, RuntimeError, ValueError) as err:
        # reclaimed as lost while this worker stalled longer than the grace period: the study already says so
        log.warning("optuna: trial %d could not be told (%s); the study keeps its record", trial.number, err)


def write_results(study: optuna.Study, settings: Settings, sweep_dir: Path) -> None:
    """`optimization_results.yaml` in this worker's sweep dir: the study's best so far and its tally (the sweep's
    summary.md shows both)."""
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best = max(complete, key=lambda t: t.value if settings.direction == "maximize" else -t.value) if complete else None
    results = {
        "name": settings.study_name,
        "storage": shown(settings.storage),
        "direction": settings.direction,
        "metric": settings.metric,
        "best_value": best.value if best else None,
        "best_params": dict(best.params) if best else {},
        "best_trial": best.number if best else None,
        "trials": ledger.tally(trials),
        "workers": len([k for k in study.user_attrs if k.startswith(ledger.WORKERS)]),
    }
    write_text_atomic(Path(sweep_dir) / RESULTS_FILE, OmegaConf.to_yaml(OmegaConf.create(results)))
