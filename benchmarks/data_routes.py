"""The same 20,000 Fashion-MNIST training images stored three ways, one training epoch of the seed CNN each, side by
side in one run: (a) a PNG image folder decoded per batch (data=image_folder, cache_max_gb=0), (b) LitData shards
(data=streaming), (c) the in-memory uint8 tensor (data=fashion_mnist). Also the one-time costs: writing the PNGs and
`cnnlab shards`. Prints images/s and the ratios to the in-memory route.

    python -m benchmarks.data_routes [--images 20000] [--workers 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import lightning as L
from PIL import Image

import cnnlab
from benchmarks.common import compose_train
from cnnlab.data import FashionMNISTDataModule
from cnnlab.run.sharding import optimize

FASHION = "/usr/share/datasets/fashion-mnist"


class EpochTimer(L.Callback):
    """Wall seconds of the first training epoch (no validation inside it)."""

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.started = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.seconds = time.perf_counter() - self.started


def epoch_seconds(*overrides: str, out: Path) -> float:
    timer = EpochTimer()
    cfg = compose_train(*overrides, "trainer.max_epochs=1", "trainer.limit_val_batches=0", "test=false", "logger=none",
                        "callbacks.progress_bar.refresh_rate=0", out=str(out))  # fmt: skip
    cnnlab.train(cfg, callbacks=[timer])
    return timer.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cnnlab_routes_"))
    subset = [f"data.train_size={args.images}", "data.val_fraction=0.1"]

    source = FashionMNISTDataModule(system_dirs=[FASHION], train_size=args.images, val_fraction=0.1)
    images, labels = source.info and source.splits.train
    started = time.perf_counter()
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        folder = work / "png" / "train" / source.class_names[int(label)].replace("/", "-")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[0].numpy()).save(folder / f"{i}.png")
    png_write = time.perf_counter() - started
    cfg = cnnlab.compose(*subset, f"output_dir={work / 'shards'}", f"num_workers={args.workers}",
                         config="shards", output_dir=work / "opt", root_dir=work)  # fmt: skip
    optimize_s = optimize(cfg)["duration_s"]

    routes = {
        "in-memory tensor (data=fashion_mnist)": epoch_seconds(*subset, out=work / "mem"),
        "LitData shards (data=streaming)": epoch_seconds("data=streaming", f"data.input_dir={work / 'shards'}",
                                                         f"data.num_workers={args.workers}", out=work / "lit"),
        "PNG folder, decoded per batch (data=image_folder)": epoch_seconds(
            "data=image_folder", f"data.root={work / 'png'}", "data.channels=1", "data.image_size=28",
            "data.cache_max_gb=0", f"data.num_workers={args.workers}", "data.test_fraction=0.05", out=work / "png_run"),
    }  # fmt: skip
    base = routes["in-memory tensor (data=fashion_mnist)"]
    print(f"\n{args.images:,} training images, one epoch of the seed CNN, {args.workers} loader workers:")
    print("| route | epoch s | images/s | vs in-memory |\n|---|---|---|---|")
    for name, seconds in routes.items():
        print(f"| {name} | {seconds:.1f} | {args.images / seconds:,.0f} | {seconds / base:.2f}x the time |")
    print(
        f"one-time: writing the PNGs {png_write:.1f} s; `cnnlab shards` (all three splits, "
        f"{args.workers} workers) {optimize_s:.1f} s"
    )


if __name__ == "__main__":
    main()
