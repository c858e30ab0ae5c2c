"""Models: the seed CNN, timm backbones, the head, and ImageClassifier (the one LightningModule).

`ImageClassifier` is imported on first use: `cnnlab.models.checks`, which `cnnlab <verb>` imports to check a config,
must not import the classifier (torch, Lightning).
"""

from cnnlab.utils.lazy import lazy_exports

EXPORTS = {"ImageClassifier": "cnnlab.models.classifier"}  # each public name -> the module that defines it
__all__ = sorted(EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, EXPORTS)
