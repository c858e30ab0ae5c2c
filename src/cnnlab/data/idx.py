"""Reader for the IDX format of MNIST-style datasets (http://yann.lecun.com/exdb/mnist/)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from cnnlab.errors import CnnlabError

# Third byte of the magic number -> element type; every MNIST-family file uses 0x08 (uint8).
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> torch.Tensor:
    """Read one IDX file (gzip-compressed or not) into a tensor of its stored shape."""
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise CnnlabError(f"cannot read IDX file {path}: {err}. Replace it with an intact copy.") from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES or raw[3] == 0:
        raise CnnlabError(
            f"{path} is not an IDX file (bad magic number {raw[:4].hex() or 'empty'}; expected 0000 08 0n). "
            "Replace it with the original dataset file."
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise CnnlabError(
            f"{path} is truncated or padded: header says shape {shape} ({expected} bytes) but the file holds "
            f"{len(raw)} bytes. Download or copy it again."
        )
    array = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return torch.from_numpy(array.astype(dtype.newbyteorder("="), copy=True))
