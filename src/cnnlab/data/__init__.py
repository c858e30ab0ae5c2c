"""DataModules: in-memory uint8 tensors, batched by index slicing."""

from cnnlab.data.base import DataInfo, InMemoryDataModule
from cnnlab.data.digits import DigitsDataModule
from cnnlab.data.image_folder import ImageFolderDataModule
from cnnlab.data.mnist_family import FashionMNISTDataModule, MNISTDataModule

__all__ = [
    "DataInfo",
    "DigitsDataModule",
    "FashionMNISTDataModule",
    "ImageFolderDataModule",
    "InMemoryDataModule",
    "MNISTDataModule",
]
