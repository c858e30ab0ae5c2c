"""Running a trained model over data: batched, on the model's device, without gradients."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from cnnlab.data.images import MAX_PIXELS, decode_many, expand_inputs
from cnnlab.errors import CnnlabError, is_int
from cnnlab.models import ImageClassifier
from cnnlab.models.checks import TTA_MODES
from cnnlab.run.checkpoints import load_classifier
from cnnlab.utils.provenance import code_differences, collect_provenance
from cnnlab.utils.text import printable

log = logging.getLogger("cnnlab.run.inference")


def image_files(inputs: Any) -> list[Path]:
    """The image files of `inputs` (a file, a directory, a glob or a list of them). The files of a directory that
    are not images by their extension are named in one log line (skipped, not failures); none at all is an error."""
    if not inputs:
        raise CnnlabError("inputs is required: inputs=<image file | directory | glob, e.g. 'photos/*.jpg'>")
    paths, skipped = expand_inputs(inputs if isinstance(inputs, str) else [str(i) for i in inputs])
    if skipped:
        names = ", ".join(str(p) for p in skipped[:20]) + (" ..." if len(skipped) > 20 else "")
        log.info("skipped %d file(s) that are not images by their extension: %s", len(skipped), names)
    if not paths:
        raise CnnlabError(f"inputs={inputs!r} matches no image file. Give an image file, a directory or a glob.")
    return paths


def decoded_batches(model: ImageClassifier, paths: list[Path], batch_size: int, max_pixels: int | None = None
                    ) -> Iterator[tuple[torch.Tensor | None, list[Path], dict[Path, str]]]:  # fmt: skip
    """The files decoded to the channels and size the model was trained on, `batch_size` at a time: (uint8 images,
    or None when none of the batch could be read; the files they came from; {file: error} for the others). A file
    declaring more than `max_pixels` (the verb's `max_pixels`) is one of the others, never decoded."""
    max_pixels = MAX_PIXELS if max_pixels is None else max_pixels
    if not is_int(max_pixels) or max_pixels < 1:
        raise CnnlabError(f"max_pixels={max_pixels!r}: an integer >= 1, the most pixels one image may declare "
                          f"(default {MAX_PIXELS:,}).")  # fmt: skip
    channels, size = int(model.hparams.data["in_chans"]), list(model.hparams.data["image_size"])
    for start in range(0, len(paths), batch_size):
        images, good, bad = decode_many(paths[start : start + batch_size], channels, size, max_pixels)
        yield (torch.stack(images) if images else None), good, bad


def labelled(model: ImageClassifier, classes: list[int], probs: list[float]) -> list[dict[str, Any]]:
    """One image's top-k as [{label, prob}], best first."""
    return [{"label": model.class_names[c], "prob": p} for c, p in zip(classes, probs, strict=True)]


def load_for_inference(cfg: Any, device: str | None = None) -> ImageClassifier:
    """The checkpoint of a verb's `ckpt_path` (read as `load_classifier` reads it, with the verb's `trust`), on the
    GPU when there is one, with the verb's `tta` override applied."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = load_classifier(cfg.ckpt_path, device, cfg.get("trust"))
    warn_if_other_code(model, cfg.ckpt_path)
    return use_tta(model, cfg.get("tta"))


def warn_if_other_code(model: ImageClassifier, path: Any) -> list[str]:
    """One warning when the checkpoint was saved by other code than runs now (another commit or cnnlab version, a
    dirty tree, other torch / timm versions): its results may not be reproduced here. Returns the differences."""
    differences = code_differences(getattr(model, "saved_provenance", None), collect_provenance())
    if differences:
        log.warning("ckpt_path=%s was saved by other code than runs now: %s", printable(str(path)[:300]),
                    "; ".join(differences))  # fmt: skip
    return differences


def use_tta(model: ImageClassifier, mode: str | None) -> ImageClassifier:
    """`tta=<mode>` of cnnlab eval / predict / export: the checkpoint's own `model.tta` when null, else `mode`."""
    if mode is not None:
        if mode not in TTA_MODES:
            raise CnnlabError(f"tta={mode!r}: use one of {', '.join(TTA_MODES)}, or null for the checkpoint's own "
                              f"({model.tta}).")  # fmt: skip
        model.tta = mode
    log.info("test-time augmentation: %s", model.tta)
    return model


@torch.no_grad()
def predict_tensors(model: ImageClassifier, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Softmax probabilities for uint8 images, batched on the model's device."""
    device = next(model.parameters()).device
    return torch.cat([
        model.predict_logits(images[i : i + batch_size].to(device)).float().softmax(1).cpu()
        for i in range(0, len(images), batch_size)
    ])  # fmt: skip


@dataclass
class TestRun:
    """What a pass over a test split leaves: every label and prediction, the loss, the most confident mistakes."""

    labels: torch.Tensor
    preds: torch.Tensor
    loss: float  # the model's own loss (label smoothing included), averaged over every image
    mistakes: list[tuple[float, torch.Tensor, int, int]] = field(default_factory=list)  # (conf, image, true, pred)


@torch.no_grad()
def run_test_split(model: ImageClassifier, batches: Iterable, keep_mistakes: int = 32) -> TestRun:
    """One pass over `(images, labels)` batches from any DataModule's test loader; only the `keep_mistakes` most
    confident wrong images are kept, so a large test set is never held in memory twice."""
    device = next(model.parameters()).device
    labels, preds, mistakes = [], [], []
    loss_sum, count = 0.0, 0
    for images, batch_labels in batches:
        if not len(batch_labels):
            continue
        logits = model.predict_logits(images.to(device)).float()
        batch_labels = batch_labels.to(device)
        loss_sum += float(model.loss(logits, batch_labels, reduction="sum"))
        count += len(batch_labels)
        batch_conf, batch_preds = logits.softmax(1).max(1)
        wrong = torch.nonzero(batch_preds != batch_labels).flatten().tolist()
        mistakes += [(float(batch_conf[i]), images[i].cpu(), int(batch_labels[i]), int(batch_preds[i])) for i in wrong]
        mistakes = sorted(mistakes, key=lambda m: -m[0])[:keep_mistakes]
        labels.append(batch_labels.cpu())
        preds.append(batch_preds.cpu())
    return TestRun(torch.cat(labels), torch.cat(preds), loss_sum / max(count, 1), mistakes)
