"""DataModules: in-memory uint8 tensors, batched by index slicing.

Each name is imported on first use: `cnnlab.data.checks`, which `cnnlab <verb>` imports to check a config, must not
import the DataModules (torch, Lightning, torchvision).
"""

from cnnlab.utils.lazy import lazy_exports

# Each public name -> the module that defines it.
EXPORTS = {
    "DataInfo": "cnnlab.data.info",
    "DescribesItsData": "cnnlab.data.info",
    "DigitsDataModule": "cnnlab.data.digits",
    "FashionMNISTDataModule": "cnnlab.data.mnist_family",
    "HuggingFaceDataModule": "cnnlab.data.hf",
    "ImageFolderDataModule": "cnnlab.data.image_folder",
    "InMemoryDataModule": "cnnlab.data.base",
    "MNISTDataModule": "cnnlab.data.mnist_family",
    "StreamingDataModule": "cnnlab.data.shards",
    "TorchvisionDataModule": "cnnlab.data.torchvision_sets",
    "describe_data": "cnnlab.data.info",
}
__all__ = sorted(EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, EXPORTS)
