"""The usual pipeline the benchmarks compare against: a torchvision dataset, per-sample transforms in
DataLoader workers, the default collate, host -> device copies each step (pinned memory on a GPU).

Same images, same labels, same augmentation (pad-and-crop + flip) and the same cnnlab model, so only the
data path differs from cnnlab's in-memory one.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from cnnlab.data.mnist_family import IDX_FILES, find_idx_files


def torchvision_root(data_dirs: list[Path], scratch: Path) -> Path:
    """A root holding FashionMNIST/raw/ as torchvision reads it (uncompressed IDX files), from the same files
    cnnlab reads."""
    for directory in data_dirs:
        files = find_idx_files(directory)
        if isinstance(files, dict):
            break
    else:
        raise SystemExit(f"no Fashion-MNIST IDX files in any of {', '.join(map(str, data_dirs))}")
    raw = scratch / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for key, path in files.items():
        target = raw / IDX_FILES[key]
        if not target.exists():
            with gzip.open(path) if path.suffix == ".gz" else open(path, "rb") as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
    return scratch


class TorchvisionFashionMNIST(L.LightningDataModule):
    """torchvision.datasets.FashionMNIST + transforms + DataLoader: what most Lightning projects write."""

    def __init__(self, root: Path, batch_size: int, num_workers: int, augment: bool, image_size: int | None = None,
                 eval_batch_size: int = 512) -> None:  # fmt: skip
        super().__init__()
        self.root, self.batch_size, self.num_workers = root, batch_size, num_workers
        self.eval_batch_size = eval_batch_size
        steps = [transforms.Resize(image_size)] if image_size else []
        train_steps = [transforms.RandomCrop(28, padding=2), transforms.RandomHorizontalFlip()] if augment else []
        self.train_transform = transforms.Compose([*train_steps, *steps, transforms.ToTensor()])
        self.eval_transform = transforms.Compose([*steps, transforms.ToTensor()])

    def setup(self, stage: str | None = None) -> None:
        self.train_set = datasets.FashionMNIST(self.root, train=True, transform=self.train_transform)
        self.test_set = datasets.FashionMNIST(self.root, train=False, transform=self.eval_transform)

    def _loader(self, dataset, batch_size: int, shuffle: bool) -> DataLoader:
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=self.num_workers,
                          pin_memory=torch.cuda.is_available(), persistent_workers=self.num_workers > 0)  # fmt: skip

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, self.batch_size, shuffle=True)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, self.eval_batch_size, shuffle=False)


def fit_usual(cfg, info, datamodule: L.LightningDataModule, callbacks: list[L.Callback], **trainer_kwargs) -> None:
    """The cnnlab model and trainer settings of `cfg` (epochs, device, precision, batch limit), fed by the usual
    pipeline instead, validation off."""
    from cnnlab.run.builders import build_model

    trainer = L.Trainer(max_epochs=cfg.trainer.max_epochs, accelerator=cfg.trainer.accelerator, devices=1,
                        precision=cfg.trainer.precision, limit_train_batches=cfg.trainer.limit_train_batches,
                        limit_val_batches=0, logger=False, enable_checkpointing=False, enable_model_summary=False,
                        callbacks=callbacks, **trainer_kwargs)  # fmt: skip
    trainer.fit(build_model(cfg, info), datamodule=datamodule)
