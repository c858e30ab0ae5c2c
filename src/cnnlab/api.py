"""cnnlab's Python API: compose a config, train it, load a checkpoint, predict image files - as the verbs do.

Reached as `cnnlab.compose`, `cnnlab.train`, `cnnlab.load_classifier` and `cnnlab.predict`: the package imports this
module on first use, so `import cnnlab` alone stays light. Each function is a thin door to the machinery in cnnlab.run.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback
from omegaconf import DictConfig

from cnnlab.errors import CnnlabError, Problems
from cnnlab.models import ImageClassifier
from cnnlab.run import checkpoints, training
from cnnlab.run.inference import image_files
from cnnlab.run.prediction import predict_files
from cnnlab.utils.config import compose_config

__all__ = ["compose", "load_classifier", "predict", "train"]


def compose(*overrides: str, config: str = "train", output_dir: str | Path | None = None,
            root_dir: str | Path | None = None) -> DictConfig:  # fmt: skip
    """A config composed as `cnnlab <verb> <overrides>` composes it (your own conf/ dirs included).

    Args:
        *overrides: Hydra overrides, one an argument: `compose("data=digits", "trainer.max_epochs=1")`.
        config: the top config, conf/<config>.yaml: "train", "eval", "predict", ...
        output_dir: the run dir the run writes to; a fresh temp dir when None (a run dir belongs to one run).
        root_dir: what relative paths (data, outputs) are relative to; the current directory when None.

    Returns:
        The composed config, ready for `train(cfg)`; change values with `omegaconf.open_dict(cfg)`.
    """
    strays = [o for o in overrides if not isinstance(o, str)]
    if strays:
        raise CnnlabError(f"compose{overrides!r}: give each override as its own string argument, "
                          "e.g. compose('data=digits', 'trainer.max_epochs=1'), or compose(*my_list).")  # fmt: skip
    return compose_config(list(overrides), output_dir=output_dir, root_dir=root_dir, config_name=config)


def train(cfg: DictConfig, callbacks: list[Callback] | None = None) -> dict[str, Any]:
    """One training run as `cnnlab train` does it: fit, test the best checkpoint, write metrics.json.

    Args:
        cfg: a composed config (`compose(...)`); the run writes to its `paths.output_dir`.
        callbacks: Lightning callbacks of your own, run beside the config's (to watch or record the run).

    Returns:
        The run's summary, as metrics.json holds it: the final metrics under their cnnlab.metrics names
        (e.g. "test/acc"), "best_checkpoint" (the file `load_classifier` takes), "params", "epochs".
    """
    return training.train(cfg, extra_callbacks=callbacks)


def load_classifier(path: str | Path, device: str | torch.device = "cpu", trust: Iterable[str] = ()
                    ) -> ImageClassifier:  # fmt: skip
    """A trained model from a cnnlab checkpoint, checked before anything it names is imported or run.

    Args:
        path: a .ckpt file, e.g. `<run dir>/checkpoints/last.ckpt` or a run's `summary["best_checkpoint"]`.
        device: where the model goes: "cpu", "cuda", a torch.device.
        trust: modules of your own the checkpoint may name (its backbone or model class), beyond cnnlab, torch.nn,
            torch.optim, timm and your project's.

    Returns:
        The ImageClassifier (or your subclass of it) in eval mode, preprocessing included: it takes uint8 images.
    """
    return checkpoints.load_classifier(path, device, trust)


def predict(model: ImageClassifier, images: str | Path | Iterable[str | Path], top_k: int = 3,
            batch_size: int = 256) -> list[dict[str, Any]]:  # fmt: skip
    """Top-k labels for image files, as `cnnlab predict` gives them (the model's own `tta` included).

    Args:
        model: a trained ImageClassifier (from `load_classifier`); it is switched to eval mode and runs where it is.
        images: an image file, a folder, a glob such as "shots/*.png", or a list of them.
        top_k: labels per image, best first (at most the number of classes).
        batch_size: how many images are decoded and run at a time.

    Returns:
        One row per image file, in the order they were found: {"file": str, "top": [{"label": str, "prob": float},
        ...]}. A file that cannot be read (corrupt, not an image, over the pixel limit) is not dropped: its row has
        "top": [] and "error": why. When nothing matches `images`, CnnlabError says so.
    """
    problems = Problems()
    problems.int_at_least("top_k", top_k, 1)
    problems.int_at_least("batch_size", batch_size, 1)
    problems.raise_if_any("invalid cnnlab.predict arguments (nothing was run)")
    paths = image_files(str(images) if isinstance(images, str | Path) else [str(i) for i in images])
    found, errors = predict_files(model.eval(), paths, top_k, batch_size)
    rows = {row["file"]: row for row in found}
    rows |= {str(path): {"file": str(path), "top": [], "error": error} for path, error in errors.items()}
    return [rows[str(path)] for path in paths]
