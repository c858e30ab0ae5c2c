"""TensorBoard extras Lightning does not write: the hparams tab with final metrics, a confusion matrix."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from torch.utils.tensorboard.summary import hparams


def tensorboard_writers(loggers: Sequence[Logger]) -> list[Any]:
    return [lg.experiment for lg in loggers if isinstance(lg, TensorBoardLogger)]


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config -> {"a/b": scalar}; lists and None become strings (the hparams tab takes scalars)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}/"))
        elif isinstance(value, bool | int | float | str):
            flat[name] = value
        else:
            flat[name] = str(value)
    return flat


def log_hparams(loggers: Sequence[Logger], config: Mapping[str, Any], metrics: Mapping[str, float]) -> None:
    """Fill the hparams tab: this run's config beside its final metrics (tags already logged as scalars)."""
    writers = tensorboard_writers(loggers)
    if not writers:
        return
    experiment, session_start, session_end = hparams(flatten(config), dict(metrics))
    for writer in writers:
        file_writer = writer._get_file_writer()  # reopens it if Lightning closed it after fit/test
        for summary in (experiment, session_start, session_end):
            file_writer.add_summary(summary)
        writer.flush()


def render_confusion_matrix(matrix: torch.Tensor, cell: int = 16) -> torch.Tensor:
    """Row-normalised confusion matrix as a uint8 (3, H, W) heat map: white = 0, dark blue = 1."""
    rows = matrix.float() / matrix.sum(1, keepdim=True).clamp(min=1)
    low, high = torch.tensor([1.0, 1.0, 1.0]), torch.tensor([0.03, 0.19, 0.42])
    colours = low.view(3, 1, 1) + (high - low).view(3, 1, 1) * rows.unsqueeze(0)
    image = colours.repeat_interleave(cell, 1).repeat_interleave(cell, 2)
    image[:, ::cell, :] = 0.85  # grid lines
    image[:, :, ::cell] = 0.85
    return (image * 255).round().to(torch.uint8)


def confusion_markdown(matrix: torch.Tensor, class_names: Sequence[str]) -> str:
    header = "| true \\ predicted | " + " | ".join(class_names) + " |"
    rule = "|" + "---|" * (len(class_names) + 1)
    rows = [
        f"| {name} | " + " | ".join(str(int(v)) for v in row) + " |"
        for name, row in zip(class_names, matrix, strict=True)
    ]
    return "\n".join([header, rule, *rows])


def log_confusion_matrix(
    loggers: Sequence[Logger], matrix: torch.Tensor, class_names: Sequence[str], step: int
) -> None:
    for writer in tensorboard_writers(loggers):
        writer.add_image("test/confusion_matrix", render_confusion_matrix(matrix.cpu()), step)
        writer.add_text("test/confusion_matrix", confusion_markdown(matrix.cpu(), class_names), step)
        writer.flush()
