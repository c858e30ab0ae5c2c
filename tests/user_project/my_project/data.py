"""A DataModule of the user's own (not one of cnnlab's): 16x16 grey patterns of three kinds, made on the fly."""

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from cnnlab.data import DataInfo

CLASSES = ("horizontal stripes", "vertical stripes", "checks")


def patterns(count: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (count, 1, size, size) images of the three kinds with random phase, period and noise; int64 labels."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(count) % len(CLASSES)
    period = torch.randint(2, 5, (count, 1, 1), generator=g)
    phase = torch.randint(0, 4, (count, 1, 1), generator=g)
    rows = torch.arange(size).view(1, size, 1).expand(count, size, size)
    cols = torch.arange(size).view(1, 1, size).expand(count, size, size)
    horizontal = ((rows + phase) // period) % 2
    vertical = ((cols + phase) // period) % 2
    checks = horizontal ^ vertical
    kind = labels.view(count, 1, 1)
    pattern = torch.where(kind == 0, horizontal, torch.where(kind == 1, vertical, checks)).float()
    noisy = pattern * 160 + 40 + torch.randn(count, size, size, generator=g) * 25
    return noisy.clamp(0, 255).to(torch.uint8).unsqueeze(1), labels


class PatternData(L.LightningDataModule):
    def __init__(self, train_count: int = 600, size: int = 16, batch_size: int = 32, seed: int = 0) -> None:
        super().__init__()
        self.train_count, self.size, self.batch_size, self.seed = train_count, size, batch_size, seed
        # What cnnlab needs to size the model (its DataModule contract); here known without loading anything.
        self.info = DataInfo(name="patterns", num_classes=3, in_chans=1, image_size=(size, size),
                             class_names=CLASSES, mean=(0.5,), std=(0.3,))  # fmt: skip

    def setup(self, stage: str | None = None) -> None:
        self.train = TensorDataset(*patterns(self.train_count, self.size, self.seed))
        self.val = TensorDataset(*patterns(120, self.size, self.seed + 1))
        self.test = TensorDataset(*patterns(150, self.size, self.seed + 2))

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val, batch_size=64)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.test, batch_size=64)
