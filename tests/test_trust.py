"""No file a user hands to cnnlab can run code: checkpoints, weights files and the feature cache are read as data,
and what a checkpoint names (`_target_`s, the model class) is imported only when it is a class of the expected kind.

Every crafted file here would create a marker file if its pickle ran; each test proves the refusal names the file
and that the marker was never created.
"""

import os
from pathlib import Path

import pytest
import torch

from cnnlab.data.feature_cache import cache_key, cached_split
from cnnlab.errors import CnnlabError
from cnnlab.run.checkpoints import load_classifier
from cnnlab.run.evaluation import evaluate
from cnnlab.run.exporting import export
from cnnlab.run.prediction import predict
from cnnlab.run.training import train
from cnnlab.utils.io import UnsafeFileError
from tests.conftest import compose_config


class WritesFile:
    """Unpickling this object creates `marker` (through os.system or exec): the classic pickle attack."""

    def __init__(self, marker: Path, via: str) -> None:
        self.marker, self.via = marker, via

    def __reduce__(self):
        if self.via == "system":
            return os.system, (f"touch {self.marker}",)
        return exec, (f"open({str(self.marker)!r}, 'w').close()",)


PLACES = {  # where in a real cnnlab checkpoint the payload goes
    "whole file": lambda ckpt, payload: payload,
    "state_dict": lambda ckpt, payload: {**ckpt, "state_dict": {**ckpt["state_dict"], "evil": payload}},
    "hyper_parameters": lambda ckpt, payload: {**ckpt, "hyper_parameters": {**ckpt["hyper_parameters"],
                                                                            "head": payload}},
    "callback state": lambda ckpt, payload: {**ckpt, "callbacks": {**ckpt["callbacks"], "evil": payload}},
    "optimizer state": lambda ckpt, payload: {**ckpt, "optimizer_states": [payload]},
    "cnnlab run config": lambda ckpt, payload: {**ckpt, "cnnlab": {**ckpt["cnnlab"], "config": payload}},
}  # fmt: skip


def craft(good: Path, place: str, via: str, folder: Path) -> tuple[Path, Path]:
    """A copy of the real checkpoint `good` with a payload at `place`: (crafted file, marker it would create)."""
    marker = folder / f"pwned-{place.replace(' ', '_')}-{via}"
    checkpoint = torch.load(good, weights_only=True)
    path = folder / f"crafted-{place.replace(' ', '_')}-{via}.ckpt"
    torch.save(PLACES[place](checkpoint, WritesFile(marker, via)), path)
    return path, marker


@pytest.fixture
def last_ckpt(digits_run) -> Path:
    return digits_run[1] / "checkpoints" / "last.ckpt"


def entry_points(tmp_path: Path, crafted: Path) -> dict:
    """Each way a file reaches cnnlab, as a call that must refuse it."""
    image = tmp_path / "image.png"
    if not image.exists():
        from PIL import Image

        Image.new("L", (8, 8)).save(image)
    cfg = lambda name, *o: compose_config(name, list(o), tmp_path, tmp_path / f"out-{name}")  # noqa: E731
    return {
        "train resume": lambda: train(cfg("train", "data=digits", "model.backbone.padding=1", f"ckpt_path={crafted}")),
        "train model.weights": lambda: train(cfg("train", "data=digits", "model.backbone.padding=1",
                                                 "model.pretrained=true", f"model.weights={crafted}")),
        "eval": lambda: evaluate(cfg("eval", f"ckpt_path={crafted}")),
        "predict": lambda: predict(cfg("predict", f"ckpt_path={crafted}", f"inputs={image}")),
        "export": lambda: export(cfg("export", f"ckpt_path={crafted}", "format=torchscript")),
    }  # fmt: skip


@pytest.mark.parametrize("via", ["system", "exec"])
@pytest.mark.parametrize("place", list(PLACES))
def test_every_entry_point_refuses_a_checkpoint_that_would_run_code(tmp_path, last_ckpt, place, via):
    crafted, marker = craft(last_ckpt, place, via, tmp_path)
    for name, call in entry_points(tmp_path, crafted).items():
        refusal = r"refused: it holds Python objects whose unpickling would run code \(it names (posix\.system|exec)"
        with pytest.raises(CnnlabError, match=refusal) as caught:
            call()
        assert str(crafted) in str(caught.value), name
        assert not marker.exists(), f"{name} ran the payload of a checkpoint with code in its {place}"


