"""cnnlab-eval: a checkpoint on the test split of its own data (or another `data=`): metrics.json with
accuracy and per-class precision / recall / F1, a confusion matrix image, the most confident mistakes."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from omegaconf import DictConfig

from cnnlab.train import CONF_DIR
from cnnlab.utils.cli import reports_user_errors, run_cli

log = logging.getLogger("cnnlab.evaluate")


@torch.no_grad()
def predict_tensors(model, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Softmax probabilities for uint8 images, batched on the model's device."""
    device = next(model.parameters()).device
    return torch.cat([
        model(images[i : i + batch_size].to(device)).float().softmax(1).cpu() for i in range(0, len(images), batch_size)
    ])  # fmt: skip


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
        "test/acc": float(true_pos.sum() / confusion.sum()),
        "macro/precision": float(precision.mean()),
        "macro/recall": float(recall.mean()),
        "macro/f1": float(f1.mean()),
        "per_class": per_class,
        "confusion_matrix": confusion.long().tolist(),
    }


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    from torchvision.io import write_png

    from cnnlab.builders import build_loggers
    from cnnlab.checkpoints import load_classifier
    from cnnlab.errors import CnnlabError
    from cnnlab.utils.figures import image_grid
    from cnnlab.utils.io import write_json_atomic
    from cnnlab.utils.tensorboard import render_confusion_matrix, tensorboard_writers

    output_dir = Path(cfg.paths.output_dir)
    model = load_classifier(cfg.ckpt_path, "cuda" if torch.cuda.is_available() else "cpu")
    data_cfg = cfg.get("data") or (model.run_config or {}).get("data")
    if not data_cfg:
        raise CnnlabError(f"{cfg.ckpt_path} does not say which data it was trained on: add data=<option>.")
    datamodule = hydra.utils.instantiate(data_cfg)
    info = datamodule.info
    if info.num_classes != model.num_classes or info.in_chans != int(model.hparams.data["in_chans"]):
        raise CnnlabError(
            f"data {info.name} has {info.num_classes} classes and {info.in_chans} channels, but the checkpoint "
            f"expects {model.num_classes} and {model.hparams.data['in_chans']}: pick data it was trained for."
        )
    images, labels = datamodule.splits.test
    probs = predict_tensors(model, images, cfg.batch_size)
    confidence, preds = probs.max(1)
    confusion = torch.zeros(model.num_classes, model.num_classes, dtype=torch.long)
    confusion.index_put_((labels, preds), torch.ones_like(labels), accumulate=True)
    report = classification_report(confusion, model.class_names)
    report["test/loss"] = float(torch.nn.functional.nll_loss(probs.clamp(min=1e-12).log(), labels))
    report.update({"checkpoint": str(cfg.ckpt_path), "data": info.name, "images": len(labels)})

    write_json_atomic(output_dir / "metrics.json", report)
    write_png(render_confusion_matrix(confusion, cell=24), str(output_dir / "confusion_matrix.png"))
    wrong = torch.nonzero(preds != labels).flatten()
    worst = wrong[confidence[wrong].argsort(descending=True)][: cfg.num_mistakes]
    names = model.class_names
    captions = [f"{names[labels[i]][:7]}>{names[preds[i]][:7]} {confidence[i]:.2f}" for i in worst.tolist()]
    grid = image_grid(images[worst], captions) if len(worst) else None
    if grid is not None:
        grid.save(output_dir / "mistakes.png")
    for writer in tensorboard_writers(build_loggers(cfg) or []):
        for key in ("test/acc", "test/loss", "macro/precision", "macro/recall", "macro/f1"):
            writer.add_scalar(f"eval/{key}", report[key], 0)
        writer.add_image("eval/confusion_matrix", render_confusion_matrix(confusion, cell=24), 0)
        if grid is not None:
            writer.add_image("eval/mistakes", torch.from_numpy(np.asarray(grid)).permute(2, 0, 1), 0)
        writer.close()
    log.info("test/acc %.4f, macro F1 %.4f on %d %s test images -> %s",
             report["test/acc"], report["macro/f1"], len(labels), info.name, output_dir)  # fmt: skip
    return report


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="eval")
@reports_user_errors
def main(cfg: DictConfig) -> float:
    return evaluate(cfg)["test/acc"]


def cli() -> None:
    run_cli(main)


if __name__ == "__main__":
    cli()
