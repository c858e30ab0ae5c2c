"""Pictures of results, drawn with PIL alone (no plotting library needed)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image, ImageDraw


def to_pil(image: torch.Tensor):
    array = image.permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array).convert("RGB")


def image_grid(images: torch.Tensor, captions: Sequence[str], columns: int = 8, tile: int = 96):
    """uint8 images (N, C, H, W) as a grid of `tile`-pixel tiles, each with its caption underneath."""
    rows = max(1, -(-len(images) // columns))
    caption_height = 14
    grid = Image.new("RGB", (columns * tile, rows * (tile + caption_height)), "white")
    draw = ImageDraw.Draw(grid)
    for i, (image, caption) in enumerate(zip(images, captions, strict=True)):
        x, y = (i % columns) * tile, (i // columns) * (tile + caption_height)
        grid.paste(to_pil(image).resize((tile - 4, tile - 4), Image.NEAREST), (x + 2, y + 2))
        draw.text((x + 2, y + tile), caption[:18], fill="black")
    return grid
