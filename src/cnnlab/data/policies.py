"""RandAugment and TrivialAugment(Wide) on a whole uint8 batch on its device, each image with its own ops, signs and
magnitudes.

torchvision's `RandAugment` / `TrivialAugmentWide` draw one op for the whole tensor they get, so a batch would share
its ops; a Python loop over the images would cost more than the step on a GPU. Here every op is computed for the whole
batch with per-image magnitudes (tensors, not Python floats) and `torch.where` keeps it for the images that drew it;
the five geometric ops of a round fold into one per-image affine matrix and one `grid_sample`. The ops, magnitude
bins and pixel arithmetic are torchvision's (`transforms.v2`; its op tables are read, not copied), so each op gives
torchvision's output exactly - `tests/test_augment.py` checks every op against it. Grey images skip Color, as
torchvision's saturation does.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from cnnlab.data.augment_config import NUM_BINS

GEOMETRIC = ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")
# torchvision's op tables, one per name of cnnlab.data.augment_config.POLICIES:
# {name: (magnitudes(num_bins, height, width) -> bins or None, signed)}
SPACES = {
    "randaugment": v2.RandAugment._AUGMENTATION_SPACE,
    "trivialaugment": v2.TrivialAugmentWide._AUGMENTATION_SPACE,
}


@dataclass(frozen=True)
class Policy:
    """`data.augment.policy`: randaugment (`ops` ops per image at bin `magnitude` of 31) or trivialaugment (one
    op per image at a random bin, TrivialAugmentWide's ranges)."""

    name: str
    ops: int = 2
    magnitude: int = 9

    def __call__(self, images: torch.Tensor, fill: tuple[int, ...], generator: torch.Generator | None = None
                 ) -> torch.Tensor:  # fmt: skip
        space = SPACES[self.name]
        names = list(space)
        n, _, h, w = images.shape
        rounds = self.ops if self.name == "randaugment" else 1
        for _ in range(rounds):
            chosen = torch.randint(len(names), (n,), device=images.device, generator=generator)
            if self.name == "randaugment":
                bins = torch.full((n,), self.magnitude, device=images.device)
            else:
                bins = torch.randint(NUM_BINS, (n,), device=images.device, generator=generator)
            sign = torch.where(torch.rand(n, device=images.device, generator=generator) < 0.5, -1.0, 1.0)
            magnitudes = {}
            for name, (values_of_bins, signed) in _tables(self.name, h, w, images.device).items():
                values = values_of_bins[bins]
                magnitudes[name] = values * sign if signed else values
            images = apply_ops(images, names, chosen, magnitudes, fill)
        return images


@functools.cache
def _tables(policy: str, height: int, width: int, device: torch.device) -> dict[str, tuple[torch.Tensor, bool]]:
    """Each op's magnitude per bin (float, on `device`) and whether it takes a random sign; the ops without a
    magnitude (Identity, AutoContrast, Equalize) left out. Made once: a copy to a GPU every batch costs."""
    tables = {}
    for name, (table, signed) in SPACES[policy].items():
        bins = table(NUM_BINS, height, width)
        if bins is not None:
            tables[name] = (bins.float().to(device), signed)
    return tables


def apply_ops(images: torch.Tensor, names: list[str], chosen: torch.Tensor, magnitudes: dict[str, torch.Tensor],
              fill: tuple[int, ...]) -> torch.Tensor:  # fmt: skip
    """One round: image i gets op `names[chosen[i]]` at `magnitudes[op][i]`."""
    picked = {name: (chosen == i).view(-1, 1, 1, 1) for i, name in enumerate(names)}
    geometric = [name for name in names if name in GEOMETRIC]
    if geometric:
        matrices = _inverse_matrices(images, chosen, names, magnitudes)
        moved = _warp(images, matrices, fill)
        any_geometric = torch.stack([picked[name] for name in geometric]).any(0)
        images = torch.where(any_geometric, moved, images)
    out = images
    for name in names:
        if name in GEOMETRIC or name == "Identity":
            continue
        out = torch.where(picked[name], PIXEL_OPS[name](images, magnitudes.get(name)), out)
    return out


# --- geometric ops: torchvision's inverse affine matrices, one per image ------------------------------------------
def _inverse_matrices(images: torch.Tensor, chosen: torch.Tensor, names: list[str],
                      magnitudes: dict[str, torch.Tensor]) -> torch.Tensor:  # fmt: skip
    """(N, 2, 3) inverse affine matrices as torchvision's `_get_inverse_affine_matrix` builds them for its
    ShearX / ShearY (centre at the top-left corner), TranslateX / Y (whole pixels) and Rotate (about the centre,
    `rotate`'s sign); the identity for images whose op is not geometric."""
    n, _, h, w = images.shape
    zero = torch.zeros(n, device=images.device)

    def pick(name: str) -> torch.Tensor:
        if name not in names:
            return zero
        return torch.where(chosen == names.index(name), magnitudes[name], zero)

    shear_x = torch.rad2deg(torch.atan(pick("ShearX")))
    shear_y = torch.rad2deg(torch.atan(pick("ShearY")))
    tx, ty = pick("TranslateX").trunc(), pick("TranslateY").trunc()  # torchvision: int(magnitude)
    angle = -pick("Rotate")
    shearing = (chosen == names.index("ShearX")) | (chosen == names.index("ShearY"))
    cx = torch.where(shearing, -w * 0.5, 0.0)
    cy = torch.where(shearing, -h * 0.5, 0.0)
    rot, sx, sy = torch.deg2rad(angle), torch.deg2rad(shear_x), torch.deg2rad(shear_y)
    a = torch.cos(rot - sy) / torch.cos(sy)
    b = -torch.cos(rot - sy) * torch.tan(sx) / torch.cos(sy) - torch.sin(rot)
    c = torch.sin(rot - sy) / torch.cos(sy)
    d = -torch.sin(rot - sy) * torch.tan(sx) / torch.cos(sy) + torch.cos(rot)
    m0, m1, m3, m4 = d, -b, -c, a
    m2 = m0 * (-cx - tx) + m1 * (-cy - ty) + cx
    m5 = m3 * (-cx - tx) + m4 * (-cy - ty) + cy
    return torch.stack([m0, m1, m2, m3, m4, m5], 1).view(n, 2, 3)


def _warp(images: torch.Tensor, matrices: torch.Tensor, fill: tuple[int, ...]) -> torch.Tensor:
    """Nearest-neighbour resampling of each image by its matrix, outside pixels set to `fill` (torchvision's
    `_affine_grid` + `_apply_grid_transform`, batched over matrices)."""
    n, c, h, w = images.shape
    device = images.device
    xs = torch.linspace((1.0 - w) * 0.5, (w - 1.0) * 0.5, steps=w, device=device)
    ys = torch.linspace((1.0 - h) * 0.5, (h - 1.0) * 0.5, steps=h, device=device)
    base = torch.stack(torch.broadcast_tensors(xs[None, :], ys[:, None], torch.ones(1, 1, device=device)), -1)
    scale = torch.tensor([0.5 * w, 0.5 * h], device=device)
    grid = base.view(1, h * w, 3).expand(n, -1, -1).bmm(matrices.transpose(1, 2) / scale).view(n, h, w, 2)
    float_images = torch.cat([images.float(), torch.ones(n, 1, h, w, device=device)], 1)
    sampled = F.grid_sample(float_images, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    pixels, inside = sampled[:, :-1], sampled[:, -1:]
    fill_values = torch.tensor(fill if len(fill) == c else fill * c, dtype=torch.float32, device=device)
    pixels = torch.where(inside < 0.5, fill_values.view(1, -1, 1, 1), pixels)
    return pixels.round_().to(images.dtype)


# --- pixel ops: torchvision's arithmetic with a factor per image ----------------------------------------------------
def _per_image(values: torch.Tensor) -> torch.Tensor:
    return values.view(-1, 1, 1, 1)


def _blend(images: torch.Tensor, other: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
    """torchvision's `_blend` for uint8 at ratio 1 + magnitude: ratio * image + (1 - ratio) * other, clamped,
    truncated to uint8 (1 - ratio is -magnitude: computed so, it rounds as torchvision's double arithmetic does)."""
    magnitude = _per_image(magnitude)
    return (images.float() * (1.0 + magnitude) + other * -magnitude).clamp_(0, 255).to(images.dtype)


def _grey(images: torch.Tensor) -> torch.Tensor:
    """The grey image torchvision's saturation and contrast blend with (its rgb_to_grayscale, floored), as float."""
    if images.shape[1] == 1:
        return images.float()
    r, g, b = images.unbind(1)
    return r.mul(0.2989).add_(g, alpha=0.587).add_(b, alpha=0.114).floor_().unsqueeze(1)


def _brightness(images: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
    return (images.float() * _per_image(1.0 + magnitude)).clamp_(0, 255).to(images.dtype)


def _color(images: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
    return images if images.shape[1] == 1 else _blend(images, _grey(images), magnitude)


def _contrast(images: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
    mean = _grey(images).mean(dim=(-3, -2, -1), keepdim=True)
    return _blend(images, mean, magnitude)


def _sharpness(images: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
    """The image blended with its 3x3 smoothed self (centre weight 5/13), the border kept (torchvision)."""
    _, c, h, w = images.shape
    if h <= 2 or w <= 2:
        return images
    a, b = 1.0 / 13.0, 5.0 / 13.0
    kernel = torch.tensor([[a, a, a], [a, b, a], [a, a, a]], device=images.device).expand(c, 1, 3, 3)
    out = images.float()
    blurred = F.conv2d(out, kernel, groups=c).round_()
    inner = out[..., 1:-1, 1:-1]
    out[..., 1:-1, 1:-1] = inner + (blurred - inner) * _per_image(-magnitude)
    return out.clamp_(0, 255).to(images.dtype)


def _posterize(images: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    bits = bits.long()
    mask = (((1 << bits) - 1) << (8 - bits)).to(images.dtype)
    return images & _per_image(mask)


def _solarize(images: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
    return torch.where(images.float() >= _per_image(255.0 * magnitude), 255 - images, images)


PIXEL_OPS = {
    "Brightness": _brightness,
    "Color": _color,
    "Contrast": _contrast,
    "Sharpness": _sharpness,
    "Posterize": _posterize,
    "Solarize": _solarize,
    "AutoContrast": lambda images, _: TF.autocontrast(images),  # per image and channel already
    "Equalize": lambda images, _: TF.equalize(images),  # likewise
}
