"""cnnlab explain ckpt_path=<file> inputs=<file | dir | glob>: look inside a trained classifier.

- what=cam (default): for every image, the class activation map of `method` (Grad-CAM and its family, by
  pytorch-grad-cam) at `layer` (the last conv stage unless named) laid over the image, with the top-k predictions;
  one PNG per `batch_size` images, also in TensorBoard.
- sanity=true: the same maps after randomizing the head, then each stage (Adebayo et al., 2018, cascading), with
  their rank correlation to the trained maps; a map that survives the destruction is flagged.
- what=features: for the first image, the strongest channels of every conv stage, and the first layer's filters.

Images are decoded as cnnlab predict decodes them; unreadable files are named and skipped (exit code 1).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from PIL import Image

from cnnlab.errors import CnnlabError, is_int
from cnnlab.inspection.cams import SanityStep, class_maps, sanity_check
from cnnlab.inspection.features import first_layer_filters, stage_activations, strongest_channels
from cnnlab.inspection.layers import find_layer
from cnnlab.inspection.pictures import cam_grid, channel_grid, filter_grid, sanity_grid
from cnnlab.models import ImageClassifier
from cnnlab.run.builders import build_loggers
from cnnlab.run.checks import check_explain_config
from cnnlab.run.inference import decoded_batches, image_files, labelled, load_for_inference, predict_tensors
from cnnlab.utils.cli import PARTIAL_FAILURE_EXIT_CODE, record_exit_code
from cnnlab.utils.io import write_json_atomic
from cnnlab.utils.rundir import safe_name
from cnnlab.utils.tensorboard import tensorboard_writers

log = logging.getLogger("cnnlab.run.explaining")


def target_rule(target: Any, class_names: list[str]) -> str | int:
    """`predicted`, `true`, or the index of the class named by `target` (a name or an index)."""
    if target is True or str(target).lower() == "true":  # Hydra reads `target=true` as a boolean
        return "true"
    if str(target) == "predicted":
        return "predicted"
    if is_int(target) and 0 <= target < len(class_names):
        return int(target)
    if str(target) in class_names:
        return class_names.index(str(target))
    raise CnnlabError(
        f"target={target!r}: give predicted, true (the class is each file's folder name), a class index 0.."
        f"{len(class_names) - 1} or one of the model's classes: {', '.join(class_names)}."
    )


def target_classes(rule: str | int, paths: list[Path], predicted: torch.Tensor, class_names: list[str]) -> list[int]:
    """The class each map explains: the prediction, the file's folder (image-folder layout), or one fixed class."""
    if rule == "predicted":
        return predicted.tolist()
    if rule == "true":
        strays = [str(p) for p in paths if p.parent.name not in class_names]
        if strays:
            raise CnnlabError(
                f"target=true takes each file's class from its folder's name, but {', '.join(strays[:5])} "
                f"{'is' if len(strays) == 1 else 'are'} not in a folder named after a class "
                f"({', '.join(class_names)}). Sort the files into class folders, or use target=predicted."
            )
        return [class_names.index(p.parent.name) for p in paths]
    return [int(rule)] * len(paths)


def explain_images(cfg: DictConfig) -> dict[str, Any]:
    """Class activation maps (or feature maps) for the images of `inputs`; PNGs and explain.json in `output`."""
    check_explain_config(cfg)
    paths = image_files(cfg.inputs)
    model = load_for_inference(cfg)
    rule = target_rule(cfg.target, model.class_names)
    layer_name, _ = find_layer(model, cfg.layer)
    output_dir = Path(str(cfg.output or cfg.paths.output_dir)).expanduser()
    output_dir.mkdir(parents=True, exist_ok=True)
    writers = tensorboard_writers(build_loggers(cfg) or [])
    try:
        if cfg.what == "features":
            report = explain_features(model, paths, output_dir, cfg.max_channels, writers, cfg.get("max_pixels"))
        else:
            report = explain_cams(model, paths, output_dir, cfg, rule, layer_name, writers)
    finally:
        for writer in writers:
            writer.close()
    report.update({"checkpoint": str(cfg.ckpt_path), "what": cfg.what})
    write_json_atomic(output_dir / "explain.json", report)
    for file, error in report["errors"].items():
        log.error("could not read %s: %s (skipped)", file, error)
    if report["errors"]:
        record_exit_code(PARTIAL_FAILURE_EXIT_CODE)
    log.info("%d images explained, %d failed -> %s", report["explained"], len(report["errors"]), output_dir)
    return report


