"""The pictures of cnnlab explain: CAM overlays with the predictions, the sanity-check cascade, feature maps by
stage, the first layer's filters. Colour maps by pytorch-grad-cam (OpenCV's), layout by cnnlab.utils.figures."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from pytorch_grad_cam.utils.image import show_cam_on_image

from cnnlab.inspection.cams import SanityStep
from cnnlab.utils.figures import image_grid


def overlays(images: torch.Tensor, maps: np.ndarray) -> torch.Tensor:
    """uint8 images (N, C, H, W) with their maps (N, H, W) in 0..1 laid over them as a heat map: uint8 (N, 3, H, W)."""
    pictures = [show_cam_on_image(image.permute(1, 2, 0).numpy().astype(np.float32) / 255, cam, use_rgb=True)
                for image, cam in zip(_rgb(images), maps, strict=True)]  # fmt: skip
    return torch.from_numpy(np.stack(pictures)).permute(0, 3, 1, 2).contiguous()


def cam_grid(images: torch.Tensor, maps: np.ndarray, names: Sequence[str], captions: Sequence[str],
             title: str) -> Image.Image:  # fmt: skip
    """Each image beside its overlay: the file's name under the image, the predictions under the overlay."""
    tiles = [t for pair in zip(_rgb(images), overlays(images, maps), strict=True) for t in pair]
    texts = [t for pair in zip(names, captions, strict=True) for t in pair]
    return image_grid(tiles, texts, columns=8, tile=128, title=title)


def sanity_grid(images: torch.Tensor, trained: np.ndarray, steps: Sequence[SanityStep], title: str) -> Image.Image:
    """One row per image: the image, the trained model's map, then the map after each randomization step (rho)."""
    columns = 2 + len(steps)
    tiles, texts = [], []
    stacks = [overlays(images, trained), *(overlays(images, step.maps) for step in steps)]
    for i, image in enumerate(_rgb(images)):
        tiles += [image, stacks[0][i], *(stack[i] for stack in stacks[1:])]
        texts += ["image", "trained", *(f"{step.randomized.split(' (')[0]}\nrho {step.rho[i]:.2f}" for step in steps)]
    return image_grid(tiles, texts, columns=columns, tile=96, title=title)


def channel_grid(maps: torch.Tensor, channels: Sequence[int], title: str) -> Image.Image:
    """A stage's strongest channels (uint8 (k, 1, H, W)), each captioned with its index."""
    return image_grid(maps, [f"ch {c}" for c in channels], columns=8, tile=64, title=title)


def filter_grid(kernels: torch.Tensor, title: str) -> Image.Image:
    """The first conv's kernels (uint8 (O, 1 or 3, k, k)), blown up without smoothing."""
    return image_grid(kernels, [str(i) for i in range(len(kernels))], columns=16, tile=40, title=title)


def _rgb(images: torch.Tensor) -> torch.Tensor:
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images[:, :3]
