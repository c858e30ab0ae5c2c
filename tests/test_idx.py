import gzip
from pathlib import Path

import pytest
import torch

from cnnlab.data.idx import read_idx
from cnnlab.errors import CnnlabError


def write_idx(path: Path, tensor: torch.Tensor, compress: bool = False) -> Path:
    header = bytes([0, 0, 0x08, tensor.ndim]) + b"".join(d.to_bytes(4, "big") for d in tensor.shape)
    raw = header + tensor.to(torch.uint8).numpy().tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)
    return path


@pytest.mark.parametrize("compress", [False, True])
def test_round_trip(tmp_path, compress):
    images = torch.randint(0, 256, (7, 5, 3), dtype=torch.uint8)
    name = "x-idx3-ubyte.gz" if compress else "x-idx3-ubyte"
    assert torch.equal(read_idx(write_idx(tmp_path / name, images, compress)), images)


def test_labels_are_1d(tmp_path):
    labels = torch.tensor([3, 1, 4, 1, 5], dtype=torch.uint8)
    assert read_idx(write_idx(tmp_path / "y", labels)).tolist() == [3, 1, 4, 1, 5]


def test_real_fashion_files(fashion_dir):
    images = read_idx(fashion_dir / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(fashion_dir / "t10k-labels-idx1-ubyte.gz")
    assert images.shape == (10000, 28, 28) and images.dtype == torch.uint8
    assert torch.bincount(labels.long()).tolist() == [1000] * 10


def test_wrong_magic_names_file(tmp_path):
    bad = tmp_path / "bad-idx3-ubyte"
    bad.write_bytes(b"\x1f\x8b\x08\x00" + bytes(20))
    with pytest.raises(CnnlabError, match=r"bad-idx3-ubyte is not an IDX file"):
        read_idx(bad)


def test_truncated_file_names_shape(tmp_path):
    path = write_idx(tmp_path / "t-idx3-ubyte", torch.zeros(4, 2, 2))
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(CnnlabError, match=r"truncated.*\(4, 2, 2\)"):
        read_idx(path)


def test_truncated_gzip(tmp_path):
    path = write_idx(tmp_path / "t-idx3-ubyte.gz", torch.zeros(40, 8, 8), compress=True)
    path.write_bytes(path.read_bytes()[:30])
    with pytest.raises(CnnlabError, match=r"cannot read IDX file .*t-idx3-ubyte.gz"):
        read_idx(path)


def test_empty_file(tmp_path):
    (tmp_path / "e").write_bytes(b"")
    with pytest.raises(CnnlabError, match="bad magic number empty"):
        read_idx(tmp_path / "e")
