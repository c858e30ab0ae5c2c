"""The classification head, sized from the backbone's feature width and the data's class count."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


def build_head(in_features: int, num_classes: int, hidden: Sequence[int] = (), dropout: float = 0.0) -> nn.Sequential:
    """Linear (hidden=[]) or MLP: [Linear -> ReLU] per hidden width, then Dropout -> Linear(classes)."""
    layers: list[nn.Module] = []
    width = in_features
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU(inplace=True)]
        width = h
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)
