"""The bad inputs of docs/errors.md's table: each gets one clear message, fast, and nothing written is touched.

Rows marked `before_data` must be answered before any dataset is read (the DataModule's setup is booby-trapped);
the others are about the data files themselves, so they are answered while reading them.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import torch

from cnnlab.data.base import InMemoryDataModule
from cnnlab.errors import find_user_error
from cnnlab.run.training import train

CASES = [
    # (id, overrides, expected message, answered before any data is read)
    ("batch-size-0", ["data.batch_size=0"], "data.batch_size=0: an integer >= 1", True),
    ("val-fraction-1.5", ["data.val_fraction=1.5"], "data.val_fraction=1.5: a number in (0, 1)", True),
    ("train-size-negative", ["data.train_size=-5"], "data.train_size=-5: null or an integer >= 1", True),
    ("train-size-too-large", ["data.train_size=100000"], "data.train_size=100000 is larger than the training split", False),
    ("data-dir-is-a-file", ["paths.data_dir={text_file}"], "is a file: it must be a directory holding <Dataset>/raw/", True),
    ("augment-key-typo", ["data.augment={{hflp: true}}"], "data.augment.hflp=True: one of the keys translate, hflip", True),
    ("augment-shift-negative", ["data.augment={{translate: -2}}"], "data.augment.translate=-2: an integer >= 0", True),
    ("on-device-unknown", ["data.on_device=gpu"], "data.on_device='gpu': auto (on the GPU when training on one)", True),
    ("dataset-missing", ["data.system_dirs=[]"], "Fashion-MNIST not found", False),
    ("dataset-file-corrupt", ["data.system_dirs=[]", "paths.data_dir={corrupt_data}"], "cannot read IDX file", False),
    ("image-folder-missing", ["data=image_folder", "data.root={tmp}/nowhere"], "data.root='{tmp}/nowhere': no such directory", True),
    ("image-folder-is-a-file", ["data=image_folder", "data.root={text_file}"], "is a file; it must be a folder of class folders", True),
    ("timm-name-typo", ["model=timm", "model.backbone.name=resnet_18"], "is not a timm model. Closest: resnet18", True),
    ("timm-image-too-small", ["model=timm", "model.image_size=16"], "too small for a timm backbone", True),
    ("cnn-image-too-small", ["model.image_size=4"], "model.image_size=4 is too small for the CNN", True),
    ("dropout-1.5", ["model.head.dropout=1.5"], "model.head.dropout=1.5: a number in [0, 1)", True),
    ("label-smoothing-negative", ["model.label_smoothing=-0.1"], "model.label_smoothing=-0.1: a number in [0, 1)", True),
    ("weights-missing", ["model.weights={tmp}/none.pth"], "model.weights='{tmp}/none.pth': no such file", True),
    ("weights-not-a-weights-file", ["model.weights={text_file}"], "not a weights file; expected one of .pth", True),
    ("weights-garbage", ["model=efficientnet_lite0", "transfer=finetune", "model.weights={garbage_pth}"],
     "could not be read as weights", False),
    ("lr-zero", ["optimizer.lr=0"], "optimizer.lr=0: a number > 0", True),
    ("lr-not-a-number", ["optimizer.lr=abc"], "optimizer.lr='abc': a number > 0", True),
    ("transfer-mode-unknown", ["transfer.mode=freeze"], "transfer.mode='freeze': one of scratch, frozen, finetune", True),
    ("freeze-epochs-negative", ["transfer=finetune", "transfer.freeze_epochs=-1"], "transfer.freeze_epochs=-1", True),
    ("seed-cnn-pretrained", ["transfer=finetune"], "the seed CNN has no published weights", False),
    ("max-epochs-0", ["trainer.max_epochs=0"], "trainer.max_epochs=0: an integer >= 1", True),
    ("precision-unknown", ["trainer.precision=fp8"], "trainer.precision='fp8': one of 32-true, bf16-mixed", True),
    ("gpu-without-gpu", ["trainer.accelerator=gpu"], "but this machine has none available", True),
    ("gradient-clip-negative", ["trainer.gradient_clip_val=-1"], "trainer.gradient_clip_val=-1: null or a number >= 0", True),
    ("warmup-1.5", ["scheduler=cosine", "scheduler.warmup_fraction=1.5"], "scheduler.warmup_fraction=1.5", True),
    ("ckpt-missing", ["ckpt_path={tmp}/none.ckpt"], "ckpt_path='{tmp}/none.ckpt': no such file", True),
    ("ckpt-truncated", ["ckpt_path={truncated_ckpt}"], "is not a readable checkpoint", True),
    ("ckpt-is-text", ["ckpt_path={text_file}"], "is not a readable checkpoint", True),
    ("ckpt-is-a-directory", ["ckpt_path={tmp}"], "is a directory: give a .ckpt file in it", True),
    ("ckpt-is-weights-only", ["ckpt_path={weights_pth}"], "is not a Lightning checkpoint of a training run", True),
    ("outputs-not-writable", ["paths.log_dir=/proc/cnnlab/outputs"], "paths.log_dir='/proc/cnnlab/outputs' is not a writable directory", True),
]  # fmt: skip


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    """Bad files of each kind, made on the spot."""
    text = tmp_path / "notes.txt"
    text.write_text("not a model\n")
    checkpoint = tmp_path / "good.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1000)}, "loops": {}}, checkpoint)
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2])
    weights = tmp_path / "weights.pth"
    torch.save({"w": torch.zeros(3)}, weights)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x00garbage" * 100)
    raw = tmp_path / "corrupt_data" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name in (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ):
        (raw / f"{name}.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x03")[:-6])  # a cut-off download
    return {"tmp": str(tmp_path), "text_file": str(text), "truncated_ckpt": str(truncated), "weights_pth": str(weights),
            "garbage_pth": str(garbage), "corrupt_data": str(tmp_path / "corrupt_data")}  # fmt: skip


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize(("overrides", "message", "before_data"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_gets_one_clear_message(make_cfg, files, fashion_dir, monkeypatch, overrides, message, before_data):
    earlier = Path(files["tmp"]) / "outputs" / "runs" / "earlier"  # an earlier run's outputs must stay untouched
    (earlier / "checkpoints").mkdir(parents=True)
    (earlier / "checkpoints" / "last.ckpt").write_bytes(b"an earlier checkpoint")
    (earlier / "metrics.json").write_text("{}")
    before = snapshot(earlier)
    if before_data:
        monkeypatch.setattr(InMemoryDataModule, "setup", lambda *a: pytest.fail("data was read before the check"))
    cfg = make_cfg(*(o.format(**files) for o in overrides))
    with pytest.raises(Exception) as err:
        train(cfg)
    user_error = find_user_error(err.value)
    assert user_error is not None, f"not a clear message but {type(err.value).__name__}: {err.value}"
    assert message.format(**files) in str(user_error)
    assert snapshot(earlier) == before
    assert not list(Path(cfg.paths.output_dir).glob("checkpoints/*"))


def test_every_problem_is_listed_in_one_message(make_cfg, monkeypatch):
    monkeypatch.setattr(InMemoryDataModule, "setup", lambda *a: pytest.fail("data was read before the check"))
    cfg = make_cfg("optimizer.lr=-1", "data.batch_size=0", "trainer.max_epochs=0", "transfer.mode=nope")
    with pytest.raises(Exception) as err:
        train(cfg)
    message = str(find_user_error(err.value))
    assert message.startswith("invalid configuration (nothing was run):")
    for key in ("optimizer.lr=-1", "data.batch_size=0", "trainer.max_epochs=0", "transfer.mode='nope'"):
        assert key in message


def test_the_docs_table_lists_every_case():
    table = (Path(__file__).resolve().parents[1] / "docs" / "errors.md").read_text()
    missing = [case_id for case_id, *_ in CASES if f"`{case_id}`" not in table]
    assert not missing, f"docs/errors.md's bad-input table lacks {missing}"


def test_the_training_tools_keys_are_checked_in_the_same_one_message(make_cfg, monkeypatch):
    monkeypatch.setattr(InMemoryDataModule, "setup", lambda *a: pytest.fail("data was read before the check"))
    cfg = make_cfg("model.mix={mixup_alpha: -1}", "model.tta=mirror", "model.class_weights=inverse", "callbacks=ema",
                   "callbacks.ema.decay=2", "+data.augment={policy: autoaugment}", "tune=lr_find", "tune.max_lr=0",
                   "optimizer.decay_norm_and_bias=maybe")  # fmt: skip
    with pytest.raises(Exception) as err:
        train(cfg)
    message = str(find_user_error(err.value))
    for key in ("model.mix.mixup_alpha=-1", "model.tta='mirror'", "model.class_weights='inverse'",
                "callbacks.ema.decay=2", "data.augment.policy='autoaugment'", "tune.max_lr=0",
                "optimizer.decay_norm_and_bias='maybe'"):  # fmt: skip
        assert key in message, key
