"""scikit-learn's bundled 8x8 handwritten digits (1,797 images): no files, no network, seconds to train."""

from __future__ import annotations

import torch

from cnnlab.data.base import InMemoryDataModule
from cnnlab.data.splits import stratified_split


class DigitsDataModule(InMemoryDataModule):
    """The digits have no official test split: a seeded, stratified `test_fraction` is held out."""

    display_name = "digits"
    class_names = tuple(str(i) for i in range(10))

    def __init__(self, test_fraction: float = 0.2, **kwargs) -> None:
        super().__init__(**kwargs)
        self.test_fraction = test_fraction

    def load(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        from sklearn.datasets import load_digits  # lazy: scikit-learn costs ~1 s to import; only digits need it

        digits = load_digits()
        # Pixel values are 0..16; scale to the 0..255 of every other dataset.
        images = torch.from_numpy(digits.images * (255 / 16)).round().to(torch.uint8).unsqueeze(1)
        labels = torch.from_numpy(digits.target).long()
        train_idx, test_idx = stratified_split(labels, self.test_fraction, self.seed + 1)
        return images[train_idx], labels[train_idx], images[test_idx], labels[test_idx]
