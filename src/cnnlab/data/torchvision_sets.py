"""torchvision's classification datasets - CIFAR-10/100, SVHN, STL-10, the MNIST family, ... - held in memory as
one uint8 tensor, like Fashion-MNIST.

CIFAR comes in two layouts: the binary one (`cifar-10-batches-bin/`, `cifar-100-binary/`) is raw bytes and is read
as such; the python one (`cifar-10-batches-py/`, `cifar-100-python/`, what torchvision downloads) is pickles, read
with an unpickler that builds arrays and nothing else, so a crafted batch is refused by name and nothing in it runs
(torchvision's own CIFAR class would `pickle.load` it). Every other dataset goes through its torchvision class, whose
readers do not unpickle (IDX, .mat, raw binary): files in `data_dir`, or `download=true`.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cnnlab.data.base import InMemoryDataModule
from cnnlab.data.checks import check_data
from cnnlab.data.info import DataInfo
from cnnlab.errors import CnnlabError, Problems
from cnnlab.utils.io import unpickle_arrays

CIFAR_SIDE = 32


@dataclass(frozen=True)
class CifarLayout:
    """Where a CIFAR dataset's files are and what they are called, in both layouts."""

    python_dir: str
    python_train: tuple[str, ...]
    python_test: str
    python_meta: str
    names_key: str
    labels_key: str
    binary_dir: str
    binary_train: tuple[str, ...]
    binary_test: str
    binary_names: str
    label_bytes: int  # CIFAR-100's binary records carry (coarse, fine) labels; the fine one is the class


CIFAR = {
    "CIFAR10": CifarLayout("cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)), "test_batch",
                           "batches.meta", "label_names", "labels", "cifar-10-batches-bin",
                           tuple(f"data_batch_{i}.bin" for i in range(1, 6)), "test_batch.bin", "batches.meta.txt", 1),
    "CIFAR100": CifarLayout("cifar-100-python", ("train",), "test", "meta", "fine_label_names", "fine_labels",
                            "cifar-100-binary", ("train.bin",), "test.bin", "fine_label_names.txt", 2),
}  # fmt: skip


