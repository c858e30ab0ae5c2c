"""cnnlab: image classification with PyTorch Lightning + Hydra.

    import cnnlab

    cfg = cnnlab.compose("data=digits", "trainer.max_epochs=1")
    summary = cnnlab.train(cfg)
    model = cnnlab.load_classifier(summary["best_checkpoint"])
    rows = cnnlab.predict(model, "my_images/")

The functions live in cnnlab.api and are imported on first use: `import cnnlab` alone imports no torch, so the
`cnnlab` command answers a bad value in about a second.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0"

_API = ("compose", "load_classifier", "predict", "train")
__all__ = ["__version__", "compose", "load_classifier", "predict", "train"]


def __getattr__(name: str) -> Any:
    """PEP 562: `cnnlab.train` & co. import cnnlab.api (and torch) the first time one is asked for."""
    if name not in _API:
        raise AttributeError(f"module 'cnnlab' has no attribute {name!r}")
    # By name, not an import statement: the package's root sits above every layer, while lower modules read only
    # `__version__` from it (see the layer contracts in pyproject.toml).
    value = getattr(importlib.import_module("cnnlab.api"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})