def explain_cams(model: ImageClassifier, paths: list[Path], output_dir: Path, cfg: DictConfig, rule: str | int,
                 layer_name: str, writers: list) -> dict[str, Any]:  # fmt: skip
    """One overlay grid per batch of files (and a sanity grid with `sanity=true`); the rows of explain.json."""
    layer = dict(model.named_modules())[layer_name]
    k = min(int(cfg.top_k), model.num_classes)
    files, errors, pictures, sanity_rows = [], {}, [], []
    for batch, (images, good, bad) in enumerate(decoded_batches(model, paths, cfg.batch_size, cfg.get("max_pixels"))):
        errors.update({str(p): e for p, e in bad.items()})
        if images is None:
            continue
        probs, top = predict_tensors(model, images, len(images)).topk(k, dim=1)
        classes = target_classes(rule, good, top[:, 0], model.class_names)
        if cfg.sanity:
            maps, steps = sanity_check(model, images, classes, layer_name, cfg.method)
            title = f"sanity check: {cfg.method} at {layer_name} as each part is randomized (cascading)"
            pictures.append(_save(sanity_grid(images, maps, steps, title), output_dir / f"sanity_{batch:03d}.png",
                                  writers, "explain/sanity", batch))  # fmt: skip
            sanity_rows.append(steps)
        else:
            maps = class_maps(model, images, classes, layer, cfg.method)
        captions = [_caption(model.class_names, c, p, t) for c, p, t in zip(top.tolist(), probs.tolist(), classes,
                                                                             strict=True)]  # fmt: skip
        title = f"{cfg.method} at {layer_name}, target {rule if isinstance(rule, str) else model.class_names[rule]}"
        grid = cam_grid(images, maps, [p.name for p in good], captions, title)
        pictures.append(_save(grid, output_dir / f"{safe_name(cfg.method)}_{batch:03d}.png", writers,
                              f"explain/{cfg.method}", batch))  # fmt: skip
        for path, c, p, t in zip(good, top.tolist(), probs.tolist(), classes, strict=True):
            files.append({"file": str(path), "target": model.class_names[t], "top": labelled(model, c, p)})
    report: dict[str, Any] = {"method": cfg.method, "layer": layer_name, "target": str(cfg.target), "files": files,
                              "errors": errors, "pictures": pictures, "explained": len(files)}  # fmt: skip
    if cfg.sanity and sanity_rows:
        report["sanity"] = _sanity_summary(sanity_rows)
    return report


def _caption(names: list[str], classes: list[int], probs: list[float], target: int) -> str:
    lines = [f"{names[c][:14]} {p:.2f}" for c, p in zip(classes, probs, strict=True)]
    return "\n".join([*lines, f"map: {names[target][:16]}"])


def _sanity_summary(batches: list[list]) -> list[dict[str, Any]]:
    """Per randomization step, the rank correlation over every image; the steps whose maps barely changed flagged."""
    rows = []
    for index, step in enumerate(batches[0]):
        every = SanityStep(step.randomized, [r for steps in batches for r in steps[index].rho], step.maps)
        mean, insensitive = every.mean_rho, every.insensitive
        rows.append({"randomized": step.randomized, "mean_rho": mean, "flat_maps": sum(r != r for r in every.rho),
                     "insensitive": insensitive})  # fmt: skip
        flag = "  <- INSENSITIVE: the map barely changed with these weights destroyed" if insensitive else ""
        level = logging.WARNING if insensitive else logging.INFO
        log.log(level, "sanity: %-40s mean rank correlation with the trained maps %+.3f%s", step.randomized, mean, flag)
    return rows


def explain_features(model: ImageClassifier, paths: list[Path], output_dir: Path, max_channels: int,
                     writers: list, max_pixels: int | None = None) -> dict[str, Any]:  # fmt: skip
    """The first readable image's activations per conv stage (strongest channels first) and the first filters."""
    errors: dict[str, str] = {}
    image, source = None, None
    for images, good, bad in decoded_batches(model, paths, 1, max_pixels):
        errors.update({str(p): e for p, e in bad.items()})
        if images is not None:
            image, source = images[0], good[0]
            break
    report: dict[str, Any] = {"files": [], "errors": errors, "pictures": [], "stages": [], "explained": 0}
    if image is None:
        return report
    report.update(files=[str(source)], explained=1)
    Image.fromarray(image.permute(1, 2, 0).squeeze(-1).numpy()).save(output_dir / "input.png")
    for index, (name, activations) in enumerate(stage_activations(model, image).items(), start=1):
        maps, order = strongest_channels(activations, max_channels)
        title = f"stage {index} ({name}): {activations.shape[0]} channels of {activations.shape[1]}x" \
                f"{activations.shape[2]}, the {len(order)} strongest"  # fmt: skip
        path = output_dir / f"features_stage{index}.png"
        report["pictures"].append(_save(channel_grid(maps, order, title), path, writers, "explain/features", index))
        report["stages"].append({"stage": index, "module": name, "shape": list(activations.shape),
                                 "strongest_channels": order})  # fmt: skip
    conv_name, kernels = first_layer_filters(model)
    title = f"the first layer's {len(kernels)} filters ({conv_name}, {kernels.shape[-2]}x{kernels.shape[-1]})"
    report["pictures"].append(_save(filter_grid(kernels, title), output_dir / "filters.png", writers,
                                    "explain/filters", 0))  # fmt: skip
    return report


def _save(picture: Image.Image, path: Path, writers: list, tag: str, step: int) -> str:
    picture.save(path)
    for writer in writers:
        writer.add_image(tag, torch.from_numpy(np.array(picture)).permute(2, 0, 1), step)
    return str(path)
