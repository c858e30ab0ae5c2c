"""What a person sees in optuna-dashboard: a screenshot of a study's trials page and its intermediate values, from
headless Chromium against a real optuna-dashboard on loopback.

    python -m benchmarks.optuna_view <journal file or database URL> [--study NAME] [--out benchmarks/results]

`python -m benchmarks.search_workers` leaves its studies in journal files (it prints their folder); the screenshots
in benchmarks/results/ come from its 3-worker study with pruning.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import optuna

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.browser import chromium, chromium_screenshot, free_port, serving  # noqa: E402


def storage_for_optuna(storage: str) -> optuna.storages.BaseStorage | str:
    if "://" in storage:
        return storage
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    return JournalStorage(JournalFileBackend(storage))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("storage", help="a journal file's path or a database URL")
    parser.add_argument("--study", help="the study's name (default: the only one)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    if chromium() is None:
        sys.exit("no Chromium: apt-get install chromium")
    summaries = optuna.get_all_study_summaries(storage_for_optuna(args.storage))
    study = next(s for s in summaries if args.study in (None, s.study_name))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "optuna_dashboard._cli", args.storage, "--host", "127.0.0.1", "--port", str(port)]
    with serving(command, f"{base}/api/studies", args.out / "optuna_dashboard.log", cwd=args.out):
        for page, name in (("trials", "optuna_trials.png"), ("analytics", "optuna_analytics.png")):
            path = chromium_screenshot(f"{base}/dashboard/studies/{study._study_id}/{page}", args.out / name,
                                       size=(1600, 1100), budget_ms=15000)  # fmt: skip
            print(path)
    (args.out / "optuna_dashboard.log").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
