"""Frozen feature extraction with the feature cache vs without: 10 epochs each, side by side.

Both runs train the same head on the same EfficientNet-Lite0 ImageNet features (experiment=lite0_frozen,
1,000 training images); the uncached run pushes every image through the frozen backbone every epoch, the
cached one once per split (a fresh cache directory, so the embedding time is included).

    python -m benchmarks.feature_cache --epochs 10
"""

from __future__ import annotations

import argparse
import tempfile
import time

import cnnlab
from benchmarks.common import compose_train, report


def run(epochs: int, train_size: int, cached: bool) -> tuple[float, dict]:
    overrides = [
        "experiment=lite0_frozen",
        f"trainer.max_epochs={epochs}",
        f"data.train_size={train_size}",
        f"transfer.cache_features={str(cached).lower()}",
        "test=false",
        "callbacks.progress_bar.refresh_rate=0",
    ]
    cfg = compose_train(*overrides)
    cfg.paths.cache_dir = tempfile.mkdtemp(prefix="cnnlab-cache-")
    start = time.perf_counter()
    summary = cnnlab.train(cfg)
    return time.perf_counter() - start, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--train-size", type=int, default=1000)
    args = parser.parse_args()
    uncached_s, uncached = run(args.epochs, args.train_size, cached=False)
    cached_s, cached = run(args.epochs, args.train_size, cached=True)
    print(f"lite0_frozen, {args.epochs} epochs, {args.train_size} training images, fit incl. validation")
    report("without cache", [uncached_s], "with cache", [cached_s])
    print(f"val/acc_best: without cache {uncached['val/acc_best']:.4f}, with cache {cached['val/acc_best']:.4f}")


if __name__ == "__main__":
    main()
