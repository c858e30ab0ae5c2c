"""cnnlab predict ckpt_path=<file> inputs=<file | dir | glob>: top-k labels for image files.

Files are decoded to the channels and size the model was trained on, then go through the model's own
preprocessing, batched. Unreadable files are reported by name and skipped; the exit code says if any were.
"""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from cnnlab.run.checks import check_predict_config
from cnnlab.run.inference import decoded_batches, image_files, labelled, load_for_inference, predict_tensors
from cnnlab.utils.cli import PARTIAL_FAILURE_EXIT_CODE, record_exit_code
from cnnlab.utils.io import write_json_atomic, write_text_atomic
from cnnlab.utils.text import csv_cell, printable

log = logging.getLogger("cnnlab.run.prediction")


def predict_files(model, paths: list[Path], top_k: int = 3, batch_size: int = 256,
                  max_pixels: int | None = None) -> tuple[list[dict], dict]:  # fmt: skip
    """Top-k predictions per readable file, and {path: error} for the others; decoded and run batch by batch."""
    k = min(top_k, model.num_classes)
    results, errors = [], {}
    for images, good, bad in decoded_batches(model, paths, batch_size, max_pixels):
        errors.update(bad)
        if images is None:
            continue
        probs, classes = predict_tensors(model, images, batch_size).topk(k, dim=1)
        for path, p, c in zip(good, probs.tolist(), classes.tolist(), strict=True):
            results.append({"file": str(path), "top": labelled(model, c, p)})
    return results, errors


def format_table(results: list[dict]) -> str:
    lines = []
    for row in results:
        tops = "  ".join(f"{printable(t['label'])} {t['prob']:.3f}" for t in row["top"])
        lines.append(f"{printable(row['file'])}: {tops}")
    return "\n".join(lines)


def write_results(path: Path, results: list[dict], errors: dict) -> None:
    if path.suffix.lower() == ".json":
        write_json_atomic(path, {"predictions": results, "errors": {str(k): v for k, v in errors.items()}})
        return
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    k = max((len(r["top"]) for r in results), default=0)
    writer.writerow(["file", "status", *[c for i in range(1, k + 1) for c in (f"label{i}", f"prob{i}")]])
    for row in results:  # file and class names are not cnnlab's: each cell is made safe to open in a spreadsheet
        labels = [v for t in row["top"] for v in (csv_cell(t["label"]), f"{t['prob']:.6f}")]
        writer.writerow([csv_cell(row["file"]), "ok", *labels])
    for file, error in errors.items():
        writer.writerow([csv_cell(file), csv_cell(f"error: {error}")])
    write_text_atomic(path, buffer.getvalue())


def predict(cfg: DictConfig) -> dict[str, Any]:
    """Top-k labels for every image of `inputs`; printed, and written to `output` when given."""
    check_predict_config(cfg)
    paths = image_files(cfg.inputs)
    model = load_for_inference(cfg)
    results, errors = predict_files(model, paths, cfg.top_k, cfg.batch_size, cfg.get("max_pixels"))
    print(format_table(results))
    for file, error in errors.items():
        log.error("could not read %s: %s (skipped)", file, error)
    if cfg.output:
        write_results(Path(cfg.output), results, errors)
        log.info("predictions written to %s", cfg.output)
    if errors:
        record_exit_code(PARTIAL_FAILURE_EXIT_CODE)
    log.info("%d files predicted, %d failed", len(results), len(errors))
    return {"predictions": results, "errors": {str(k): v for k, v in errors.items()}}
