"""How long `cnnlab` takes to say "no": each refusal timed as a user meets it (a fresh process, the whole command),
next to `python -c pass` and `python -c "import torch"` measured in the same run, against the 1.5 s target.

    python benchmarks/refusals.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

TARGET_S = 1.5
REFUSALS = {
    "a misspelt key": ["train", "trainer.max_epoch=3"],
    "an unknown group option": ["train", "model=resnet5O"],
    "a bad value": ["train", "trainer.max_epochs=abc"],
    "a missing required key": ["eval"],
    "a bad value of another verb": ["predict", "ckpt_path=model.ckpt", "inputs=x.png", "batch_size=0"],
    "a bad value in a sweep's third job": ["train", "-m", "optimizer.lr=0.1,0.01,-1"],
}


def timed(command: list[str], cwd: str, expect: int) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != expect:
        raise SystemExit(f"{' '.join(command)} exited {done.returncode}, not {expect}:\n{done.stderr[-2000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    cnnlab = shutil.which("cnnlab", path=str(Path(sys.executable).parent)) or "cnnlab"
    with tempfile.TemporaryDirectory() as cwd:
        baseline = {
            "python -c pass": [timed([sys.executable, "-c", "pass"], cwd, 0) for _ in range(args.rounds)],
            "python -c 'import torch'": [
                timed([sys.executable, "-c", "import torch"], cwd, 0) for _ in range(args.rounds)
            ],
        }
        refusals = {name: [timed([cnnlab, *argv], cwd, 2) for _ in range(args.rounds)]
                    for name, argv in REFUSALS.items()}  # fmt: skip
        written = list(Path(cwd).iterdir())
    torch_s = statistics.median(baseline["python -c 'import torch'"])
    print(f"{date.today()}, median of {args.rounds} fresh processes, seconds (target: under {TARGET_S} s)")
    for name, values in baseline.items():
        print(f"  {name:<38} {statistics.median(values):5.2f}")
    worst = 0.0
    for name, values in refusals.items():
        median = statistics.median(values)
        worst = max(worst, median)
        print(f"  {name:<38} {median:5.2f}   {median / torch_s:4.2f}x import torch   cnnlab {' '.join(REFUSALS[name])}")
    print(f"slowest refusal {worst:.2f} s: {'within' if worst < TARGET_S else 'OVER'} the {TARGET_S} s target; "
          f"files written by the refusals: {len(written)}")  # fmt: skip


if __name__ == "__main__":
    main()
