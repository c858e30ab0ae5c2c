"""`experiment=fashion_cnn_fast` vs `experiment=seed_fashion`: whole `cnnlab train` processes, alternating, on
this machine. Prints both test accuracies and the wall-time ratio (issue 8: >= 0.925, ratio <= 1.5).

    python -m benchmarks.fast_recipe --rounds 2 [--fast mnist_cnn_fast --seed seed_mnist paths.data_dir=...]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from benchmarks.common import report, run_cnnlab


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--fast", default="fashion_cnn_fast")
    parser.add_argument("--seed", default="seed_fashion")
    parser.add_argument("overrides", nargs="*", help="more overrides for both, e.g. paths.data_dir=...")
    args = parser.parse_args()
    times: dict[str, list[float]] = {args.fast: [], args.seed: []}
    accuracy: dict[str, list[float]] = {args.fast: [], args.seed: []}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            for experiment in (args.seed, args.fast) if round_ % 2 == 0 else (args.fast, args.seed):
                elapsed, metrics = run_cnnlab(Path(tmp) / f"{experiment}{round_}", f"experiment={experiment}",
                                              *args.overrides)  # fmt: skip
                times[experiment].append(elapsed)
                accuracy[experiment].append(metrics["test/acc"])
    for experiment, values in accuracy.items():
        print(f"{experiment}: test accuracy {', '.join(f'{a:.4f}' for a in values)}")
    report(args.fast, times[args.fast], args.seed, times[args.seed])


if __name__ == "__main__":
    main()
