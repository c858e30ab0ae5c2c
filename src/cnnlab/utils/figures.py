"""Pictures of results, drawn with PIL alone (no plotting library needed)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from PIL import Image, ImageDraw


def to_pil(image: torch.Tensor):
    array = image.permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array).convert("RGB")


def image_grid(images: torch.Tensor | Sequence[torch.Tensor], captions: Sequence[str], columns: int = 8,
               tile: int = 96, title: str = ""):  # fmt: skip
    """uint8 images (N, C, H, W) as a grid of `tile`-pixel tiles, each with its caption underneath (several lines where
    it holds newlines), under an optional title line."""
    rows = max(1, -(-len(images) // columns))
    line = 12
    caption_height = line * max((c.count("\n") + 1 for c in captions), default=1) + 2
    top = line + 4 if title else 0
    grid = Image.new("RGB", (columns * tile, top + rows * (tile + caption_height)), "white")
    draw = ImageDraw.Draw(grid)
    if title:
        draw.text((2, 2), title, fill="black")
    width = max(4, (tile - 4) // 5)  # characters of PIL's default font that fit under a tile
    for i, (image, caption) in enumerate(zip(images, captions, strict=True)):
        x, y = (i % columns) * tile, top + (i // columns) * (tile + caption_height)
        grid.paste(to_pil(image).resize((tile - 4, tile - 4), Image.NEAREST), (x + 2, y + 2))
        for j, text in enumerate(caption.split("\n")):
            draw.text((x + 2, y + tile + j * line), text[:width], fill="black")
    return grid


def interval_plot(groups: Sequence[tuple[str, Sequence[float], float, float, float]], metric: str,
                  width: int = 720, row: int = 28) -> Image.Image:  # fmt: skip
    """One row per group (label, its runs' values, mean, interval low, interval high): each run a dot, the mean a
    tick, the 95% interval a bar, on one shared axis; drawn with PIL alone."""
    values = [v for _, runs, mean, low, high in groups for v in (*runs, mean, low, high) if v == v]  # drop nan
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    pad = (hi - lo) * 0.05 or 0.01
    lo, hi = lo - pad, hi + pad
    left, right, top = 300, width - 20, 30
    image = Image.new("RGB", (width, top + row * len(groups) + 30), "white")
    draw = ImageDraw.Draw(image)

    def x(value: float) -> float:
        return left + (value - lo) / (hi - lo) * (right - left)

    draw.text((10, 8), f"{metric}: runs (dots), mean (tick), 95% interval (bar)", fill="black")
    for i, (label, runs, mean, low, high) in enumerate(groups):
        y = top + row * i + row // 2
        draw.text((10, y - 6), label[:44], fill="black")
        if low == low and high == high:  # an interval exists (n >= 2)
            draw.line([(x(low), y), (x(high), y)], fill=(8, 48, 107), width=3)
        draw.line([(x(mean), y - 8), (x(mean), y + 8)], fill=(8, 48, 107), width=2)
        for value in runs:
            draw.ellipse([x(value) - 3, y - 3, x(value) + 3, y + 3], fill=(230, 85, 13))
    axis_y = top + row * len(groups) + 8
    draw.line([(left, axis_y), (right, axis_y)], fill="grey")
    for value in (lo + pad, (lo + hi) / 2, hi - pad):
        draw.text((x(value) - 20, axis_y + 4), f"{value:.4f}", fill="black")
    return image


def log_x_curve(xs: Sequence[float], ys: Sequence[float], marked: float | None, title: str, x_label: str,
                y_label: str, width: int = 720, height: int = 420) -> Image.Image:  # fmt: skip
    """A line of (x, y) on a log-x axis, a red dot at x = `marked`; drawn with PIL alone (matplotlib is not a
    dependency of the core package). Non-finite points are dropped."""
    points = [(x, y) for x, y in zip(xs, ys, strict=True) if x > 0 and math.isfinite(y)]
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.text((10, 8), title, fill="black")
    if len(points) < 2:
        draw.text((10, 30), "too few finite points to draw", fill="black")
        return image
    left, right, top, bottom = 70, width - 20, 30, height - 40
    lx = [math.log10(x) for x, _ in points]
    ys_ = [y for _, y in points]
    x0, x1, y0, y1 = min(lx), max(lx), min(ys_), max(ys_)
    y1 = y1 if y1 > y0 else y0 + 1

    def at(log_x: float, y: float) -> tuple[float, float]:
        return (left + (log_x - x0) / ((x1 - x0) or 1) * (right - left), bottom - (y - y0) / (y1 - y0) * (bottom - top))

    draw.line([at(a, b) for a, b in zip(lx, ys_, strict=True)], fill=(8, 48, 107), width=2)
    draw.line([(left, bottom), (right, bottom)], fill="grey")
    draw.line([(left, top), (left, bottom)], fill="grey")
    for decade in range(math.ceil(x0), math.floor(x1) + 1):
        px, _ = at(decade, y0)
        draw.line([(px, bottom), (px, bottom + 4)], fill="grey")
        draw.text((px - 12, bottom + 6), f"1e{decade}", fill="black")
    for value in (y0, (y0 + y1) / 2, y1):
        draw.text((8, at(x0, value)[1] - 6), f"{value:.3g}", fill="black")
    draw.text((right - 120, bottom + 22), x_label, fill="black")
    draw.text((8, top - 2 + 12), y_label, fill="black")
    if marked is not None and marked > 0:
        nearest = min(points, key=lambda p: abs(math.log10(p[0]) - math.log10(marked)))
        cx, cy = at(math.log10(nearest[0]), nearest[1])
        draw.ellipse([cx - 5, cy - 5, cx + 5, cy + 5], fill=(220, 30, 30))
        draw.text((cx + 8, cy - 16), f"{marked:.3g}", fill=(220, 30, 30))
    return image
