"""On-device batched augmentation and device-resident data, on real Fashion-MNIST batches."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from cnnlab.data import FashionMNISTDataModule
from cnnlab.data.augment import Augment
from cnnlab.errors import CnnlabError


@pytest.fixture(scope="module")
def fashion_batch(fashion_dir) -> torch.Tensor:
    dm = FashionMNISTDataModule(data_dir="/nonexistent", system_dirs=[str(fashion_dir)], train_size=1000)
    return dm.info and dm.splits.train[0][:128]


def _which_shift(source: torch.Tensor, out: torch.Tensor, pad: int) -> list[tuple[bool, int, int]]:
    """Every (flipped, dy, dx) under which `out` is the padded `source` cropped back (flip applied first)."""
    padded = F.pad(source, (pad, pad, pad, pad))
    h, w = source.shape[-2:]
    return [
        (flip, dy, dx)
        for flip in (False, True)
        for dy in range(2 * pad + 1)
        for dx in range(2 * pad + 1)
        if torch.equal((padded.flip(-1) if flip else padded)[..., dy : dy + h, dx : dx + w], out)
    ]


def test_each_image_is_its_own_random_shift_and_flip(fashion_batch):
    torch.manual_seed(0)
    out = Augment(translate=2, hflip=True)(fashion_batch)
    assert out.dtype == torch.uint8 and out.shape == fashion_batch.shape
    draws = [_which_shift(fashion_batch[i], out[i], 2) for i in range(len(out))]
    assert all(draws), "an output image is not a shifted / flipped copy of its input"
    assert len({(dy, dx) for d in draws for _, dy, dx in d}) > 10  # per-sample offsets, not one per batch
    flips = [{flip for flip, _, _ in d} for d in draws]
    flipped = sum(f == {True} for f in flips)  # surely flipped (a symmetric image may match both ways)
    assert 30 < flipped < 98  # about half of 128 images


def test_digits_style_config_never_flips(fashion_batch):
    torch.manual_seed(1)
    out = Augment(translate=1)(fashion_batch)
    assert all(any(not flip for flip, _, _ in _which_shift(fashion_batch[i], out[i], 1)) for i in range(len(out)))


def test_inactive_augment_is_the_identity_and_costs_nothing(fashion_batch):
    augment = Augment.from_config({"translate": 0, "hflip": False, "erase": 0.0})
    assert not augment.active and augment(fashion_batch) is fashion_batch
    assert not Augment.from_config(None).active


def test_random_erasing_fills_one_box_per_chosen_image():
    images = torch.full((400, 3, 20, 30), 200, dtype=torch.uint8)
    torch.manual_seed(2)
    out = Augment(erase=0.5, erase_area=(0.1, 0.2), fill=[1, 2, 3])(images)
    erased = (out != 200).any(1)  # (N, H, W) pixels changed
    chosen = erased.flatten(1).any(1)
    assert 150 < int(chosen.sum()) < 250
    for mask, image in zip(erased[chosen], out[chosen], strict=True):
        rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
        box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
        assert int(mask.sum()) == int(box)  # one solid rectangle
        assert 0.1 * 600 - 15 <= int(box) <= 0.2 * 600 + 15  # its area within erase_area (rounding)
        assert image[:, mask].T.unique(dim=0).tolist() == [[1, 2, 3]]  # the per-channel fill


def test_only_training_batches_are_augmented(fashion_batch):
    dm = FashionMNISTDataModule(data_dir="/nonexistent", augment={"translate": 3, "hflip": True})
    labels = torch.zeros(len(fashion_batch), dtype=torch.long)
    dm.trainer = SimpleNamespace(training=False)
    assert dm.on_after_batch_transfer((fashion_batch, labels), 0)[0] is fashion_batch
    dm.trainer = SimpleNamespace(training=True)
    torch.manual_seed(3)
    assert not torch.equal(dm.on_after_batch_transfer((fashion_batch, labels), 0)[0], fashion_batch)
    assert dm.augments_training


def test_feature_cache_is_skipped_when_training_is_augmented(make_cfg, fashion_dir):
    from cnnlab.run.builders import build_datamodule, build_model, wants_feature_cache

    for augment, expected in (("null", True), ("{hflip: true}", False)):
        cfg = make_cfg("experiment=lite0_frozen", "data.train_size=100", f"data.augment={augment}",
                       "model.image_size=32", "model.pretrained=false")  # fmt: skip
        datamodule, info = build_datamodule(cfg.data)
        assert wants_feature_cache(build_model(cfg, info), datamodule) is expected


@pytest.mark.parametrize(
    "augment, key",
    [
        ({"translate": -1}, "data.augment.translate"),
        ({"hflp": True}, "data.augment.hflp"),
        ({"erase": 1.5}, "data.augment.erase"),
        ({"erase_area": [0.5, 0.1]}, "data.augment.erase_area"),
        ({"fill": 300}, "data.augment.fill"),
        ("flip", "data.augment"),
    ],
)
def test_bad_augment_values_name_the_key(augment, key):
    with pytest.raises(CnnlabError, match=key.replace(".", r"\.")):
        FashionMNISTDataModule(data_dir="/nonexistent", augment=augment)


def _fit_trainer(device: str) -> SimpleNamespace:
    return SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device(device)), current_epoch=0,
                           global_rank=0, world_size=1, training=True)  # fmt: skip


@pytest.mark.parametrize("on_device, moved", [("auto", True), (True, True), (False, False)])
def test_datasets_live_on_the_training_device(fashion_dir, on_device, moved):
    """On CPU the batches are slices of the very tensors loaded (no copy); on an accelerator of the copy
    made once there. The "meta" device stands in for an accelerator (on CUDA, auto first checks the size)."""
    dm = FashionMNISTDataModule(data_dir="/nonexistent", system_dirs=[str(fashion_dir)], train_size=500,
                                on_device=on_device)  # fmt: skip
    dm.setup()
    dm.trainer = _fit_trainer("cpu")
    assert dm.train_dataloader().images is dm.splits.train[0]
    dm.trainer = _fit_trainer("meta")
    loader = dm.train_dataloader()
    assert (loader.images.device.type == "meta") is moved
    if moved:
        assert dm.train_dataloader().images is loader.images  # copied once per device, not per epoch
        dm.teardown("fit")
        assert not dm._placed


def test_bad_on_device_value():
    with pytest.raises(CnnlabError, match=r"data\.on_device"):
        FashionMNISTDataModule(data_dir="/nonexistent", on_device="gpu")
