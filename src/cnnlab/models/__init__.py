"""Models: the seed CNN, timm backbones, the head, and ImageClassifier (the one LightningModule)."""

from cnnlab.models.classifier import ImageClassifier

__all__ = ["ImageClassifier"]
