"""The in-memory DataModule: a dataset held as one uint8 tensor, split once, batched by index slicing."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch

from cnnlab.data.augment import Augment, augment_if_training
from cnnlab.data.batches import TensorBatches
from cnnlab.data.checks import check_data
from cnnlab.data.images import png_bytes
from cnnlab.data.info import DataInfo
from cnnlab.data.splits import balanced_subset, stratified_folds, stratified_split
from cnnlab.errors import CnnlabError, Problems


@dataclass
class Splits:
    """uint8 images (N, C, H, W) and int64 labels (N,) for each split."""

    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]


class InMemoryDataModule(L.LightningDataModule):
    """Base for datasets small enough to live in memory as uint8 tensors.

    Subclasses implement `load()` -> (train_images, train_labels, test_images, test_labels) and set
    `display_name` and `class_names`. Everything else - validation split, subsetting, statistics,
    batching - is shared.
    """

    display_name = "dataset"
    class_names: tuple[str, ...] = ()

    def __init__(
        self,
        data_dir: str = "data",
        batch_size: int = 64,
        eval_batch_size: int | None = 512,
        val_fraction: float = 0.1,
        train_size: int | None = None,
        seed: int = 42,
        download: bool = False,
        system_dirs: list[str] | None = None,
        augment: Mapping[str, Any] | None = None,
        on_device: bool | str = "auto",
        folds: int | None = None,
        fold: int = 0,
    ) -> None:
        super().__init__()
        problems = Problems()
        check_data(dict(batch_size=batch_size, eval_batch_size=eval_batch_size, val_fraction=val_fraction,
                        train_size=train_size, data_dir=data_dir, augment=augment, on_device=on_device,
                        folds=folds, fold=fold),
                   problems)  # fmt: skip
        problems.raise_if_any(f"invalid data configuration for {self.display_name}")
        self.data_dir = Path(data_dir)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.val_fraction = val_fraction
        self.train_size = train_size
        self.seed = seed
        self.download = download
        self.system_dirs = [Path(d) for d in (system_dirs or [])]
        self.augment = Augment.from_config(augment)
        self.on_device = on_device
        self.folds, self.fold = folds, fold
        self.splits: Splits | None = None
        self._placed: dict[tuple[str, str], tuple[torch.Tensor, ...]] = {}
        self._info: DataInfo | None = None

    # --- to implement -------------------------------------------------------------------------------
    def load(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return uint8 train images (N, C, H, W), int64 labels, and the same for the test split."""
        raise NotImplementedError

    # --- shared -------------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.splits is not None:
            return
        train_x, train_y, test_x, test_y = self.load()
        explicit_val = getattr(self, "explicit_val", None)  # a dataset's own validation split, if it has one
        if self.folds:
            self.splits = self._cross_validation_splits(train_x, train_y, explicit_val, (test_x, test_y))
            self._info = self._describe(train_x)
            return
        if explicit_val is not None:
            train_idx, val_idx = torch.arange(len(train_y)), None
        else:
            train_idx, val_idx = stratified_split(train_y, self.val_fraction, self.seed)
        if self.train_size is not None:
            if self.train_size > len(train_idx):
                raise CnnlabError(
                    f"data.train_size={self.train_size} is larger than the training split of "
                    f"{self.display_name} ({len(train_idx)} images after holding out "
                    f"data.val_fraction={self.val_fraction}). Use at most {len(train_idx)}, or null for all."
                )
            train_idx = train_idx[balanced_subset(train_y[train_idx], self.train_size, self.seed)]
        self.splits = Splits(
            train=(train_x[train_idx], train_y[train_idx]),
            val=explicit_val if explicit_val is not None else (train_x[val_idx], train_y[val_idx]),
            test=(test_x, test_y),
        )
        self._info = self._describe(train_x)

    def train_labels(self) -> torch.Tensor:
        """The training split's labels (class weights count them)."""
        self.setup("fit")
        return self.splits.train[1]

    def _cross_validation_splits(self, train_x: torch.Tensor, train_y: torch.Tensor, explicit_val: Any,
                                 test: tuple[torch.Tensor, torch.Tensor]) -> Splits:  # fmt: skip
        """k-fold: the training split (with the dataset's own val split, if any) - or a seeded, class-balanced
        `train_size` subset of it - cut into `folds` stratified folds; fold `fold` validates, the others train.
        The test split is never touched."""
        if explicit_val is not None:
            train_x, train_y = torch.cat([train_x, explicit_val[0]]), torch.cat([train_y, explicit_val[1]])
        pool = torch.arange(len(train_y))
        if self.train_size is not None:
            if self.train_size > len(pool):
                raise CnnlabError(f"data.train_size={self.train_size} is larger than the {len(pool)} training images "
                                  f"of {self.display_name} that data.folds={self.folds} splits. Use at most "
                                  f"{len(pool)}, or null for all.")  # fmt: skip
            pool = balanced_subset(train_y, self.train_size, self.seed)
        parts = stratified_folds(train_y[pool], self.folds, self.seed)
        val_idx = pool[parts[self.fold]]
        train_idx = pool[torch.cat([p for i, p in enumerate(parts) if i != self.fold]).sort().values]
        return Splits(train=(train_x[train_idx], train_y[train_idx]), val=(train_x[val_idx], train_y[val_idx]),
                      test=test)  # fmt: skip

    def _describe(self, train_images: torch.Tensor) -> DataInfo:
        # Per-channel statistics of the whole training file: fixed per dataset, whatever the subset.
        pixels = train_images.float().div_(255).transpose(0, 1).reshape(train_images.shape[1], -1)
        return DataInfo(
            name=self.display_name,
            num_classes=len(self.class_names),
            in_chans=int(train_images.shape[1]),
            image_size=(int(train_images.shape[2]), int(train_images.shape[3])),
            class_names=tuple(self.class_names),
            mean=tuple(round(m, 4) for m in pixels.mean(1).tolist()),
            std=tuple(round(s, 4) for s in pixels.std(1).tolist()),
        )

    @property
    def info(self) -> DataInfo:
        """Loads the data on first use: class count, channels and size come from the files themselves."""
        if self._info is None:
            self.prepare_data()
            self.setup()
        assert self._info is not None
        return self._info

    def stored_items(self, split: str) -> tuple[int, Callable[[int], bytes], torch.Tensor]:
        """What `cnnlab shards` writes for a split: (count, index -> the image as a file's bytes, labels)."""
        images, labels = getattr(self.splits, split)
        return len(labels), lambda i: png_bytes(images[i]), labels

    @property
    def augments_training(self) -> bool:
        """Whether train batches are augmented (then frozen features cannot be cached: they change each epoch)."""
        return self.augment.active

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Train batches are augmented here: on the device, after the transfer, batched (see data/augment.py)."""
        return augment_if_training(self.augment, self.trainer, batch)

    def _placed_split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """A split's tensors where batches are cut: on the training GPU when `on_device` allows (auto: when the
        split takes under a quarter of the GPU's memory), so each step is an index slice there, no host copy."""
        images, labels = getattr(self.splits, split)
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        if self.on_device is False or device.type == "cpu" or images.ndim != 4:
            return images, labels
        if self.on_device == "auto" and device.type == "cuda":
            nbytes = images.numel() * images.element_size()
            if nbytes > torch.cuda.get_device_properties(device).total_memory / 4:
                return images, labels
        key = (split, str(device))
        if key not in self._placed or self._placed[key][2] is not labels:  # the host labels: a staleness check
            self._placed[key] = (images.to(device), labels.to(device), labels)
        return self._placed[key][:2]

    def teardown(self, stage: str) -> None:
        self._placed.clear()  # frees the GPU copies; the host tensors stay for the next fit / test

    def _batches(self, split: str, train: bool) -> TensorBatches:
        if self.splits is None:
            self.setup()
        trainer = self.trainer
        return TensorBatches(
            *self._placed_split(split),
            batch_size=self.batch_size if train else self.eval_batch_size,
            shuffle=train,
            seed=self.seed,
            epoch=lambda: trainer.current_epoch if trainer is not None else 0,
            rank=trainer.global_rank if trainer is not None else 0,
            world_size=trainer.world_size if trainer is not None else 1,
            pad_shards=train,
        )

    def train_dataloader(self) -> TensorBatches:
        return self._batches("train", train=True)

    def val_dataloader(self) -> TensorBatches:
        return self._batches("val", train=False)

    def test_dataloader(self) -> TensorBatches:
        return self._batches("test", train=False)
