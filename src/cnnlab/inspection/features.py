"""What each conv stage of a trained network responds to: its activations for one image, the first layer's
filters - the picture of the feature hierarchy for the user's own model."""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.inspection.layers import conv_stages, first_conv


@torch.no_grad()
def stage_activations(model: nn.Module, image: torch.Tensor) -> dict[str, torch.Tensor]:
    """{stage name: (C, H, W) activations} for one image (C, H, W), input side first."""
    captured: dict[str, torch.Tensor] = {}

    def keep(name: str):
        def hook(_module, _inputs, output):
            captured[name] = output[0].detach().float().cpu().clone()  # clone: a later in-place op would change it

        return hook

    handles = [module.register_forward_hook(keep(name)) for name, module in conv_stages(model).items()]
    try:
        model.eval()(image.unsqueeze(0).to(next(model.parameters()).device))
    finally:
        for handle in handles:
            handle.remove()
    return {name: captured[name] for name in conv_stages(model) if name in captured and captured[name].ndim == 3}


def strongest_channels(activations: torch.Tensor, count: int) -> tuple[torch.Tensor, list[int]]:
    """The `count` channels with the largest mean activation, strongest first, each scaled to uint8 0..255 on its
    own range (a map's shape matters here, not its scale): ((count, 1, H, W) uint8, channel indices)."""
    order = activations.flatten(1).mean(1).argsort(descending=True)[:count].tolist()
    return each_to_uint8(activations[order]).unsqueeze(1), order


def first_layer_filters(model: nn.Module) -> tuple[str, torch.Tensor]:
    """The first conv's kernels as uint8 images (O, 1 or 3, k, k): RGB when it reads 3 channels, else the mean over
    its input channels; each scaled on its own range, so a kernel's pattern shows whatever its norm."""
    name, conv = first_conv(model)
    weight = conv.weight.detach().float().cpu()
    return name, each_to_uint8(weight if weight.shape[1] == 3 else weight.mean(1, keepdim=True))


def each_to_uint8(stack: torch.Tensor) -> torch.Tensor:
    """Each item of `stack` (first dimension) scaled from its own min..max to uint8 0..255."""
    flat = stack.flatten(1)
    shape = (-1,) + (1,) * (stack.ndim - 1)
    low, high = flat.min(1).values.view(shape), flat.max(1).values.view(shape)
    return ((stack - low) / (high - low).clamp(min=1e-12) * 255).round().byte()
