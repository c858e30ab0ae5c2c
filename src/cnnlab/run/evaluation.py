"""cnnlab eval: a checkpoint on the test split of its own data (or another `data=`): metrics.json with
accuracy, the model's own loss and per-class precision / recall / F1, a confusion matrix image, the most confident
mistakes. Works with any DataModule that meets cnnlab's contract (see cnnlab.data.DataInfo)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from torchvision.io import write_png

from cnnlab import metrics as M
from cnnlab.data.fingerprint import data_fingerprints
from cnnlab.errors import CnnlabError
from cnnlab.run.builders import build_datamodule, build_loggers
from cnnlab.run.callbacks.provenance import device_record
from cnnlab.run.checkpoints import resolve_checkpoint, trained_data_config
from cnnlab.run.checks import check_eval_config
from cnnlab.run.inference import TestRun, load_for_inference, run_test_split
from cnnlab.utils.figures import image_grid
from cnnlab.utils.io import write_json_atomic
from cnnlab.utils.provenance import collect_provenance, write_provenance
from cnnlab.utils.tensorboard import render_confusion_matrix, tensorboard_writers

log = logging.getLogger("cnnlab.run.evaluation")


def classification_report(confusion: torch.Tensor, class_names: list[str]) -> dict[str, Any]:
    """Accuracy, per-class precision / recall / F1 / support, and their macro averages, from a confusion matrix."""
    confusion = confusion.double()
    true_pos = confusion.diag()
    precision = true_pos / confusion.sum(0).clamp(min=1)
    recall = true_pos / confusion.sum(1).clamp(min=1)
    f1 = 2 * precision * recall / (precision + recall).clamp(min=1e-12)
    columns = zip(class_names, precision.tolist(), recall.tolist(), f1.tolist(), confusion.sum(1).tolist(), strict=True)
    per_class = {name: {"precision": p, "recall": r, "f1": f, "support": int(s)} for name, p, r, f, s in columns}
    return {
        M.TEST_ACC: float(true_pos.sum() / confusion.sum()),
        M.MACRO_PRECISION: float(precision.mean()),
        M.MACRO_RECALL: float(recall.mean()),
        M.MACRO_F1: float(f1.mean()),
        "per_class": per_class,
        "confusion_matrix": confusion.long().tolist(),
    }


def _test_batches(cfg: DictConfig, model, checkpoint: Path):
    """The test loader of the checkpoint's own data (or `data=`), checked against what the model expects, and the
    test split's fingerprint (for the run's provenance)."""
    data_cfg = cfg.get("data") or trained_data_config(model, checkpoint, cfg.get("trust"))
    if not data_cfg:
        raise CnnlabError(f"{checkpoint} does not say which data it was trained on: add data=<option>.")
    datamodule, info = build_datamodule(data_cfg)
    if info.num_classes != model.num_classes or info.in_chans != int(model.hparams.data["in_chans"]):
        raise CnnlabError(
            f"data {info.name} has {info.num_classes} classes and {info.in_chans} channels, but the checkpoint "
            f"expects {model.num_classes} and {model.hparams.data['in_chans']}: pick data it was trained for."
        )
    if hasattr(datamodule, "eval_batch_size"):
        datamodule.eval_batch_size = cfg.batch_size
    datamodule.prepare_data()
    datamodule.setup("test")
    return datamodule.test_dataloader(), info, data_fingerprints(datamodule, ("test",))


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate `ckpt_path` on a test split; writes metrics.json, confusion_matrix.png and mistakes.png."""
    check_eval_config(cfg)
    output_dir = Path(cfg.paths.output_dir)
    checkpoint = resolve_checkpoint(cfg.ckpt_path)
    model = load_for_inference(cfg)
    batches, info, data = _test_batches(cfg, model, checkpoint)
    device = device_record(next(model.parameters()).device)
    write_provenance(output_dir, collect_provenance(data=data, device=device))
    run = run_test_split(model, batches, cfg.num_mistakes)
    confusion = torch.zeros(model.num_classes, model.num_classes, dtype=torch.long)
    confusion.index_put_((run.labels, run.preds), torch.ones_like(run.labels), accumulate=True)
    report = classification_report(confusion, model.class_names)
    report[M.TEST_LOSS] = run.loss
    report["tta"] = model.tta
    report.update({"checkpoint": str(checkpoint), "data": info.name, "images": len(run.labels)})

    write_json_atomic(output_dir / "metrics.json", report)
    picture = render_confusion_matrix(confusion, model.class_names)
    write_png(picture, str(output_dir / "confusion_matrix.png"))
    grid = _mistakes_grid(run, model.class_names)
    if grid is not None:
        grid.save(output_dir / "mistakes.png")
    for writer in tensorboard_writers(build_loggers(cfg) or []):
        for key in (M.TEST_ACC, M.TEST_LOSS, M.MACRO_PRECISION, M.MACRO_RECALL, M.MACRO_F1):
            writer.add_scalar(f"eval/{key}", report[key], 0)
        writer.add_image("eval/confusion_matrix", picture, 0)
        if grid is not None:
            writer.add_image("eval/mistakes", torch.from_numpy(np.array(grid)).permute(2, 0, 1), 0)
        writer.close()
    log.info("test/acc %.4f, test/loss %.4f, macro F1 %.4f on %d %s test images -> %s", report[M.TEST_ACC],
             report[M.TEST_LOSS], report[M.MACRO_F1], len(run.labels), info.name, output_dir)  # fmt: skip
    return report


def _mistakes_grid(run: TestRun, names: list[str]):
    if not run.mistakes:
        return None
    captions = [f"{names[true][:7]}>{names[pred][:7]} {conf:.2f}" for conf, _, true, pred in run.mistakes]
    images = torch.stack([image if image.dtype == torch.uint8 else (image * 255).round().clamp(0, 255).byte()
                          for _, image, _, _ in run.mistakes])  # fmt: skip
    return image_grid(images, captions)


def run(cfg: DictConfig) -> float:
    """Evaluate a checkpoint; returns its test accuracy."""
    return evaluate(cfg)[M.TEST_ACC]
