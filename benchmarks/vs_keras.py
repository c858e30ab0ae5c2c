"""cnnlab's seed recipe vs the seed's own Keras script, whole processes, same Fashion-MNIST arrays.

Each round runs, one after the other, `python benchmarks/keras_seed.py` (tensorflow-cpu: the `bench` extra)
and `cnnlab train experiment=seed_fashion` with the same number of epochs, and times each process from start
to exit (imports, data loading, training, validation, test). Rounds alternate A/B so a noisy machine hurts
both alike; the medians' ratio is printed (target: cnnlab / Keras <= 0.8), with both test accuracies.

    python -m benchmarks.vs_keras --epochs 3 --rounds 3 [--keras-python /path/to/python-with-tensorflow]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.common import compose_train, report, run_cnnlab, run_timed


def export_arrays(path: Path) -> None:
    """The exact Fashion-MNIST arrays cnnlab reads (its IDX reader, the Debian package's files)."""
    from hydra.utils import instantiate

    datamodule = instantiate(compose_train("data=fashion_mnist").data)
    train_x, train_y, test_x, test_y = datamodule.load()
    np.savez(path, x_train=train_x[:, 0].numpy(), y_train=train_y.numpy(),
             x_test=test_x[:, 0].numpy(), y_test=test_y.numpy())  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keras-python", default=sys.executable, help="a Python with tensorflow-cpu installed")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        arrays = Path(tmp) / "fashion.npz"
        export_arrays(arrays)
        keras_cmd = [args.keras_python, str(Path(__file__).with_name("keras_seed.py")), str(arrays),
                     "--epochs", str(args.epochs)]  # fmt: skip
        keras_env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        keras_times, cnnlab_times, keras_acc, cnnlab_acc = [], [], [], []
        for round_ in range(args.rounds):
            elapsed, out = run_timed(keras_cmd, keras_env)
            keras_times.append(elapsed)
            keras_acc.append(json.loads(out.strip().splitlines()[-1])["test_acc"])
            elapsed, metrics = run_cnnlab(Path(tmp) / f"cnnlab{round_}", "experiment=seed_fashion",
                                          f"trainer.max_epochs={args.epochs}")  # fmt: skip
            cnnlab_times.append(elapsed)
            cnnlab_acc.append(metrics["test/acc"])
    print(f"seed recipe on Fashion-MNIST, {args.epochs} epochs, whole process, {args.rounds} alternating rounds")
    print(f"test accuracy: cnnlab {', '.join(f'{a:.4f}' for a in cnnlab_acc)}; "
          f"Keras {', '.join(f'{a:.4f}' for a in keras_acc)}")  # fmt: skip
    report("cnnlab", cnnlab_times, "keras", keras_times)


if __name__ == "__main__":
    main()
