"""cnnlab: image classification with PyTorch Lightning + Hydra.

    import cnnlab

    cfg = cnnlab.compose("data=digits", "trainer.max_epochs=1")
    summary = cnnlab.train(cfg)
    model = cnnlab.load_classifier(summary["best_checkpoint"])
    rows = cnnlab.predict(model, "my_images/")

The functions live in cnnlab.api and are imported on first use: `import cnnlab` alone imports no torch, so the
`cnnlab` command answers a bad value in about a second.
"""

from cnnlab.utils.lazy import lazy_exports

__version__ = "0.2.0"

# The functions are found by module name, not imported by a statement: the package's root sits above every layer,
# while lower modules read only `__version__` from it (see the layer contracts in pyproject.toml).
EXPORTS = {name: "cnnlab.api" for name in ("compose", "load_classifier", "predict", "train")}
__all__ = ["__version__", *sorted(EXPORTS)]
__getattr__, __dir__ = lazy_exports(__name__, EXPORTS)
