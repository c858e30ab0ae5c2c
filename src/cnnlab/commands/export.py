"""cnnlab export: a checkpoint as one ONNX or TorchScript file, checked against the checkpoint's own logits."""

from __future__ import annotations

from omegaconf import DictConfig

from cnnlab.commands import Verb
from cnnlab.run.checks import check_export_config


def run(cfg: DictConfig) -> None:
    """Export the checkpoint."""
    from cnnlab.run.exporting import export  # lazy: torch loads once the config has passed

    export(cfg)


VERB = Verb(
    name="export",
    summary="a checkpoint as ONNX (checked with onnxruntime) or TorchScript, with its preprocessing",
    examples=(
        "cnnlab export ckpt_path=model.ckpt",
        "cnnlab export ckpt_path=model.ckpt format=torchscript",
        "cnnlab export ckpt_path=model.ckpt output=deploy/classifier.onnx",
    ),
    run=run,
    config="export",
    check=check_export_config,
    docs="docs/apply.md",
)
