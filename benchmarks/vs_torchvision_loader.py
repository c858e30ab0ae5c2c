"""cnnlab's in-memory data path vs the usual torchvision dataset + DataLoader + per-sample transforms.

Both train the same cnnlab model (the fast recipe's CNN, both with pad-2 crop + flip augmentation) inside
Lightning on the same Fashion-MNIST images, alternating A/B in one process; we compare the median time of
a training epoch (validation off). cnnlab: uint8 tensors in memory, index-sliced batches, the augmentation
as batched tensor ops. Usual: `torchvision.datasets.FashionMNIST` (PIL images), `RandomCrop` +
`RandomHorizontalFlip` + `ToTensor` per sample in `--workers` DataLoader workers, the default collate.
Target: usual / cnnlab >= 1.5.

    python -m benchmarks.vs_torchvision_loader --epochs 2 --rounds 2 --workers 2
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from hydra.utils import instantiate

import cnnlab
from benchmarks.common import EpochTimer, compose_train, report
from benchmarks.torchvision_pipeline import TorchvisionFashionMNIST, fit_usual, torchvision_root


def usual_pipeline(cfg, info, root: Path, workers: int) -> list[float]:
    timer = EpochTimer()
    datamodule = TorchvisionFashionMNIST(root, cfg.data.batch_size, workers, augment=cfg.data.augment is not None)
    fit_usual(cfg, info, datamodule, [timer])
    return timer.times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", default="fashion_cnn_fast")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the usual pipeline")
    args = parser.parse_args()
    # both sides augment alike: pad-2 crop + flip (torchvision's RandomCrop + RandomHorizontalFlip per sample)
    overrides = [f"experiment={args.experiment}", f"trainer.max_epochs={args.epochs}", "trainer.accelerator=cpu",
                 "data.augment={translate: 2, hflip: true}",
                 "trainer.limit_val_batches=0", "test=false", "logger=none", "callbacks=none"]  # fmt: skip
    cfg = compose_train(*overrides)
    datamodule = instantiate(cfg.data)
    with tempfile.TemporaryDirectory() as scratch:
        root = torchvision_root([Path(cfg.data.data_dir) / "FashionMNIST" / "raw",
                                 *map(Path, cfg.data.system_dirs)], Path(scratch))  # fmt: skip
        usual, ours = [], []
        for _ in range(args.rounds):
            usual += usual_pipeline(cfg, datamodule.info, root, args.workers)
            timer = EpochTimer()
            cnnlab.train(compose_train(*overrides), callbacks=[timer])
            ours += timer.times
    print(f"{args.experiment}: train epoch time, {args.rounds} alternating rounds of {args.epochs} epochs, "
          f"usual pipeline with {args.workers} workers")  # fmt: skip
    report("usual torchvision + DataLoader", usual, "cnnlab in-memory", ours)


if __name__ == "__main__":
    main()
