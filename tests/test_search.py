"""cnnlab's Optuna sweeper: the search space, shared studies (a real PostgreSQL server, a journal file), pruning,
workers killed mid-trial, and a real `cnnlab train -m hparams_search=...` with pruning.

The worker tests run `tests/search_app/app.py`, a Hydra app whose "training" is a known curve reported through the
same job-side code as cnnlab's Pruning callback: several workers at once fit in seconds."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from cnnlab.errors import CnnlabError
from cnnlab.run.search import ledger
from cnnlab.run.search.job import build_pruner
from cnnlab.run.search.space import search_space
from cnnlab.run.search.storage import open_storage, shown
from cnnlab.run.search.worker import build_sampler
from tests.browser import chromium, chromium_dom, free_port, serving
from tests.postgres import postgres_bin, postgres_server
from tests.test_sweeps import cnnlab_train, only_sweep_dir, summary_rows

APP = Path(__file__).parent / "search_app" / "app.py"


def start_worker(sweep_dir: Path, storage: str, *overrides: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(Path(__file__).parents[1])}
    return subprocess.Popen([sys.executable, str(APP), "-m", f"hydra.sweeper.storage='{storage}'",
                             f"sweep_dir={sweep_dir}", *overrides], cwd=sweep_dir.parent, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip


def finish(worker: subprocess.Popen, timeout: float = 120) -> str:
    try:
        output, _ = worker.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        worker.kill()
        output, _ = worker.communicate()
        raise AssertionError(f"worker still running after {timeout} s:\n{output[-3000:]}") from None
    assert worker.returncode == 0, output[-3000:]
    return output


def counted(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.trials if ledger.counts(t)]


def test_search_space_reads_hydras_sweep_syntax():
    space = search_space({"optimizer.lr": "tag(log, interval(1e-4, 1e-2))", "data.batch_size": "choice(32, 64)",
                          "model.depth": "int(interval(1, 5))", "seed": "range(1, 4)", "trainer.max_epochs": 3},
                         ["model=cnn,resnet18", "data=digits"])  # fmt: skip
    assert space.distributions == {
        "optimizer.lr": FloatDistribution(1e-4, 1e-2, log=True), "data.batch_size": CategoricalDistribution([32, 64]),
        "model.depth": IntDistribution(1, 5), "seed": IntDistribution(1, 3), "model": CategoricalDistribution(
            ["cnn", "resnet18"])}  # fmt: skip
    assert space.fixed == ["trainer.max_epochs=3", "data=digits"]
    assert space.overrides({"optimizer.lr": 0.001, "data.batch_size": 64, "model.depth": 2, "seed": 1,
                            "model": "cnn"})[-1] == "model=cnn"  # fmt: skip
    with pytest.raises(CnnlabError, match=r"hydra.sweeper.params.optimizer.lr: interval\(0.01, 0.001\) is empty"):
        search_space({"optimizer.lr": "interval(0.01, 0.001)"})
    with pytest.raises(CnnlabError, match=r"cannot read 'x=interval\(0.1' as a search range"):
        search_space({"x": "interval(0.1"})


def test_storages_open_and_never_show_a_password(tmp_path):
    assert isinstance(open_storage(f"journal://{tmp_path}/j/study.log"), optuna.storages.JournalStorage)
    assert (tmp_path / "j").is_dir()
    assert isinstance(open_storage(f"sqlite:///{tmp_path}/s/optuna.db"), optuna.storages.RDBStorage)
    assert shown("postgresql://team:s3cret@db.lab:5432/optuna") == "postgresql://team:***@db.lab:5432/optuna"
    with pytest.raises(CnnlabError, match=r"cannot open the study's database.*PGPASSWORD"):
        open_storage("postgresql://team:s3cret@/optuna?host=/nonexistent-socket-dir")


@pytest.mark.skipif(postgres_bin("initdb") is None, reason="needs PostgreSQL's binaries (apt-get install postgresql)")
def test_three_workers_share_one_postgresql_study(tmp_path):
    """Three workers started at once on one study: 12 trials between them, every parameter set once, some pruned,
    none lost or left running, each worker with its own sampler seed."""
    with postgres_server() as url:
        beat = ["hydra.sweeper.n_trials=12", "hydra.sweeper.heartbeat_interval=0.5", "hydra.sweeper.grace_period=5"]
        workers = [start_worker(tmp_path / f"worker{i}", url, *beat) for i in range(3)]
        outputs = [finish(w) for w in workers]
        study = optuna.load_study(study_name="toy", storage=url)
        trials = counted(study)
        assert len(trials) == 12
        assert {t.state for t in trials} <= {TrialState.COMPLETE, TrialState.PRUNED}
        assert sum(t.state == TrialState.PRUNED for t in trials) >= 1
        assert len({json.dumps(t.params, sort_keys=True) for t in trials}) == 12  # no parameter set twice
        assert len({t.user_attrs[ledger.WORKER] for t in trials}) >= 2  # the work was shared
        seeds = {t.user_attrs[ledger.WORKER]: t.user_attrs[ledger.SAMPLER_SEED] for t in trials}
        assert len(set(seeds.values())) == len(seeds)
        void = [t for t in study.trials if not ledger.counts(t)]
        assert all(t.state == TrialState.FAIL and ledger.VOID in t.user_attrs for t in void)
    assert all("optuna: study 'toy'" in o for o in outputs)


def test_a_failing_trial_is_failed_and_its_worker_goes_on(tmp_path):
    storage = f"journal://{tmp_path}/study.log"
    output = finish(start_worker(tmp_path / "w", storage, "hydra.sweeper.n_trials=6", "fail_above=0.5"))
    trials = counted(optuna.load_study(study_name="toy", storage=open_storage(storage)))
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(trials) == 6 and failed and len(failed) < 6
    assert all(t.params["x"] > 0.5 and "is above fail_above=0.5" in t.user_attrs[ledger.ERROR] for t in failed)
    assert "failed: ValueError" in output


def test_a_worker_killed_mid_trial_leaves_the_study_consistent(tmp_path):
    """Worker A is killed (SIGKILL) in its second trial; worker B, started later, finds the trial silent past the
    grace period, marks it failed (lost), runs its parameters again, and completes the study."""
    storage = f"journal://{tmp_path}/study.log"
    beat = ["hydra.sweeper.heartbeat_interval=0.5", "hydra.sweeper.grace_period=3", "hydra.sweeper.n_trials=5"]
    first = start_worker(tmp_path / "a", storage, *beat, "epoch_seconds=0.4")
    study = optuna.load_study(study_name="toy", storage=open_storage(storage)) if _wait_for_study(tmp_path) else None
    deadline = time.time() + 60
    while time.time() < deadline:
        study = optuna.load_study(study_name="toy", storage=open_storage(storage))
        if any(t.state == TrialState.COMPLETE for t in study.trials) and any(
                t.state == TrialState.RUNNING for t in study.trials):  # fmt: skip
            break
        time.sleep(0.2)
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=30)
    running = [t for t in study.get_trials() if t.state == TrialState.RUNNING]
    assert len(running) == 1
    finish(start_worker(tmp_path / "b", storage, *beat))
    study = optuna.load_study(study_name="toy", storage=open_storage(storage))
    lost = study.trials[running[0].number]
    assert lost.state == TrialState.FAIL and "silent for" in lost.user_attrs[ledger.LOST]
    retry = [t for t in study.trials if t.user_attrs.get(ledger.RETRY_OF) == lost.number]
    assert len(retry) == 1 and retry[0].params == lost.params and retry[0].state != TrialState.RUNNING
    assert len(counted(study)) == 5 and not [t for t in study.trials if t.state == TrialState.RUNNING]


def _wait_for_study(tmp_path: Path) -> bool:
    deadline = time.time() + 60
    while time.time() < deadline and not (tmp_path / "study.log").is_file():
        time.sleep(0.1)
    return (tmp_path / "study.log").is_file()


def test_the_budget_is_the_studys_so_a_larger_one_extends_the_search(tmp_path):
    storage = f"journal://{tmp_path}/study.log"
    finish(start_worker(tmp_path / "a", storage, "hydra.sweeper.n_trials=3"))
    finish(start_worker(tmp_path / "a", storage, "hydra.sweeper.n_trials=5"))  # the same sweep dir, relaunched
    trials = counted(optuna.load_study(study_name="toy", storage=open_storage(storage)))
    assert [t.number for t in trials] == [0, 1, 2, 3, 4]
    assert sorted(p.name for p in (tmp_path / "a").iterdir() if p.is_dir()) == ["0", "1", "2", "3", "4"]
    results = (tmp_path / "a" / "optimization_results.yaml").read_text()
    assert "workers: 2" in results and "best_trial:" in results


def test_a_worker_with_another_search_space_is_refused(tmp_path):
    storage = f"journal://{tmp_path}/study.log"
    finish(start_worker(tmp_path / "a", storage, "hydra.sweeper.n_trials=1"))
    other = start_worker(tmp_path / "b", storage, "hydra.sweeper.params.x='interval(0.0,2.0)'")
    output, _ = other.communicate(timeout=120)
    assert other.returncode != 0 and "over other ranges than this command" in output


def test_cnnlab_search_prunes_real_trials(tmp_path):
    """`cnnlab train -m hparams_search=cnn_optuna` on digits with the median pruner: pruned trials stop early, are
    not tested, and are told to the study and to the summary as pruned; each job dir is named by its trial."""
    digits = ["data=digits", "model.backbone.padding=1", "trainer.max_epochs=3", "trainer.limit_val_batches=2",
              "trainer.limit_test_batches=1", "logger=none", "callbacks.progress_bar.refresh_rate=0",
              "hydra.sweeper.pruner.n_startup_trials=1", "hydra.sweeper.pruner.n_warmup_steps=0"]  # fmt: skip
    result = cnnlab_train(["-m", "hparams_search=cnn_optuna", "hydra.sweeper.n_trials=3", *digits], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    sweep = only_sweep_dir(tmp_path)
    study = optuna.load_study(study_name="cnn_optuna", storage=f"sqlite:///{sweep / 'optuna.db'}")
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert len(study.trials) == 3 and pruned
    rows = {r["job"]: r for r in summary_rows(sweep)}
    for trial in study.trials:
        job = Path(trial.user_attrs[ledger.JOB_DIR])
        metrics = json.loads((job / "metrics.json").read_text())
        assert rows[job.name]["status"] == ("pruned" if trial in pruned else "completed")
        assert ("test/acc" in metrics) == (trial not in pruned)
        assert job.name.startswith(f"{trial.number}_")
    assert f"{len(pruned)} pruned" in (sweep / "summary.md").read_text()


@pytest.mark.skipif(chromium() is None, reason="needs headless Chromium (apt-get install chromium)")
def test_optuna_dashboard_shows_the_trials_in_a_browser(tmp_path):
    """optuna-dashboard on a study the workers left (a journal file, read by its path): headless Chromium renders
    the study's page and its trials are there."""
    storage = f"journal://{tmp_path}/study.log"
    finish(start_worker(tmp_path / "w", storage, "hydra.sweeper.n_trials=5"))
    study = optuna.load_study(study_name="toy", storage=open_storage(storage))
    port = free_port()
    command = [sys.executable, "-m", "optuna_dashboard._cli", str(tmp_path / "study.log"), "--host", "127.0.0.1",
               "--port", str(port)]  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    with serving(command, f"{base}/api/studies", tmp_path / "dashboard.log", cwd=tmp_path):
        home = chromium_dom(f"{base}/dashboard")
        trials = chromium_dom(f"{base}/dashboard/studies/{study._study_id}/trials", budget_ms=8000)
    assert "toy" in home
    assert all(f"Trial {t.number}" in trials for t in study.trials), trials[-2000:]


@pytest.mark.parametrize("pruner", ["none", "median", "successive_halving", "hyperband"])
@pytest.mark.parametrize("search", ["cnn_optuna", "lite0_optuna"])
def test_every_search_and_pruner_config_builds(make_cfg, search, pruner):
    """Each hparams_search option with each pruner composes into a space, a pruner and a seeded sampler."""
    cfg = make_cfg(f"hparams_search={search}", f"hydra/sweeper/pruner={pruner}")
    sweeper = cfg.hydra.sweeper
    assert search_space(sweeper.params).distributions
    expected = {"none": "NopPruner", "median": "MedianPruner", "successive_halving": "SuccessiveHalvingPruner",
                "hyperband": "HyperbandPruner"}[pruner]  # fmt: skip
    assert type(build_pruner(sweeper.pruner)).__name__ == expected
    assert isinstance(build_sampler(sweeper.sampler, 5), optuna.samplers.TPESampler)
