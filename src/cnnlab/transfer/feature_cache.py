"""Frozen feature extraction without augmentation: embed every split once, then train the head on that.

The backbone is frozen and its BatchNorms are in eval mode, so its output for an image never changes:
computing it once per split instead of once per epoch gives the same results, many times faster. The
cache file's key covers everything the embeddings depend on - backbone and its weights, preprocessing,
and the exact images of each split - so a stale cache can never be used.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
from pathlib import Path

import torch

from cnnlab.data.base import InMemoryDataModule, Splits

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")


def wants_feature_cache(model: torch.nn.Module, datamodule: object) -> bool:
    config = getattr(model, "transfer_config", None)
    return (
        config is not None
        and config.mode == "frozen"
        and config.cache_features
        and isinstance(datamodule, InMemoryDataModule)
        and not getattr(datamodule, "augments_training", False)
    )


def cache_key(model: torch.nn.Module, datamodule: InMemoryDataModule) -> str:
    digest = hashlib.sha256()
    digest.update(repr((type(model.backbone).__name__, getattr(model.backbone, "name", ""))).encode())
    for tensor in list(model.backbone.state_dict().values()) + list(
        model.preprocess.state_dict(keep_vars=True).values()
    ):
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    pre = model.preprocess
    digest.update(repr((pre.in_chans, pre.model_chans, pre.image_size, pre.mean.tolist(), pre.std.tolist())).encode())
    for name in SPLITS:
        images, labels = getattr(datamodule.splits, name)
        digest.update(repr((name, tuple(images.shape))).encode())
        digest.update(images.contiguous().numpy().tobytes())
        digest.update(labels.contiguous().numpy().tobytes())
    return digest.hexdigest()[:24]


@torch.no_grad()
def embed(model: torch.nn.Module, images: torch.Tensor, batch_size: int, device: torch.device) -> torch.Tensor:
    """Backbone features of every image, in eval mode, batched on `device`."""
    chunks = []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size].to(device, non_blocking=True)
        chunks.append(model.backbone(model.preprocess(batch)).float().cpu())
    return torch.cat(chunks) if chunks else torch.empty(0, model.backbone.num_features)


class FeatureDataModule(InMemoryDataModule):
    """The source DataModule's splits with images replaced by their backbone features (N, F)."""

    def __init__(self, source: InMemoryDataModule, splits: Splits) -> None:
        super().__init__(
            batch_size=source.batch_size,
            eval_batch_size=source.eval_batch_size,
            val_fraction=source.val_fraction,
            seed=source.seed,
        )
        self.display_name = source.display_name
        self.splits, self._info = splits, source.info


def cached_features(model: torch.nn.Module, datamodule: InMemoryDataModule, cache_dir: Path) -> FeatureDataModule:
    """Load the embeddings for this exact model + data, or compute and store them (atomically)."""
    datamodule.setup()
    path = Path(cache_dir) / "features" / f"{cache_key(model, datamodule)}.pt"
    splits = _load(path)
    if splits is None:
        started = time.perf_counter()
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        was_training = model.training
        model.eval().to(device)
        splits = Splits(*[
            (embed(model, getattr(datamodule.splits, name)[0], datamodule.eval_batch_size, device),
             getattr(datamodule.splits, name)[1])
            for name in SPLITS
        ])  # fmt: skip
        model.cpu().train(was_training)
        _save_atomic(path, splits)
        log.info("feature cache: embedded %d images in %.1fs -> %s",
                 sum(len(getattr(splits, n)[1]) for n in SPLITS), time.perf_counter() - started, path)  # fmt: skip
    else:
        log.info("feature cache: reusing %s", path)
    return FeatureDataModule(datamodule, splits)


def _load(path: Path) -> Splits | None:
    if not path.is_file():
        return None
    try:
        stored = torch.load(path, map_location="cpu", weights_only=True)
        return Splits(*[(stored[f"{n}_features"], stored[f"{n}_labels"]) for n in SPLITS])
    except Exception as err:  # a damaged cache is only a cache: recompute it
        log.warning("feature cache %s unreadable (%s); recomputing", path, err)
        return None


def _save_atomic(path: Path, splits: Splits) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {}
    for name in SPLITS:
        features, labels = getattr(splits, name)
        payload[f"{name}_features"], payload[f"{name}_labels"] = features, labels
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