class TorchvisionDataModule(InMemoryDataModule):
    """`name`: a torchvision dataset class (CIFAR10, CIFAR100, SVHN, STL10, MNIST, KMNIST, ...). `mean` / `std`:
    the published statistics to normalise with (null: measured on the training split, as for every dataset)."""

    def __init__(self, name: str = "CIFAR10", mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, **kwargs) -> None:  # fmt: skip
        super().__init__(**kwargs)
        problems = Problems()
        check_data(dict(mean=mean, std=std), problems)
        problems.raise_if_any(f"invalid data=torchvision configuration for {name}")
        self.name = str(name)
        self.display_name = self.name
        self.mean, self.std = mean, std
        self.class_names: tuple[str, ...] = ()

    def prepare_data(self) -> None:
        if self.name in CIFAR and self.download and not self._cifar_dir():
            self._torchvision_class()(root=str(self.data_dir), train=True, download=True)  # the python layout

    def load(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        return self._load_cifar() if self.name in CIFAR else self._load_with_torchvision()

    def _describe(self, train_images: torch.Tensor) -> DataInfo:
        info = super()._describe(train_images)
        if self.mean is None or self.std is None:
            return info
        return DataInfo(**{**info.__dict__, "mean": tuple(map(float, self.mean)), "std": tuple(map(float, self.std))})

    # --- CIFAR --------------------------------------------------------------------------------------
    def _cifar_dir(self) -> tuple[str, Path] | None:
        """("binary" | "python", the folder) of the first complete copy under data_dir, binary first."""
        layout = CIFAR[self.name]
        binary = self.data_dir / layout.binary_dir
        if all((binary / f).is_file() for f in (*layout.binary_train, layout.binary_test)):
            return "binary", binary
        python = self.data_dir / layout.python_dir
        if all((python / f).is_file() for f in (*layout.python_train, layout.python_test, layout.python_meta)):
            return "python", python
        return None

    def _load_cifar(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        layout, found = CIFAR[self.name], self._cifar_dir()
        if found is None:
            raise CnnlabError(
                f"{self.name} not found under data.data_dir={str(self.data_dir)!r}: cnnlab looks for "
                f"{layout.binary_dir}/ (the binary version) or {layout.python_dir}/ (the python version, what "
                f"torchvision downloads), with all their files. Fix one of: unpack the dataset's archive there; point "
                f"data.data_dir at the folder that holds it; or allow the download with data.download=true (needs "
                "the internet)."
            )
        kind, folder = found
        read = self._read_cifar_binary if kind == "binary" else self._read_cifar_python
        train = [read(folder / f) for f in (layout.binary_train if kind == "binary" else layout.python_train)]
        test = read(folder / (layout.binary_test if kind == "binary" else layout.python_test))
        self.class_names = self._cifar_names(kind, folder)
        images = torch.cat([x for x, _ in train])
        labels = torch.cat([y for _, y in train])
        if int(max(labels.max(), test[1].max())) >= len(self.class_names):
            raise CnnlabError(f"{folder} has labels beyond its {len(self.class_names)} class names: the files come "
                              "from different datasets or are damaged.")  # fmt: skip
        return images, labels, test[0], test[1]

    def _read_cifar_binary(self, path: Path) -> tuple[torch.Tensor, torch.Tensor]:
        label_bytes = CIFAR[self.name].label_bytes
        record = label_bytes + 3 * CIFAR_SIDE * CIFAR_SIDE
        raw = np.fromfile(path, dtype=np.uint8)
        if raw.size % record:
            raise CnnlabError(f"{path} is {raw.size} bytes, not a whole number of {self.name} records of {record}: "
                              "the file is damaged or from another dataset.")  # fmt: skip
        rows = raw.reshape(-1, record)
        images = rows[:, label_bytes:].reshape(-1, 3, CIFAR_SIDE, CIFAR_SIDE)
        return torch.from_numpy(images.copy()), torch.from_numpy(rows[:, label_bytes - 1].astype(np.int64))

    def _read_cifar_python(self, path: Path) -> tuple[torch.Tensor, torch.Tensor]:
        batch = unpickle_arrays(path, f"data={self.name.lower()}")
        key = CIFAR[self.name].labels_key
        data = batch.get("data") if isinstance(batch, dict) else None
        if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != 3 * CIFAR_SIDE**2 or key not in batch:
            raise CnnlabError(f"{path} is not a {self.name} python batch (a dict with `data` (N, 3072) uint8 and "
                              f"`{key}`): the file is damaged or from another dataset.")  # fmt: skip
        images = data.astype(np.uint8).reshape(-1, 3, CIFAR_SIDE, CIFAR_SIDE)
        return torch.from_numpy(images.copy()), torch.tensor(list(batch[key]), dtype=torch.long)

    def _cifar_names(self, kind: str, folder: Path) -> tuple[str, ...]:
        layout = CIFAR[self.name]
        if kind == "binary":
            names_file = folder / layout.binary_names
            if names_file.is_file():
                return tuple(line.strip() for line in names_file.read_text().splitlines() if line.strip())
            return tuple(str(i) for i in range(10 if self.name == "CIFAR10" else 100))
        meta = unpickle_arrays(folder / layout.python_meta, f"data={self.name.lower()}")
        return tuple(str(n) for n in meta[layout.names_key])

    # --- any other torchvision dataset -------------------------------------------------------------------
    def _torchvision_class(self) -> type:
        import torchvision.datasets  # lazy: torchvision's dataset classes, for this route alone

        cls = getattr(torchvision.datasets, self.name, None)
        if not (inspect.isclass(cls) and issubclass(cls, torch.utils.data.Dataset)):
            known = [n for n in torchvision.datasets.__all__ if n[0].isupper()]
            raise CnnlabError(f"data.name={self.name!r} is not a torchvision dataset class. Some: "
                              f"{', '.join(sorted(known)[:40])} ...")  # fmt: skip
        return cls

    def _load_with_torchvision(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        cls = self._torchvision_class()
        parameters = inspect.signature(cls).parameters
        if "train" in parameters:
            splits = ({"train": True}, {"train": False})
        elif "split" in parameters:
            splits = ({"split": "train"}, {"split": "test"})
        else:
            raise CnnlabError(f"data.name={self.name}: its class takes neither `train` nor `split`, so cnnlab cannot "
                              "tell its training split from its test split. Use data=image_folder for it.")  # fmt: skip
        try:
            train, test = (cls(root=str(self.data_dir), download=self.download, **kw) for kw in splits)
        except RuntimeError as err:  # torchvision: "Dataset not found or corrupted. You can use download=True ..."
            raise CnnlabError(
                f"{self.name} not found under data.data_dir={str(self.data_dir)!r} ({err}). Put its files where its "
                "torchvision class looks (usually <data_dir>/<name>/ or <data_dir>/<name>/raw/), or allow the "
                "download with data.download=true (needs the internet)."
            ) from err
        classes = getattr(train, "classes", None)
        x, y = as_tensors(train)
        tx, ty = as_tensors(test)
        count = int(max(y.max(), ty.max())) + 1
        self.class_names = (
            tuple(map(str, classes)) if classes and len(classes) >= count else tuple(map(str, range(count)))
        )
        return x, y, tx, ty


def as_tensors(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (N, C, H, W) images and int64 labels of a torchvision dataset whose items are (PIL image, int)."""
    images, labels = [], []
    for index in range(len(dataset)):
        image, label = dataset[index]
        array = np.asarray(image, dtype=np.uint8)
        images.append(array[None] if array.ndim == 2 else array.transpose(2, 0, 1))
        labels.append(int(label))
    return torch.from_numpy(np.stack(images)), torch.tensor(labels, dtype=torch.long)
