"""What `cnnlab train` costs before its first training step: imports, config composition, data loading,
model building - each timed in a fresh interpreter - and the whole CLI for a one-step run.

    python -m benchmarks.startup [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time

PHASES = r"""
import json, sys, time
t0 = time.perf_counter(); marks = {}
import torch; marks["import torch"] = time.perf_counter()
import lightning; marks["import lightning (+ torchmetrics)"] = time.perf_counter()
import timm; marks["import timm"] = time.perf_counter()
import cnnlab.run.training; marks["import cnnlab.run.training (+ hydra)"] = time.perf_counter()
from pathlib import Path
from hydra.utils import instantiate
from cnnlab.run.builders import build_model
from cnnlab.utils.config import compose_config
cfg = compose_config(["experiment=seed_fashion"], output_dir=sys.argv[1], root_dir=Path.cwd())
marks["compose the config"] = time.perf_counter()
datamodule = instantiate(cfg.data); datamodule.setup()
marks["load Fashion-MNIST (IDX .gz -> uint8 tensors, split)"] = time.perf_counter()
build_model(cfg, datamodule.info); marks["build the model"] = time.perf_counter()
last, out = t0, {}
for name, t in marks.items():
    out[name], last = t - last, t
print(json.dumps(out))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    phases: dict[str, list[float]] = {}
    python, cli = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", "pass"], check=True)
            python.append(time.perf_counter() - start)
            done = subprocess.run([sys.executable, "-c", PHASES, f"{tmp}/p{round_}"], check=True,
                                  capture_output=True, text=True)  # fmt: skip
            for name, seconds in json.loads(done.stdout.strip().splitlines()[-1]).items():
                phases.setdefault(name, []).append(seconds)
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "cnnlab", "train", "experiment=seed_fashion", "trainer.max_epochs=1",
                            "trainer.limit_train_batches=1",
                            "trainer.limit_val_batches=0", "test=false", "logger=none", "callbacks=none",
                            f"hydra.run.dir={tmp}/c{round_}"], check=True, capture_output=True)  # fmt: skip
            cli.append(time.perf_counter() - start)
    print(f"median of {args.rounds} fresh interpreters, seconds")
    print(f"  python -c pass: {statistics.median(python):.2f}")
    for name, values in phases.items():
        print(f"  {name}: {statistics.median(values):.2f}")
    total = sum(statistics.median(v) for v in phases.values())
    print(f"  sum to a built model: {total:.2f}")
    print(f"cnnlab train experiment=seed_fashion, one training step (whole process): {statistics.median(cli):.2f}")


if __name__ == "__main__":
    main()
