"""What a person sees in `mlflow ui` after a small sweep with logger=mlflow: screenshots of the experiment's runs and of
the page comparing them, taken by a headless Chromium against a real `mlflow server` on loopback.

    python -m benchmarks.mlflow_view     # needs the `track` extra and `apt-get install chromium`

Writes benchmarks/results/mlflow_runs.png and mlflow_compare.png (or into --results); look at the PNGs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.browser import chromium, chromium_screenshot, free_port, serving

RESULTS = Path(__file__).resolve().parent / "results"
SWEEP = ["-m", "optimizer.lr=0.001,0.003", "logger=mlflow", "data=digits", "model.backbone.padding=1",
         "trainer.max_epochs=3", "callbacks.progress_bar.refresh_rate=0"]  # fmt: skip


def run_sweep(work: Path) -> Path:
    """The sweep, run in `work` (its outputs/, with outputs/mlflow.db, land there); returns the store's path."""
    subprocess.run([sys.executable, "-m", "cnnlab", "train", *SWEEP], cwd=work, check=True, capture_output=True)
    return work / "outputs" / "mlflow.db"


def pages(base: str, store: Path) -> dict[str, str]:
    """The two pages to look at: the experiment's runs, and all of them compared (a plot, then names, params and
    metrics side by side: a taller page)."""
    from mlflow import MlflowClient  # lazy: the `track` extra, there once the sweep has run with logger=mlflow

    client = MlflowClient(tracking_uri=f"sqlite:///{store}")
    experiment = client.get_experiment_by_name("cnnlab").experiment_id
    runs = json.dumps([run.info.run_id for run in client.search_runs([experiment])], separators=(",", ":"))
    return {"mlflow_runs": f"{base}/#/experiments/{experiment}/runs",
            "mlflow_compare": f"{base}/#/compare-runs?runs={runs}&experiments=[\"{experiment}\"]"}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path(tempfile.mkdtemp(prefix="mlflow_view_")))
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    if chromium() is None:
        sys.exit("no Chromium: apt-get install chromium")
    args.work.mkdir(parents=True, exist_ok=True)
    store = run_sweep(args.work)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{store}", "--host",
              "127.0.0.1", "--port", str(port), "--workers", "1"]  # fmt: skip
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no job runner: the UI needs none
    with serving(server, f"{base}/health", args.work / "mlflow_server.log", cwd=args.work, env=env):
        for (name, url), height in zip(pages(base, store).items(), (1000, 1800), strict=True):
            print(f"{name}: {chromium_screenshot(url, args.results / f'{name}.png', size=(1600, height))}")


if __name__ == "__main__":
    main()
