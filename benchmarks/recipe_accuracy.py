"""The recipes' accuracy targets, each a whole `cnnlab train` process on the full dataset; prints each test
accuracy against its target as a ratio (>= 1.000 meets it). These left the test suite (minutes each): the suite
keeps a short smoke run of every recipe (tests/test_train.py).

    python -m benchmarks.recipe_accuracy [--only fashion_cnn_fast] [--mnist ../shared/data/mnist]

| recipe | target | measured (2-core CPU; mean +- sd over seeds 1-3 where given) |
|---|---|---|
| seed_fashion, 1 epoch | test acc >= 0.84 | 0.87 |
| fashion_cnn_fast (5 epochs, 164,402 weights) | >= 0.925 | 0.9257 +- 0.0017 (one seed of three: 0.9241) |
| mnist_cnn_fast (5 epochs, real MNIST) | >= 0.994 | 0.9956 +- 0.0002 |
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from benchmarks.common import run_cnnlab

# name -> (overrides, test-accuracy target)
RECIPES = {
    "seed_fashion_1_epoch": (["experiment=seed_fashion", "trainer.max_epochs=1"], 0.84),
    "fashion_cnn_fast": (["experiment=fashion_cnn_fast"], 0.925),
    "mnist_cnn_fast": (["experiment=mnist_cnn_fast"], 0.994),
}


def mnist_data_dir(shared: Path, root: Path) -> Path:
    """A data_dir with the four MNIST files in torchvision's layout (links to `shared`)."""
    raw = root / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for path in shared.glob("*.gz"):
        (raw / path.name).symlink_to(path.resolve())
    return root / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=list(RECIPES), default=list(RECIPES))
    parser.add_argument("--mnist", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/mnist",
                        help="folder with the four MNIST .gz files (tests and benchmarks only)")  # fmt: skip
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only:
            overrides, target = RECIPES[name]
            if name.startswith("mnist"):
                overrides = [*overrides, f"paths.data_dir={mnist_data_dir(args.mnist, Path(tmp))}"]
            elapsed, metrics = run_cnnlab(Path(tmp) / name, *overrides, "logger=none")
            accuracy = metrics["test/acc"]
            print(f"{name}: test acc {accuracy:.4f} / target {target} = {accuracy / target:.3f} "
                  f"({'meets' if accuracy >= target else 'MISSES'} it; {metrics['params']['total']:,} weights, "
                  f"{elapsed:.0f} s whole process)")  # fmt: skip


if __name__ == "__main__":
    main()
