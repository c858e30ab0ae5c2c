"""Class activation maps with pytorch-grad-cam (the well-kept implementation of Grad-CAM and its family), and the
model-randomization sanity check of Adebayo et al. (2018) that most saliency tools skip."""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from pytorch_grad_cam import (
    EigenCAM,
    EigenGradCAM,
    GradCAM,
    GradCAMPlusPlus,
    HiResCAM,
    LayerCAM,
    ScoreCAM,
    XGradCAM,
)
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from scipy.stats import ConstantInputWarning, spearmanr
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.models import ImageClassifier

CAM_METHODS = {
    "gradcam": GradCAM,
    "gradcam++": GradCAMPlusPlus,
    "hirescam": HiResCAM,
    "xgradcam": XGradCAM,
    "layercam": LayerCAM,
    "eigencam": EigenCAM,
    "eigengradcam": EigenGradCAM,
    "scorecam": ScoreCAM,
}
# A map whose rank correlation with the trained model's stays at or above this once weights are destroyed keeps
# most of its ordering without the learned weights: it shows the input (edges, brightness), not what the model uses.
INSENSITIVE_RHO = 0.5


def as_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 0..255 -> float 0..1, what a CAM's gradient flows through (the model accepts both)."""
    return images.float().div(255) if images.dtype == torch.uint8 else images.float()


@contextlib.contextmanager
def gradients_everywhere(model: nn.Module) -> Iterator[None]:
    """Every parameter requires grad while the maps are computed: a frozen backbone (transfer=frozen) would
    otherwise leave its activations without gradients. The flags are restored afterwards."""
    flags = [p.requires_grad for p in model.parameters()]
    model.requires_grad_(True)
    try:
        yield
    finally:
        for p, flag in zip(model.parameters(), flags, strict=True):
            p.requires_grad_(flag)


def class_maps(model: ImageClassifier, images: torch.Tensor, classes: Sequence[int], layer: nn.Module,
               method: str = "gradcam") -> np.ndarray:  # fmt: skip
    """(N, H, W) maps in 0..1 at the images' own size: where `layer`'s activations support each image's class."""
    if not any(module is layer for module in model.modules()):
        raise CnnlabError("class_maps: `layer` is not a module of this model (of a copy of it?): find it with "
                          "cnnlab.inspection.layers.find_layer(model, name).")  # fmt: skip
    device = next(model.parameters()).device
    targets = [ClassifierOutputTarget(int(c)) for c in classes]
    with gradients_everywhere(model), CAM_METHODS[method](model=model, target_layers=[layer]) as cam:
        maps = cam(input_tensor=as_float(images).to(device), targets=targets)
    model.zero_grad(set_to_none=True)
    return np.nan_to_num(maps.astype(np.float32))


def rank_correlations(reference: np.ndarray, other: np.ndarray) -> list[float]:
    """Spearman's rho per image between two stacks of maps; nan where a map is flat (it ranks nothing)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConstantInputWarning)
        return [float(spearmanr(a.ravel(), b.ravel()).statistic) for a, b in zip(reference, other, strict=True)]


@dataclass(frozen=True)
class SanityStep:
    """The maps after randomizing `randomized` (cascading: this and everything above it), and how much they
    still rank like the trained model's."""

    randomized: str
    rho: list[float]  # per image; nan for a flat map
    maps: np.ndarray

    @property
    def mean_rho(self) -> float:
        values = [r for r in self.rho if r == r]
        return float(np.mean(values)) if values else float("nan")

    @property
    def insensitive(self) -> bool:
        """The map barely changed although the weights were destroyed: it does not explain the model."""
        return self.mean_rho == self.mean_rho and abs(self.mean_rho) >= INSENSITIVE_RHO


def randomization_cascade(model: ImageClassifier) -> list[tuple[str, list[str]]]:
    """(label, module names) to randomize in turn, output side first: the head, then each backbone stage."""
    steps = [("head", sorted({n.rsplit(".", 1)[0] for n, _ in model.head.named_parameters(prefix="head")}))]
    stages = model.backbone.stages() if hasattr(model.backbone, "stages") else _layers_with_weights(model.backbone)
    for index in range(len(stages) - 1, -1, -1):
        modules = sorted({f"backbone.{n.rsplit('.', 1)[0]}" for n in stages[index]})
        if modules:
            steps.append((f"stage {index + 1}/{len(stages)} ({modules[0].removeprefix('backbone.')})", modules))
    return steps


def _layers_with_weights(backbone: nn.Module) -> list[list[str]]:
    """A backbone without `stages()` (the user's own): each module holding weights is a stage, input side first."""
    holders = [(name, m) for name, m in backbone.named_modules() if any(True for _ in m.parameters(recurse=False))]
    return [[f"{name}.{p}" for p, _ in module.named_parameters(recurse=False)] for name, module in holders]


def randomize_modules(model: nn.Module, names: Sequence[str], generator: torch.Generator) -> None:
    """Re-draw the weights of the named modules from their initial distributions (BatchNorm statistics reset too)."""
    modules = dict(model.named_modules())
    state = torch.random.get_rng_state()
    torch.random.manual_seed(int(torch.randint(2**31, (1,), generator=generator)))
    try:
        for name in names:
            module = modules[name]
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()  # Conv, Linear, BatchNorm (running statistics included), LayerNorm
            else:  # parameters a block holds itself (ConvNeXt's layer scale, ...)
                for param in module.parameters(recurse=False):
                    nn.init.trunc_normal_(param.data, std=0.02)
    finally:
        torch.random.set_rng_state(state)


def sanity_check(model: ImageClassifier, images: torch.Tensor, classes: Sequence[int], layer_name: str,
                 method: str = "gradcam", seed: int = 0) -> tuple[np.ndarray, list[SanityStep]]:  # fmt: skip
    """The trained maps, and the maps after cascading randomization (Adebayo et al., 2018): the head's weights,
    then each stage's, output side first, on a copy of the model. The target classes stay the trained model's."""
    trained = class_maps(model, images, classes, dict(model.named_modules())[layer_name], method)
    broken = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(seed)
    steps = []
    for label, names in randomization_cascade(broken):
        randomize_modules(broken, names, generator)
        maps = class_maps(broken, images, classes, dict(broken.named_modules())[layer_name], method)
        steps.append(SanityStep(label, rank_correlations(trained, maps), maps))
    return trained, steps
