"""A shared study's bookkeeping, kept in the study itself (its trials' user attributes), so that any number of
workers on any machines agree on it without talking to each other:

- the budget: `n_trials` counts the study's trials, whoever ran them; a trial a worker asked for past the budget
  (two workers asked at once) is closed at once as void, never run;
- no duplicates: a proposal equal to a trial already run, running or failed is closed as void and another is asked
  for (samplers do re-propose, most of all over small categorical spaces);
- heartbeats: each worker stamps its running trials every `heartbeat_interval` seconds; a RUNNING trial without a
  stamp for `grace_period` seconds lost its worker (killed, its node gone): the next worker to look marks it failed
  (`lost`) and enqueues its parameters again, so the study stays consistent and the set still gets its run.
Void and lost trials are FAIL in Optuna's terms and do not count against the budget.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterable
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

log = logging.getLogger("cnnlab.run.search")

PREFIX = "cnnlab:"
WORKER = PREFIX + "worker"  # host:pid of the worker that ran the trial
HEARTBEAT = PREFIX + "heartbeat"  # the worker's last stamp (time.time())
VOID = PREFIX + "void"  # why the trial was closed without a run: a duplicate, over the budget
LOST = PREFIX + "lost"  # the trial's worker stopped beating
RETRY_OF = PREFIX + "retry_of"  # the lost trial this enqueued one runs again
PRUNED_AT = PREFIX + "pruned_at"  # set by the job: the epoch the pruner stopped it
JOB_DIR = PREFIX + "job_dir"
ERROR = PREFIX + "error"
SAMPLER_SEED = PREFIX + "sampler_seed"
WORKERS = PREFIX + "workers/"  # study attribute per worker: when it joined, its host and pid


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def counts(trial: FrozenTrial) -> bool:
    """Whether the trial counts against the budget: everything but void and lost trials."""
    return VOID not in trial.user_attrs and LOST not in trial.user_attrs


def budget_used(trials: Iterable[FrozenTrial], before_id: int | None = None) -> int:
    """How many trials count against the budget (those created before `before_id`, when given)."""
    return sum(counts(t) and (before_id is None or t._trial_id < before_id) for t in trials)


def duplicate_of(trial: FrozenTrial | optuna.trial.Trial, trials: Iterable[FrozenTrial]) -> FrozenTrial | None:
    """An earlier counted trial with the same parameters (run, running, pruned or failed), or None."""
    for other in trials:
        same = other._trial_id != trial._trial_id and other.params and other.params == trial.params
        if same and counts(other) and other.state != TrialState.WAITING:
            return other
    return None


def void(study: optuna.Study, trial: optuna.trial.Trial, reason: str) -> None:
    """Close a trial that must not run, saying why (it stays in the study, as FAIL, outside the budget)."""
    trial.set_user_attr(VOID, reason)
    study.tell(trial, state=TrialState.FAIL)


def join(study: optuna.Study, seed: int) -> int:
    """Register this worker with the study; its sampler seed: `seed` for a worker alone on a new study (a lone
    search replays), another one for each further worker (workers started at once must not propose the same
    sequence). Each worker writes before it reads, so of two starting together at least one sees the other."""
    me = worker_name()
    study.set_user_attr(WORKERS + me, {"joined": time.time()})
    others = [k for k in study.user_attrs if k.startswith(WORKERS) and k != WORKERS + me]
    if not others and not study.trials:
        return seed
    return secrets.randbelow(2**31 - 1)


def reclaim_lost(study: optuna.Study, grace_period: float) -> list[int]:
    """Fail the RUNNING trials whose worker stopped beating `grace_period` seconds ago and enqueue their parameters
    again; returns their numbers. Two workers may try at once: the second finds the trial finished and moves on."""
    now = time.time()
    lost = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        stamp = trial.user_attrs.get(HEARTBEAT)
        started = trial.datetime_start.timestamp() if trial.datetime_start else now
        last = float(stamp) if isinstance(stamp, int | float) else started
        if now - last < grace_period:
            continue
        worker = trial.user_attrs.get(WORKER, "?")
        try:
            study._storage.set_trial_user_attr(trial._trial_id, LOST, f"worker {worker} silent for {now - last:.0f} s")
            study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        except (UpdateFinishedTrialError, RuntimeError):
            continue  # another worker got there first, or the trial just finished
        if trial.params:
            study.enqueue_trial(trial.params, user_attrs={RETRY_OF: trial.number}, skip_if_exists=False)
        log.warning("optuna: trial %d lost its worker %s (silent for %.0f s): marked failed (lost) and its "
                    "parameters enqueued again", trial.number, worker, now - last)  # fmt: skip
        lost.append(trial.number)
    return lost


class Heartbeat:
    """A thread that stamps this worker's running trials every `interval` seconds (while it launches their jobs,
    which may run in this very process)."""

    def __init__(self, study: optuna.Study, interval: float) -> None:
        self._study, self._interval = study, interval
        self._trial_ids: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="cnnlab-optuna-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=self._interval + 5)

    def watch(self, trial_id: int) -> None:
        self.stamp(trial_id)
        with self._lock:
            self._trial_ids.add(trial_id)

    def forget(self, trial_id: int) -> None:
        with self._lock:
            self._trial_ids.discard(trial_id)

    def stamp(self, trial_id: int) -> None:
        try:
            self._study._storage.set_trial_user_attr(trial_id, HEARTBEAT, time.time())
        except (UpdateFinishedTrialError, RuntimeError):
            self.forget(trial_id)  # finished (or reclaimed after a long stall): nothing to keep alive
        except Exception as err:  # a storage hiccup must not kill the worker; the next beat tries again
            log.warning("optuna: heartbeat of trial id %d not recorded (%s: %s)", trial_id, type(err).__name__, err)

    def _beat(self) -> None:
        while not self._stop.wait(self._interval):
            with self._lock:
                trial_ids = list(self._trial_ids)
            for trial_id in trial_ids:
                self.stamp(trial_id)


def tally(trials: Iterable[FrozenTrial]) -> dict[str, int]:
    """The study's trials by what became of them: complete, pruned, failed, running, waiting, lost, void."""
    result = dict.fromkeys(("complete", "pruned", "failed", "running", "waiting", "lost", "void"), 0)
    for trial in trials:
        if VOID in trial.user_attrs:
            result["void"] += 1
        elif LOST in trial.user_attrs:
            result["lost"] += 1
        else:
            name = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned", TrialState.FAIL: "failed",
                    TrialState.RUNNING: "running", TrialState.WAITING: "waiting"}[trial.state]  # fmt: skip
            result[name] += 1
    return result
