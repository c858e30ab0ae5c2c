"""The traditional-ML row of the table ("always start here first"): scikit-learn on raw pixels and on
frozen-backbone features, on exactly the seeded, class-balanced subsets the neural runs train on.

One call compares them all: `baseline_table(sizes=[100, 1000])`. Frozen features come from the same feature
cache as `transfer=frozen` runs, so a study embeds each split once for both.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnlab.data.feature_cache import cached_split, model_fingerprint
from cnnlab.errors import CnnlabError
from cnnlab.run.builders import build_datamodule, build_model
from cnnlab.utils.config import compose_config

FEATURES = ("pixels", "backbone")


def _classifiers(seed: int) -> dict[str, Callable[[], Any]]:
    from sklearn.ensemble import HistGradientBoostingClassifier  # lazy: scikit-learn's estimators cost ~1 s
    from sklearn.linear_model import LogisticRegression  # lazy: as above
    from sklearn.pipeline import make_pipeline  # lazy: as above
    from sklearn.preprocessing import StandardScaler  # lazy: as above

    return {
        "logistic_regression": lambda: make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=500)),
        "hist_gradient_boosting": lambda: HistGradientBoostingClassifier(max_iter=100, random_state=seed),
    }


CLASSIFIERS = ("logistic_regression", "hist_gradient_boosting")


def pixel_features(images: torch.Tensor) -> np.ndarray:
    """uint8 (N, C, H, W) -> float32 (N, C*H*W) in 0..1."""
    return images.reshape(len(images), -1).float().div_(255).numpy()


class BackboneFeatures:
    """A pretrained backbone's pooled features, as `transfer=frozen` sees them (same model, same cache)."""

    def __init__(self, overrides: Sequence[str], info: Any, cache_dir: Path) -> None:
        cfg = compose_config([*overrides, "transfer=frozen"])
        self.model = build_model(cfg, info).eval()
        self.name = cfg.model.backbone.get("name", "cnn")
        self.fingerprint, self.cache_dir = model_fingerprint(self.model), cache_dir

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
        return cached_split(self.model, self.fingerprint, images, labels, 256, self.cache_dir).numpy()


def baseline_table(
    sizes: Sequence[int],
    data: Sequence[str] = ("data=fashion_mnist",),
    backbone: Sequence[str] = ("model=efficientnet_lite0", "model.image_size=64"),
    features: Sequence[str] = FEATURES,
    classifiers: Sequence[str] = CLASSIFIERS,
    seeds: Sequence[int] = (1, 2, 3),
    cache_dir: str | Path = "outputs/cache",
    test_size: int | None = None,
) -> list[dict[str, Any]]:
    """Test accuracy and fit time of each (features, classifier) at each training-set size, once per seed.

    `data` / `backbone` are cnnlab train overrides: the subsets are the DataModule's own (same seed, same
    `data.train_size` -> the same images as a neural run), and the backbone is the model `transfer=frozen` uses
    (its pretrained weights: the same for every seed). `test_size` scores on the first that many test images only
    (quick checks); None = the whole test set.
    """
    unknown = sorted(set(features) - set(FEATURES)) + sorted(set(classifiers) - set(CLASSIFIERS))
    if unknown:
        raise CnnlabError(f"unknown baseline options {unknown}: use features from {FEATURES}, classifiers from "
                          f"{CLASSIFIERS}")  # fmt: skip
    rows: list[dict[str, Any]] = []
    embed: BackboneFeatures | None = None
    for size, seed in ((size, seed) for size in sizes for seed in seeds):
        datamodule, info = build_datamodule(compose_config([*data, f"seed={seed}", f"data.train_size={size}"]).data)
        (train_x, train_y), (test_x, test_y) = datamodule.splits.train, datamodule.splits.test
        test_x, test_y = test_x[:test_size], test_y[:test_size]
        for kind in features:
            if kind == "backbone" and embed is None:
                embed = BackboneFeatures([*data, *backbone, f"seed={seed}"], info, Path(cache_dir))
            started = time.perf_counter()
            if kind == "pixels":
                x_train, x_test = pixel_features(train_x), pixel_features(test_x)
            else:
                x_train, x_test = embed(train_x, train_y), embed(test_x, test_y)
            feature_s = time.perf_counter() - started
            for name in classifiers:
                rows.append(_fit_and_score(name, _classifiers(seed)[name](), x_train, train_y, x_test, test_y))
                rows[-1].update(features=kind if kind == "pixels" else f"{embed.name} features", train_size=size,
                                seed=seed, feature_s=round(feature_s, 2))  # fmt: skip
    return rows


def _fit_and_score(name: str, classifier: Any, x_train: np.ndarray, y_train: torch.Tensor, x_test: np.ndarray,
                   y_test: torch.Tensor) -> dict[str, Any]:  # fmt: skip
    started = time.perf_counter()
    classifier.fit(x_train, y_train.numpy())
    fit_s = time.perf_counter() - started
    accuracy = float((classifier.predict(x_test) == y_test.numpy()).mean())
    return {"classifier": name, "test_acc": round(accuracy, 4), "fit_s": round(fit_s, 2)}
