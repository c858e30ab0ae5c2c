"""Seeded, class-balanced index selection: the same seed always gives the same split."""

from __future__ import annotations

import torch


def stratified_split(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split indices into (rest, held_out) with about `fraction` of every class held out."""
    generator = torch.Generator().manual_seed(seed)
    rest, held = [], []
    for cls in torch.unique(labels):
        idx = torch.nonzero(labels == cls).flatten()
        idx = idx[torch.randperm(len(idx), generator=generator)]
        n_held = round(len(idx) * fraction)
        held.append(idx[:n_held])
        rest.append(idx[n_held:])
    return torch.cat(rest).sort().values, torch.cat(held).sort().values


def balanced_subset(labels: torch.Tensor, size: int, seed: int) -> torch.Tensor:
    """Pick `size` indices with class counts as equal as the data allows (seeded)."""
    generator = torch.Generator().manual_seed(seed)
    classes = torch.unique(labels)
    pools = [torch.nonzero(labels == c).flatten() for c in classes]
    pools = [p[torch.randperm(len(p), generator=generator)] for p in pools]
    quota = [0] * len(pools)
    remaining = size
    # Round-robin in a seeded class order, so a remainder does not always favour class 0.
    order = torch.randperm(len(pools), generator=generator).tolist()
    while remaining > 0:
        progressed = False
        for i in order:
            if remaining and quota[i] < len(pools[i]):
                quota[i] += 1
                remaining -= 1
                progressed = True
        if not progressed:
            break
    chosen = torch.cat([pool[:q] for pool, q in zip(pools, quota, strict=True)])
    return chosen.sort().values


def stratified_folds(labels: torch.Tensor, folds: int, seed: int) -> list[torch.Tensor]:
    """`folds` disjoint index sets that together cover `labels`, each with about 1/folds of every class (seeded:
    the same seed always gives the same folds). Each class is shuffled, then dealt round-robin from a seeded
    starting fold, so fold sizes differ by at most one per class."""
    generator = torch.Generator().manual_seed(seed)
    parts: list[list[torch.Tensor]] = [[] for _ in range(folds)]
    for cls in torch.unique(labels):
        idx = torch.nonzero(labels == cls).flatten()
        idx = idx[torch.randperm(len(idx), generator=generator)]
        start = int(torch.randint(folds, (1,), generator=generator))
        for fold in range(folds):
            parts[(start + fold) % folds].append(idx[fold::folds])
    return [torch.cat(p).sort().values for p in parts]
