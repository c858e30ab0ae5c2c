"""Image files -> uint8 tensors, the way every cnnlab model sees them: the formats cnnlab lists (PNG, JPEG, BMP, GIF,
TIFF, WebP, PPM/PGM/PBM) in any mode (grey, RGB, RGBA, palette, 16-bit, CMYK, ...) converted to the model's channels
and size.

Every image file is hostile input: it is opened only by the decoders of `IMAGE_FORMATS` (a PostScript file named
`.png` never reaches Pillow's EPS plugin, which would call Ghostscript), and its declared size is checked against a
pixel limit from the header alone, before any pixel is decoded (a 12000x12000 PNG of a few KB is refused, not
expanded into 432 MB). Only regular files are opened (a FIFO would hang the run), and a folder's files are only
those inside it (`inside`: a symlink leading out of the folder is left out).
"""

from __future__ import annotations

import glob
import io
import logging
import os
import warnings
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO

import numpy as np
import torch
from PIL import Image

from cnnlab.utils.files import RefusedFile, inside, real_root, require_regular_file

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm")
IMAGE_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP", "PPM")  # Pillow's names for the suffixes above
# 50 megapixels: a 48 MP phone photo passes; a decompression bomb (Pillow only warns below 89 MP) does not.
MAX_PIXELS = 50_000_000
# Pillow warns from 89 MP on; every such image is refused by the stricter check of open_image, so the warning is
# noise (and catch_warnings is not thread-safe in decode_many's threads).
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
log = logging.getLogger(__name__)


class ImageRefused(RefusedFile):
    """An image file cnnlab will not decode: a format it does not list, or more pixels than the limit."""


def open_image(source: str | Path | IO[bytes], max_pixels: int = MAX_PIXELS) -> Image.Image:
    """The image of a file (or a file object of its bytes), its header read and checked, nothing decoded yet.
    Raises ImageRefused for a format outside IMAGE_FORMATS or over `max_pixels` or a path that is not a regular file
    (a FIFO, a device), OSError for anything unreadable."""
    if isinstance(source, str | Path):
        require_regular_file(source)
    try:
        image = Image.open(source, formats=IMAGE_FORMATS)
    except Image.UnidentifiedImageError as err:
        raise ImageRefused(f"not an image in a format cnnlab reads ({', '.join(IMAGE_FORMATS)})") from err
    except Image.DecompressionBombError as err:  # Pillow's own limit (2 x 89 MP) is far above MAX_PIXELS
        raise ImageRefused(f"{err}; refused before decoding") from None
    if image.width * image.height > max_pixels:
        image.close()
        raise ImageRefused(f"{image.width}x{image.height} pixels is over the limit of {max_pixels:,} (max_pixels); "
                           "refused before decoding")  # fmt: skip
    return image


def expand_inputs(inputs: str | Sequence[str]) -> tuple[list[Path], list[Path]]:
    """A file, a directory (searched recursively for image files) or a glob; several with a list. Returns the files
    to read, and the files inside the given directories left out because their extension is not an image's
    (notes.txt, labels.csv): worth naming, not failures. A directory's files whose real path lies outside it (a
    symlink leading elsewhere) are left out too, named in one log line: a folder of inputs is read inside itself."""
    patterns = [inputs] if isinstance(inputs, str | Path) else list(inputs)
    found: list[Path] = []
    not_images: list[Path] = []
    outside: list[Path] = []
    for pattern in map(str, patterns):
        path = Path(pattern).expanduser()
        if path.is_dir():
            root = real_root(path)
            files = sorted(p for p in path.rglob("*") if p.is_file())
            kept = [inside(p, root) for p in files]
            outside += [p for p, keep in zip(files, kept, strict=True) if not keep]
            files = [p for p, keep in zip(files, kept, strict=True) if keep]
            found += [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
            not_images += [p for p in files if p.suffix.lower() not in IMAGE_SUFFIXES]
        elif path.is_file():
            found.append(path)
        else:
            found += sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
    if outside:
        log_outside(outside, "their input folder")
    return list(dict.fromkeys(found)), list(dict.fromkeys(not_images))


def log_outside(paths: Sequence[Path], where: str) -> None:
    """One log line naming the files (or folders) left out because they lead outside `where`."""
    names = ", ".join(f"{p} -> {os.path.realpath(p)}" for p in paths[:20]) + (" ..." if len(paths) > 20 else "")
    log.warning("left out %d path(s) leading outside %s (symlinks; cnnlab reads a folder only inside itself): %s",
                len(paths), where, names)  # fmt: skip


def decode_image(source: str | Path | IO[bytes], channels: int, size: Sequence[int],
                 max_pixels: int = MAX_PIXELS) -> torch.Tensor:  # fmt: skip
    """uint8 (channels, H, W). Raises OSError / ValueError for anything that is not a readable image, ImageRefused
    (a ValueError) for one cnnlab will not decode."""
    with open_image(source, max_pixels) as image:
        image.load()
        return image_to_tensor(image, channels, size)


def decode_image_bytes(data: bytes, channels: int, size: Sequence[int], max_pixels: int = MAX_PIXELS) -> torch.Tensor:
    """`decode_image` of a file's bytes held in memory (a shard item, a Hugging Face cell)."""
    return decode_image(io.BytesIO(data), channels, size, max_pixels)


def image_to_tensor(image: Image.Image, channels: int, size: Sequence[int]) -> torch.Tensor:
    """A PIL image of any mode as uint8 (channels, H, W) at `size` (height, width): what every model takes."""
    image = _to_8bit(image).convert("L" if channels == 1 else "RGB")
    if image.size != (size[1], size[0]):
        image = image.resize((size[1], size[0]), Image.BILINEAR, reducing_gap=None)
    array = np.asarray(image, dtype=np.uint8)
    array = array[:, :, None] if array.ndim == 2 else array
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


def png_bytes(image: torch.Tensor) -> bytes:
    """A uint8 (C, H, W) image as a lossless PNG file's bytes."""
    buffer = io.BytesIO()
    array = image.permute(1, 2, 0).numpy()
    Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array).save(buffer, format="PNG")
    return buffer.getvalue()


def _to_8bit(image):
    """16-bit and 32-bit grey images scaled to 0..255 (PIL's own convert('L') would clip them)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        return Image.fromarray(np.clip(array / top * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))  # transparent -> black, like the datasets' ground
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image


def decode_many(paths: Iterable[Path], channels: int, size: Sequence[int], max_pixels: int = MAX_PIXELS
                ) -> tuple[list[torch.Tensor], list[Path], dict[Path, str]]:  # fmt: skip
    """Decode every file, in parallel threads (PIL releases the GIL while decoding); the unreadable ones are
    returned with their error instead of stopping the rest. Order is kept. Each file's size is checked against
    `max_pixels` from its header before it is decoded, so the threads never expand several bombs at once."""

    def attempt(path: Path) -> torch.Tensor | str:
        try:
            return decode_image(path, channels, size, max_pixels)
        except Exception as err:  # PIL raises many types for broken files
            return f"{type(err).__name__}: {err}"

    paths = list(paths)
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        decoded = list(pool.map(attempt, paths))
    images = [d for d in decoded if isinstance(d, torch.Tensor)]
    good = [p for p, d in zip(paths, decoded, strict=True) if isinstance(d, torch.Tensor)]
    errors = {p: d for p, d in zip(paths, decoded, strict=True) if isinstance(d, str)}
    return images, good, errors
