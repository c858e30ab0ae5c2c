"""DataModules: in-memory uint8 tensors, batched by index slicing."""

from cnnlab.data.base import InMemoryDataModule
from cnnlab.data.digits import DigitsDataModule
from cnnlab.data.hf import HuggingFaceDataModule
from cnnlab.data.image_folder import ImageFolderDataModule
from cnnlab.data.info import DataInfo, DescribesItsData, describe_data
from cnnlab.data.mnist_family import FashionMNISTDataModule, MNISTDataModule
from cnnlab.data.shards import StreamingDataModule
from cnnlab.data.torchvision_sets import TorchvisionDataModule

__all__ = [
    "DataInfo",
    "DescribesItsData",
    "DigitsDataModule",
    "FashionMNISTDataModule",
    "HuggingFaceDataModule",
    "ImageFolderDataModule",
    "InMemoryDataModule",
    "MNISTDataModule",
    "StreamingDataModule",
    "TorchvisionDataModule",
    "describe_data",
]