def test_a_crafted_target_in_a_checkpoint_is_never_called(tmp_path, last_ckpt):
    """No pickle trick needed: a checkpoint's config names what to build. Each named thing must be a class of the
    kind expected there, from outside the standard library; `os.system` with a command is refused by name."""
    marker = tmp_path / "pwned"
    good = torch.load(last_ckpt, weights_only=True)
    command = {"_target_": "os.system", "command": f"touch {marker}"}
    variants = {
        "backbone": {**good, "hyper_parameters": {**good["hyper_parameters"], "backbone": command}},
        "model class": {**good, "cnnlab": {**good["cnnlab"], "model_class": "subprocess.Popen"}},
        "data": {**good, "cnnlab": {**good["cnnlab"], "config": {**good["cnnlab"]["config"], "data": command}}},
        "nested": {**good, "hyper_parameters": {**good["hyper_parameters"], "backbone": {
            **good["hyper_parameters"]["backbone"], "helper": command}}},
    }  # fmt: skip
    for name, checkpoint in variants.items():
        crafted = tmp_path / f"{name.replace(' ', '_')}.ckpt"
        torch.save(checkpoint, crafted)
        with pytest.raises(
            CnnlabError, match=r"(os\.system|subprocess\.Popen)'?, which is not from a trusted module: refused"
        ):
            evaluate(compose_config("eval", [f"ckpt_path={crafted}"], tmp_path, tmp_path / f"eval-{name}"))
        assert not marker.exists(), name


def test_a_poisoned_feature_cache_is_recomputed_without_running(tmp_path, last_ckpt):
    model = load_classifier(last_ckpt)
    images = torch.randint(0, 256, (20, 1, 8, 8), dtype=torch.uint8)
    labels = torch.arange(20) % 10
    path = tmp_path / "features" / f"{cache_key('fp', images, labels)}.pt"
    path.parent.mkdir()
    marker = tmp_path / "pwned"
    torch.save(WritesFile(marker, "exec"), path)
    features = cached_split(model, "fp", images, labels, 8, tmp_path)
    assert features.shape == (20, model.backbone.num_features) and not marker.exists()
    assert torch.equal(torch.load(path, weights_only=True), features)  # the cache now holds the real features


def test_unsafe_file_error_is_a_user_error():
    assert issubclass(UnsafeFileError, CnnlabError)


def test_cnnlab_checkpoints_hold_only_plain_data(last_ckpt, digits_run):
    """The allow-list is empty because cnnlab's checkpoints need none: torch finds no global to allow in them."""
    for path in sorted((digits_run[1] / "checkpoints").glob("*.ckpt")):
        assert torch.serialization.get_unsafe_globals_in_checkpoint(path) == [], path


@pytest.mark.parametrize("mode", ["scratch", "frozen", "finetune"])
def test_timm_checkpoints_of_every_transfer_mode_are_plain_data_and_load_and_export(make_cfg, tmp_path, mode):
    """EfficientNet-Lite0 (its real weights for frozen / finetune) at 32 px on digits, a few batches each."""
    cfg = make_cfg("data=digits", "model=efficientnet_lite0", "model.image_size=32", f"transfer={mode}",
                   "trainer.max_epochs=1", "trainer.limit_train_batches=3", "trainer.limit_val_batches=1",
                   "trainer.limit_test_batches=1", "logger=none")  # fmt: skip
    summary = train(cfg)
    checkpoint = Path(summary["best_checkpoint"])
    assert torch.serialization.get_unsafe_globals_in_checkpoint(checkpoint) == []
    assert load_classifier(checkpoint).transfer_config.mode == mode
    info = export(compose_config("export", [f"ckpt_path={checkpoint}", "format=torchscript"], tmp_path, tmp_path / "x"))
    assert info["max_abs_diff"] <= 1e-4
