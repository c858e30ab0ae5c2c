"""TensorBoard extras Lightning does not write: the hparams tab with final metrics, a confusion matrix."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import yaml
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from PIL import Image, ImageDraw
from torch.utils.tensorboard.summary import hparams

from cnnlab import metrics as M
from cnnlab.utils.overrides import split_override


def tensorboard_writers(loggers: Sequence[Logger]) -> list[Any]:
    return [lg.experiment for lg in loggers if isinstance(lg, TensorBoardLogger)]


def flatten(config: Mapping[str, Any], prefix: str = "", sep: str = "/") -> dict[str, Any]:
    """Nested config -> {"a/b": scalar}; lists and None become strings (the hparams tab takes scalars)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}{sep}", sep))
        elif isinstance(value, bool | int | float | str):
            flat[name] = value
        else:
            flat[name] = str(value)
    return flat


# Shown in the hparams table of a run started without overrides (a run with overrides shows those).
ESSENTIAL_KEYS = ("model/backbone/name", "model/backbone/widths", "transfer/mode", "optimizer/lr", "data/batch_size",
                  "trainer/max_epochs")  # fmt: skip


def table_hparams(config: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """What the hparams table shows: the keys this run was given on the command line (in a sweep: its swept values),
    a group choice as its option name (`model=resnet18`), and the seed; the essentials when nothing was given. The
    whole config is logged as text beside it, so constants and `_target_` paths do not crowd the table."""
    flat = flatten(config)
    chosen: dict[str, Any] = {}
    for override in overrides:
        key, value = split_override(override)
        if key.startswith("hydra.") or key in ("ckpt_path",):
            continue
        path = key.replace(".", "/")
        chosen[path] = flat.get(path, value)  # a group choice (model=resnet18) is not a value: keep its name
    if not chosen:
        chosen = {key: flat[key] for key in ESSENTIAL_KEYS if key in flat}
    if "seed" in flat:
        chosen["seed"] = flat["seed"]
    return chosen


def log_hparams(loggers: Sequence[Logger], config: Mapping[str, Any], metrics: Mapping[str, float],
                overrides: Sequence[str] = ()) -> None:  # fmt: skip
    """Fill the hparams tab (the run's chosen values beside its final metrics) and log the whole config as text."""
    writers = tensorboard_writers(loggers)
    if not writers:
        return
    ordered = {k: metrics[k] for k in M.HEADLINE if k in metrics} | dict(metrics)  # the headline metrics first
    experiment, session_start, session_end = hparams(table_hparams(config, overrides), ordered)
    text = "```\n" + yaml.safe_dump(dict(config), sort_keys=False, width=120) + "```"
    for writer in writers:
        file_writer = writer._get_file_writer()  # reopens it if Lightning closed it after fit/test
        for summary in (experiment, session_start, session_end):
            file_writer.add_summary(summary)
        writer.add_text("config", text, 0)
        writer.flush()


def render_confusion_matrix(
    matrix: torch.Tensor, class_names: Sequence[str] | None = None, cell: int = 40
) -> torch.Tensor:
    """A confusion matrix as a uint8 (3, H, W) picture: rows are the true classes, columns the predicted ones, each
    cell coloured by its share of the row (white 0 -> dark blue 1) and labelled with its count; the class names on
    both axes (predicted ones written upwards)."""
    matrix = matrix.cpu().long()
    k = len(matrix)
    names = [str(n) for n in (class_names or range(k))]
    margin = 8 + 7 * min(18, max(len(n) for n in names))
    size = (margin + k * cell + 4, margin + k * cell + 4)
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    shares = matrix.float() / matrix.sum(1, keepdim=True).clamp(min=1)
    low, high = (255, 255, 255), (8, 48, 107)
    for i in range(k):
        draw.text((4, margin + i * cell + cell // 2 - 6), names[i][:18], fill="black")
        for j in range(k):
            share = float(shares[i, j])
            colour = tuple(round(a + (b - a) * share) for a, b in zip(low, high, strict=True))
            box = (margin + j * cell, margin + i * cell, margin + (j + 1) * cell, margin + (i + 1) * cell)
            draw.rectangle(box, fill=colour, outline=(215, 215, 215))
            count = str(int(matrix[i, j]))
            draw.text((box[0] + cell // 2 - 3 * len(count), box[1] + cell // 2 - 6), count,
                      fill="white" if share > 0.5 else "black")  # fmt: skip
    top = Image.new("RGB", (margin, k * cell), "white")
    top_draw = ImageDraw.Draw(top)
    for j in range(k):
        top_draw.text((4, j * cell + cell // 2 - 6), names[j][:18], fill="black")
    image.paste(top.rotate(90, expand=True), (margin, 0))
    draw.text((2, 2), "true \\ predicted", fill="grey")
    return torch.from_numpy(np.array(image)).permute(2, 0, 1).contiguous()


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
        writer.add_image(M.TEST_CONFUSION, render_confusion_matrix(matrix.cpu(), class_names), step)
        writer.add_text(M.TEST_CONFUSION, confusion_markdown(matrix.cpu(), class_names), step)
        writer.flush()
