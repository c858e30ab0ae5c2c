"""A fixed search budget, two ways: 1 worker without pruning against 3 workers with the median pruner, on one study
each (a journal file, or a throwaway PostgreSQL server with --postgres), wall time and best value side by side.

    python -m benchmarks.search_workers                       # 24 trials of a small Fashion-MNIST recipe
    python -m benchmarks.search_workers --trials 12 --postgres

Both searches run the same command (`cnnlab train -m hparams_search=cnn_optuna` with the recipe below); the
3 workers are 3 such processes started at once. On a machine with fewer cores than workers each worker gets
cores / workers torch threads (the single worker gets them all), so the comparison is of the same machine's work.
Prints one line per search and the ratios; `--json` writes them too.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.postgres import postgres_server  # noqa: E402  (the same throwaway server the tests start)

RECIPE = ["data.train_size=4000", "trainer.max_epochs=4", "trainer.limit_val_batches=10",
          "trainer.limit_test_batches=5", "logger=none", "callbacks.progress_bar.refresh_rate=0"]  # fmt: skip


def worker(sweep_dir: Path, storage: str, study: str, trials: int, pruner: str, threads: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": str(threads)}
    command = [sys.executable, "-m", "cnnlab", "train", "-m", "hparams_search=cnn_optuna", *RECIPE,
               f"hydra/sweeper/pruner={pruner}", f"hydra.sweeper.n_trials={trials}", f"hydra.sweep.dir={sweep_dir}",
               f"hydra.sweeper.storage='{storage}'", f"hydra.sweeper.study_name={study}",
               "hydra.sweeper.heartbeat_interval=5", "hydra.sweeper.grace_period=60"]  # fmt: skip
    return subprocess.Popen(command, cwd=sweep_dir.parent, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


def search(root: Path, storage: str, study_name: str, workers: int, pruner: str, trials: int) -> dict:
    threads = max(1, (os.cpu_count() or 1) // workers)
    started = time.perf_counter()
    processes = [worker(root / f"worker{i}", storage, study_name, trials, pruner, threads) for i in range(workers)]
    for process in processes:
        _, errors = process.communicate()
        if process.returncode:
            sys.exit(f"a worker failed ({process.returncode}):\n{errors[-3000:]}")
    wall = time.perf_counter() - started
    study = optuna.load_study(study_name=study_name, storage=_optuna_storage(storage))
    states = [t.state for t in study.trials if "cnnlab:void" not in t.user_attrs]
    return {"workers": workers, "pruner": pruner, "wall_s": round(wall, 1), "best": round(study.best_value, 4),
            "complete": states.count(TrialState.COMPLETE), "pruned": states.count(TrialState.PRUNED),
            "failed": states.count(TrialState.FAIL)}  # fmt: skip


def _optuna_storage(storage: str):
    if storage.startswith("journal://"):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(storage[len("journal://") :]))
    return storage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--postgres", action="store_true", help="both studies on a throwaway PostgreSQL server")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="search_bench_"))
    with postgres_server() if args.postgres else contextlib.nullcontext() as url:
        rows = []
        for name, workers, pruner in (("serial", 1, "none"), ("parallel", 3, "median")):
            (root / name).mkdir()
            storage = url or f"journal://{root}/{name}.log"
            rows.append(search(root / name, storage, f"bench_{name}", workers, pruner, args.trials))
    for row in rows:
        print(
            f"{row['workers']} worker(s), pruner={row['pruner']}: {row['wall_s']} s, best val/acc_best "
            f"{row['best']}, {row['complete']} complete, {row['pruned']} pruned, {row['failed']} failed"
        )
    print(
        f"wall time 3 workers + pruning / 1 worker: {rows[1]['wall_s'] / rows[0]['wall_s']:.2f}x; "
        f"best value difference: {rows[1]['best'] - rows[0]['best']:+.4f}; {os.cpu_count()} cores, "
        f"{time.strftime('%Y-%m-%d')}"
    )
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d"),
                                         "trials": args.trials}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
