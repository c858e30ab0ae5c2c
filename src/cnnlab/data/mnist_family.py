"""MNIST and Fashion-MNIST from their IDX files, found offline first.

Resolution order: `<data_dir>/<Folder>/raw/` (torchvision's layout) -> each of `system_dirs` ->
torchvision's download when `download=true` -> an error that lists every place looked and how to fix it.
"""

from __future__ import annotations

from pathlib import Path

import torch

from cnnlab.data.base import InMemoryDataModule
from cnnlab.data.idx import read_idx
from cnnlab.errors import CnnlabError

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def find_idx_files(directory: Path) -> dict[str, Path] | list[str]:
    """The four IDX files in `directory` (each .gz or not), or the names that are missing."""
    found, missing = {}, []
    for key, stem in IDX_FILES.items():
        candidates = [directory / stem, directory / f"{stem}.gz"]
        path = next((c for c in candidates if c.is_file()), None)
        if path is None:
            missing.append(stem)
        else:
            found[key] = path
    return missing if missing else found


class IdxDataModule(InMemoryDataModule):
    """A dataset shipped as the four standard IDX files. Subclasses name the folder and the classes."""

    folder = ""  # torchvision's folder name under data_dir, e.g. "MNIST"
    install_hint = ""  # how to get the files offline, for the error message

    def _torchvision_dataset(self):  # pragma: no cover - needs the internet
        raise NotImplementedError

    def _candidate_dirs(self) -> list[Path]:
        return [self.data_dir / self.folder / "raw", *self.system_dirs]

    def _resolve(self) -> dict[str, Path] | list[str]:
        """Returns the files of the first complete directory, or one report line per place looked."""
        report = []
        for directory in self._candidate_dirs():
            result = find_idx_files(directory)
            if isinstance(result, dict):
                return result
            state = "no such directory" if not directory.is_dir() else "missing " + ", ".join(result)
            report.append(f"{directory} ({state})")
        return report

    def prepare_data(self) -> None:
        if isinstance(self._resolve(), dict) or not self.download:
            return
        try:
            self._torchvision_dataset()(root=str(self.data_dir), train=True, download=True)
            self._torchvision_dataset()(root=str(self.data_dir), train=False, download=True)
        except Exception as err:  # network errors come in many types; the report below says what to do
            raise CnnlabError(
                f"downloading {self.display_name} into {self.data_dir / self.folder / 'raw'} failed: {err}. "
                f"{self.install_hint}"
            ) from err

    def load(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        files = self._resolve()
        if not isinstance(files, dict):
            looked = "\n".join(f"  - {line}" for line in files)
            download = (
                "download was tried and did not produce the files"
                if self.download
                else "download is off (data.download=false)"
            )
            raise CnnlabError(
                f"{self.display_name} not found. Looked for {', '.join(IDX_FILES.values())} (.gz or not) in:\n"
                f"{looked}\n  - {download}\n"
                f"Fix one of: {self.install_hint}; put the four files in {self._candidate_dirs()[0]}; "
                "or allow the download with data.download=true (needs the internet)."
            )
        images = {k: read_idx(files[k]) for k in ("train_images", "test_images")}
        labels = {k: read_idx(files[k]) for k in ("train_labels", "test_labels")}
        for split in ("train", "test"):
            x, y = images[f"{split}_images"], labels[f"{split}_labels"]
            if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
                raise CnnlabError(
                    f"{files[f'{split}_images']} holds {tuple(x.shape)} images but "
                    f"{files[f'{split}_labels']} holds {tuple(y.shape)} labels: they must be (N, H, W) and (N,) "
                    "with the same N. The two files come from different datasets or one is damaged."
                )
            if int(y.max()) >= len(self.class_names):
                raise CnnlabError(
                    f"{files[f'{split}_labels']} has label {int(y.max())}, but {self.display_name} has "
                    f"{len(self.class_names)} classes. The file belongs to another dataset."
                )
        return (
            images["train_images"].unsqueeze(1),
            labels["train_labels"].long(),
            images["test_images"].unsqueeze(1),
            labels["test_labels"].long(),
        )


class MNISTDataModule(IdxDataModule):
    display_name = "MNIST"
    folder = "MNIST"
    class_names = tuple(str(i) for i in range(10))
    install_hint = "copy the four MNIST IDX files from any mirror"

    def _torchvision_dataset(self):  # pragma: no cover - needs the internet
        from torchvision.datasets import MNIST  # lazy: torchvision's datasets, for the online download alone

        return MNIST


class FashionMNISTDataModule(IdxDataModule):
    display_name = "Fashion-MNIST"
    folder = "FashionMNIST"
    class_names = (
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    )  # fmt: skip
    install_hint = "on Debian/Ubuntu `sudo apt-get install dataset-fashion-mnist`"

    def _torchvision_dataset(self):  # pragma: no cover - needs the internet
        from torchvision.datasets import FashionMNIST  # lazy: as MNIST's

        return FashionMNIST
