"""Where to look inside a classifier: its conv stages (input side first) and its first convolution, found
for the seed CNN, every timm backbone (through timm's own `feature_info`) and any other backbone made of convs."""

from __future__ import annotations

import difflib

from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.models.backbones import TimmBackbone
from cnnlab.models.cnn import SeedCNN


def conv_stages(model: nn.Module) -> dict[str, nn.Module]:
    """{module name: module} of each conv stage's output, input side first; the last one is where a CAM looks."""
    backbone = model.backbone
    if isinstance(backbone, SeedCNN):  # a stage ends with its ReLU (conv -> [BN] -> pool -> ReLU)
        relus = [i for i, layer in enumerate(backbone.features) if isinstance(layer, nn.ReLU)]
        return {f"backbone.features.{i}": backbone.features[i] for i in relus}
    if isinstance(backbone, TimmBackbone):  # timm names each stage's output module for its features_only mode
        names = dict(model.named_modules())
        stages = [f"backbone.model.{info['module']}" for info in backbone.model.feature_info]
        return {name: names[name] for name in stages if name in names}
    convs = {name: m for name, m in model.named_modules() if name.startswith("backbone") and isinstance(m, nn.Conv2d)}
    if not convs:
        raise CnnlabError(f"{type(backbone).__name__} has no nn.Conv2d: there is no conv stage to look inside.")
    return convs


def find_layer(model: nn.Module, name: str | None) -> tuple[str, nn.Module]:
    """The module called `name` (e.g. `backbone.model.layer3`), or the last conv stage when `name` is None."""
    if name is None:
        return list(conv_stages(model).items())[-1]
    modules = dict(model.named_modules())
    if name not in modules or not name:
        stages = list(conv_stages(model))
        close = difflib.get_close_matches(name, list(modules), n=5, cutoff=0.6)
        raise CnnlabError(
            f"layer={name!r} is not a module of this model. Its conv stages: {', '.join(stages)}"
            + (f"; close names: {', '.join(close)}" if close else "")
            + ". Any name of `model.named_modules()` works."
        )
    return name, modules[name]


def first_conv(model: nn.Module) -> tuple[str, nn.Conv2d]:
    """The first convolution the image meets: its filters are the ones worth drawing."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            return name, module
    raise CnnlabError(f"{type(model).__name__} has no nn.Conv2d: there are no filters to draw.")
