"""Batches of an in-memory dataset by index slicing: no per-sample Python work, no collate, no workers."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch


class TensorBatches:
    """An iterable Lightning accepts as a dataloader, over (images, labels) tensors held in memory.

    Shuffling is seeded by `seed + epoch`, so a given epoch always sees the same order. `state_dict` /
    `load_state_dict` (which Lightning saves in checkpoints) record how far into its epoch the iteration got,
    so a run resumed mid-epoch takes exactly the batches the uninterrupted run would have taken.
    Under DDP each rank takes a strided shard of the order; for training the shards are padded to equal
    length (as `DistributedSampler` does) so every rank runs the same number of steps.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        epoch: Callable[[], int] = lambda: 0,
        rank: int = 0,
        world_size: int = 1,
        pad_shards: bool = False,
    ) -> None:
        self.images, self.labels = images, labels
        self.batch_size, self.shuffle, self.seed, self.epoch = batch_size, shuffle, seed, epoch
        self.rank, self.world_size, self.pad_shards = rank, world_size, pad_shards
        self._epoch_seen, self._yielded = 0, 0  # the current iteration: its epoch, batches handed out
        self._resume_at: dict[str, int] | None = None

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self._epoch_seen, "batches": self._yielded}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._resume_at = dict(state)

    def _order(self) -> torch.Tensor:
        n = len(self.labels)
        if self.shuffle:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed + self.epoch()))
        else:
            order = torch.arange(n)
        if self.world_size > 1:
            if self.pad_shards and n % self.world_size:
                order = torch.cat([order, order[: self.world_size - n % self.world_size]])
            order = order[self.rank :: self.world_size]
        return order.to(self.labels.device)

    def _num_samples(self) -> int:
        n = len(self.labels)
        if self.world_size == 1:
            return n
        if self.pad_shards:
            return -(-n // self.world_size)
        return len(range(self.rank, n, self.world_size))

    def __len__(self) -> int:
        return -(-self._num_samples() // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self._epoch_seen, self._yielded = self.epoch(), 0
        resume, self._resume_at = self._resume_at, None
        if resume is not None and resume["epoch"] == self._epoch_seen:
            self._yielded = resume["batches"]  # the batches before the interruption were already trained on
        order = self._order()
        for start in range(self._yielded * self.batch_size, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            self._yielded += 1
            yield self.images[idx], self.labels[idx]
