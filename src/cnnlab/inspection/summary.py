"""A per-layer summary of a classifier - output shape, parameters, trainable or frozen, multiply-adds for the data's
image size - and what the first convolution would cost without weight sharing.

The figures come from Lightning's `ModelSummary` (parameters, output sizes) and its `torch.utils.flop_counter`
(FLOPs; a multiply-add is 2 FLOPs there): checked against fvcore and torchinfo in the tests.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from lightning.pytorch.utilities.model_summary import ModelSummary
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.inspection.layers import first_conv
from cnnlab.models import ImageClassifier
from cnnlab.models.backbones import TimmBackbone


@dataclass(frozen=True)
class LayerRow:
    name: str
    kind: str
    output: list[int]  # (C, H, W) or (features,): one image's output
    params: int
    trainable: int
    macs: int


@dataclass(frozen=True)
class WeightSharing:
    """The first conv, and two layers with its input and output that share no weights: a locally-connected one (a
    kernel of its own at every output position) and a dense one (every input to every output)."""

    layer: str
    input: list[int]
    output: list[int]
    conv_params: int
    locally_connected_params: int
    dense_params: int

    def sentence(self) -> str:
        shape = "x".join
        lc, dense = self.locally_connected_params, self.dense_params
        return (
            f"weight sharing: the first conv ({self.layer}, {shape(map(str, self.input))} -> "
            f"{shape(map(str, self.output))}) has {self.conv_params:,} parameters; without sharing, a "
            f"locally-connected layer of the same output would need {lc:,} ({lc / self.conv_params:,.0f}x) and a "
            f"dense layer {dense:,} ({dense / self.conv_params:,.0f}x)"
        )


@dataclass(frozen=True)
class ModelReport:
    input: list[int]  # (C, H, W) of the images the model takes
    rows: list[LayerRow]
    params: int
    trainable: int
    macs: int  # per image, the whole forward pass
    sharing: WeightSharing | None
    network_input: list[int]  # (C, H, W) after the model's own preprocessing (resize, channels)

    def as_dict(self) -> dict:
        return {"input": self.input, "network_input": self.network_input, "params": self.params,
                "trainable": self.trainable, "macs": self.macs,
                "weight_sharing": asdict(self.sharing) if self.sharing else None}  # fmt: skip


def example_input(model: ImageClassifier) -> torch.Tensor:
    """One image of the data's geometry, as the batches bring it (uint8)."""
    data = model.hparams.data
    return torch.zeros(1, int(data["in_chans"]), *map(int, data["image_size"]), dtype=torch.uint8)


