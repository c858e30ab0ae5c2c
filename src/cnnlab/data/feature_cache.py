"""Frozen feature extraction without augmentation: embed every split once, then train the head on that.

The backbone is frozen and its BatchNorms are in eval mode, so its output for an image never changes:
computing it once per split instead of once per epoch gives the same results, many times faster. The
cache file's key covers everything the embeddings depend on - backbone and its weights, preprocessing,
and the exact images of each split - so a stale cache can never be used. Whether a run uses it is the
run's decision (`cnnlab.run.builders`): this module only needs the model's `backbone` and `preprocess`
modules, never the model classes.
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

import torch

from cnnlab.data.base import InMemoryDataModule, Splits
from cnnlab.utils.io import load_without_code, write_atomic

log = logging.getLogger(__name__)


def model_fingerprint(model: torch.nn.Module) -> str:
    """What the embeddings depend on besides the data: backbone, its weights, preprocessing (hashed once a run)."""
    digest = hashlib.sha256()
    digest.update(repr((type(model.backbone).__name__, getattr(model.backbone, "name", ""))).encode())
    for tensor in model.backbone.state_dict().values():
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    pre = model.preprocess
    digest.update(repr((pre.in_chans, pre.model_chans, pre.image_size, pre.mean.tolist(), pre.std.tolist())).encode())
    return digest.hexdigest()


def cache_key(fingerprint: str, images: torch.Tensor, labels: torch.Tensor) -> str:
    """Everything the embeddings of one split depend on: the model's fingerprint and the exact data."""
    digest = hashlib.sha256(fingerprint.encode())
    digest.update(repr(tuple(images.shape)).encode())
    digest.update(images.contiguous().numpy().tobytes())
    digest.update(labels.contiguous().numpy().tobytes())
    return digest.hexdigest()[:24]


@torch.no_grad()
def embed(model: torch.nn.Module, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Backbone features of every image, in eval mode, batched (on the GPU when there is one)."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    was_training, original = model.training, next(model.parameters()).device
    model.eval().to(device)
    try:
        chunks = []
        for start in range(0, len(images), batch_size):
            batch = images[start : start + batch_size].to(device, non_blocking=True)
            chunks.append(model.backbone(model.preprocess(batch)).float().cpu())
    finally:
        model.to(original).train(was_training)
    return torch.cat(chunks) if chunks else torch.empty(0, model.backbone.num_features)


def cached_split(model: torch.nn.Module, fingerprint: str, images: torch.Tensor, labels: torch.Tensor,
                 batch_size: int, cache_dir: Path) -> torch.Tensor:  # fmt: skip
    """The features of one split: from the cache file for this exact model + data, or computed and stored."""
    path = Path(cache_dir) / "features" / f"{cache_key(fingerprint, images, labels)}.pt"
    features = _load(path, len(labels))
    if features is None:
        started = time.perf_counter()
        features = embed(model, images, batch_size)
        write_atomic(path, lambda handle: torch.save(features, handle))
        log.info("feature cache: embedded %d images in %.1fs -> %s", len(labels), time.perf_counter() - started, path)
    else:
        log.info("feature cache: reusing %s", path)
    return features


class FeatureDataModule(InMemoryDataModule):
    """The source DataModule's splits with images replaced by backbone features (N, F), each split embedded
    the first time it is used (a run with test=false never embeds the test split)."""

    def __init__(self, source: InMemoryDataModule, model: torch.nn.Module, cache_dir: Path) -> None:
        super().__init__(
            batch_size=source.batch_size,
            eval_batch_size=source.eval_batch_size,
            val_fraction=source.val_fraction,
            seed=source.seed,
            folds=source.folds,
            fold=source.fold,
        )
        source.setup()
        self.display_name, self._info, self.source = source.display_name, source.info, source
        self.model, self.cache_dir, self.fingerprint = model, cache_dir, model_fingerprint(model)
        self.splits = Splits(train=None, val=None, test=None)

    def setup(self, stage: str | None = None) -> None:
        """Nothing to load: the source is loaded and each split is embedded on first use."""

    def _batches(self, split: str, train: bool):
        if getattr(self.splits, split) is None:
            images, labels = getattr(self.source.splits, split)
            features = cached_split(self.model, self.fingerprint, images, labels, self.eval_batch_size,
                                    self.cache_dir)  # fmt: skip
            setattr(self.splits, split, (features, labels))
        return super()._batches(split, train)


def _load(path: Path, count: int) -> torch.Tensor | None:
    if not path.is_file():
        return None
    try:
        features = load_without_code(path, "feature cache")
        if features.ndim == 2 and len(features) == count:
            return features
        log.warning("feature cache %s holds %s, expected %d rows; recomputing", path, tuple(features.shape), count)
    except Exception as err:  # a damaged cache is only a cache: recompute it
        log.warning("feature cache %s unreadable (%s); recomputing", path, err)
    return None
