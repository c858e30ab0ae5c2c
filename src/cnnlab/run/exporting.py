"""cnnlab export ckpt_path=<file> format=onnx|torchscript: the whole model, preprocessing included, as one
file that takes uint8 images (N, C, H, W); checked on export to give the checkpoint's logits."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from cnnlab.errors import CnnlabError
from cnnlab.models.tta import tta_logits
from cnnlab.run.checkpoints import resolve_checkpoint
from cnnlab.run.checks import check_export_config
from cnnlab.run.inference import load_for_inference
from cnnlab.utils.io import write_json_atomic

log = logging.getLogger("cnnlab.run.exporting")
TOLERANCE = 1e-4


def example_batch(model, batch: int = 4, seed: int = 0) -> torch.Tensor:
    channels, size = int(model.hparams.data["in_chans"]), list(model.hparams.data["image_size"])
    return torch.randint(
        0, 256, (batch, channels, *size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed)
    )


class Answering(torch.nn.Module):
    """What an exported file runs: the classifier's preprocessing, backbone and head, averaged over the test-time
    views of its `model.tta` (traced into the graph) - `predict_logits` without the LightningModule around it."""

    def __init__(self, model) -> None:
        super().__init__()
        self.preprocess, self.backbone, self.head = model.preprocess, model.backbone, model.head
        self.tta = model.tta

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(self.preprocess(images)))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return tta_logits(self.logits, images, self.tta)


def export_torchscript(model, path: Path) -> Any:
    scripted = torch.jit.trace(Answering(model).eval(), example_batch(model))
    scripted.save(str(path))
    loaded = torch.jit.load(str(path))
    return lambda x: loaded(x)


def export_onnx(model, path: Path) -> Any:
    try:
        import onnxruntime  # lazy: an optional extra (`export`), needed by this format alone
    except ImportError as err:
        raise CnnlabError("format=onnx needs onnx and onnxruntime: pip install -e '.[export]'") from err
    torch.onnx.export(Answering(model).eval(), (example_batch(model),), str(path), input_names=["images"],
                      output_names=["logits"], dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
                      dynamo=False)  # fmt: skip
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(session.run(["logits"], {"images": x.numpy()})[0])


def export(cfg: DictConfig) -> dict[str, Any]:
    """The checkpoint as one ONNX or TorchScript file, checked to give the checkpoint's logits."""
    check_export_config(cfg)
    checkpoint = resolve_checkpoint(cfg.ckpt_path)
    model = load_for_inference(cfg, "cpu")
    model.preprocess.channels_last = False  # a plain layout exports to the most runtimes
    suffix = {"onnx": ".onnx", "torchscript": ".pt"}[cfg.format]
    # In the export's own run dir by default: beside the checkpoint it would write into another run's folder.
    path = Path(cfg.output) if cfg.output else Path(cfg.paths.output_dir) / f"{checkpoint.stem}{suffix}"
    path.parent.mkdir(parents=True, exist_ok=True)
    run = (export_onnx if cfg.format == "onnx" else export_torchscript)(model, path)
    images = example_batch(model, batch=8, seed=1)
    with torch.no_grad():
        expected = model.predict_logits(images)
    max_diff = float((run(images) - expected).abs().max())
    if max_diff > TOLERANCE:
        raise CnnlabError(
            f"the exported {cfg.format} model differs from the checkpoint by {max_diff:.2e} (> {TOLERANCE})"
        )
    info = {"file": str(path), "format": cfg.format, "checkpoint": str(checkpoint), "max_abs_diff": max_diff,
            "output": "logits (N, classes); softmax gives probabilities", **model.preprocessing(),
            "tta": model.tta}  # fmt: skip
    write_json_atomic(path.with_suffix(path.suffix + ".json"), info)
    log.info("exported %s (max |logit difference| %.1e); preprocessing in %s.json", path, max_diff, path)
    return info