def summarize_model(model: ImageClassifier, depth: int = -1) -> ModelReport:
    """Every layer the forward pass runs, in the order it runs them (`depth=-1`: the leaf modules; `depth=d`: the
    modules d levels down, and shallower leaves)."""
    device = next(model.parameters()).device
    example = model.example_input_array
    model.example_input_array = example_input(model).to(device)
    modules = dict(model.named_modules())
    order: dict[str, int] = {}

    def note_call(name: str):
        def hook(_module, _inputs) -> None:  # returns None: a pre-hook's return value would replace the input
            order.setdefault(name, len(order))

        return hook

    handles = [m.register_forward_pre_hook(note_call(name)) for name, m in modules.items()]
    try:
        summary = ModelSummary(model, max_depth=-1)  # its forward pass also fills `order`
        total_flops = summary.total_flops
    finally:
        for handle in handles:
            handle.remove()
        # Restored: Lightning's own summary at fit start would otherwise run it too (and torch.compile a graph for it).
        model.example_input_array = example
    flops = summary.flop_counts
    sizes = dict(zip(summary.layer_names, zip(summary.in_sizes, summary.out_sizes, strict=True), strict=True))
    rows = []
    columns = zip(summary.layer_names, summary.layer_types, summary.out_sizes, summary.param_nums, strict=True)
    for name, kind, out, params in sorted(columns, key=lambda column: order.get(column[0], len(order))):
        module, level = modules[name], name.count(".") + 1
        is_leaf = not any(True for _ in module.children())
        if name not in order or not (level == depth or (is_leaf and (depth < 0 or level < depth))):
            continue  # not a layer of the forward pass (the metrics), or not at this depth
        trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
        output = list(out[1:]) if isinstance(out, list) and out and isinstance(out[0], int) else []
        rows.append(LayerRow(name, kind, output, int(params), trainable, sum(flops.get(name, {}).values()) // 2))
    return ModelReport(
        input=list(example_input(model).shape[1:]),
        rows=rows,
        params=summary.total_parameters,
        trainable=summary.trainable_parameters,
        macs=total_flops // 2,
        sharing=first_conv_sharing(model, sizes),
        network_input=next((row.output for row in rows if row.name == "preprocess"), []),
    )


def first_conv_sharing(model: ImageClassifier, sizes: dict[str, tuple[Any, Any]]) -> WeightSharing | None:
    """What the first conv would cost without sharing its kernels across positions, from the (input, output) sizes
    the summary's own forward pass recorded per layer (None without a conv)."""
    try:
        name, conv = first_conv(model)
    except CnnlabError:
        return None
    in_size, out_size = sizes.get(name, (None, None))
    if not (isinstance(in_size, list) and isinstance(out_size, list) and len(in_size) == len(out_size) == 4):
        return None  # the conv did not run on a (1, C, H, W) tensor: nothing to compare
    (cin, height, width), (cout, out_h, out_w) = in_size[1:], out_size[1:]
    positions, inputs = out_h * out_w, cin * height * width
    bias = conv.bias is not None
    kernel = (cin // conv.groups) * conv.kernel_size[0] * conv.kernel_size[1]
    return WeightSharing(
        layer=name,
        input=list(in_size[1:]),
        output=list(out_size[1:]),
        conv_params=sum(p.numel() for p in conv.parameters()),
        locally_connected_params=positions * cout * (kernel + bias),
        dense_params=positions * cout * (inputs + bias),
    )


def published_parameters(model: nn.Module) -> tuple[str, int] | None:
    """A timm backbone's architecture as published (its 1000-class ImageNet head) and its parameter count: the
    figure papers quote (VGG-16: 138,357,544), beside the count of this model with its own head."""
    backbone = getattr(model, "backbone", None)
    if not isinstance(backbone, TimmBackbone):
        return None
    import timm  # lazy: timm's import costs ~0.5 s (see cnnlab.models.backbones)

    arch = backbone.name.split(".")[0]
    return arch, sum(p.numel() for p in timm.create_model(arch, pretrained=False).parameters())


def format_report(report: ModelReport) -> str:
    """The table as text: one line per layer, then the totals."""
    header = f"{'layer':<44} {'type':<22} {'output':>14} {'params':>13} {'trainable':>13} {'MACs':>17}"
    lines = [header, "-" * len(header)]
    for row in report.rows:
        output = "x".join(map(str, row.output)) or "?"
        lines.append(f"{row.name[:44]:<44} {row.kind[:22]:<22} {output:>14} {row.params:>13,} {row.trainable:>13,} "
                     f"{row.macs:>17,}")  # fmt: skip
    lines.append("-" * len(header))
    lines.append(f"{'total':<44} {'':<22} {'':>14} {report.params:>13,} {report.trainable:>13,} {report.macs:>17,}")
    seen = "x".join(map(str, report.input))
    if report.network_input and report.network_input != report.input:
        seen += f" (the network sees {'x'.join(map(str, report.network_input))})"
    lines.append(f"input {seen}, per image: {report.params:,} parameters "
                 f"({report.trainable:,} trainable, {report.params - report.trainable:,} frozen), "
                 f"{report.macs:,} multiply-adds ({_readable(report.macs)})")  # fmt: skip
    if report.sharing:
        lines.append(report.sharing.sentence())
    return "\n".join(lines)


def _readable(count: int) -> str:
    return f"{count / 1e9:.2f} G" if count >= 1e9 else f"{count / 1e6:.2f} M"
