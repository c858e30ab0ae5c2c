"""cnnlab explain: class activation maps on real Fashion-MNIST models (the seed CNN and a fine-tuned lite0 with its
real ImageNet weights), the target layer of every backbone family, the sanity check, feature maps and filters."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.data import FashionMNISTDataModule
from cnnlab.data.info import DataInfo
from cnnlab.errors import CnnlabError
from cnnlab.inspection import cams
from cnnlab.inspection.cams import INSENSITIVE_RHO, class_maps, sanity_check
from cnnlab.inspection.features import strongest_channels
from cnnlab.inspection.layers import find_layer
from cnnlab.run.builders import build_model
from cnnlab.run.checkpoints import load_classifier
from cnnlab.run.explaining import explain_images
from cnnlab.run.training import train
from tests.conftest import compose_config, trained_once
from tests.test_apply import fashion_test_images

CANVAS, ITEM = 56, 28  # Fashion-MNIST items (28 px) placed on a 56 px blank canvas: the item covers 1/4 of it


def explain_cfg(tmp_path: Path, *overrides: str):
    return compose_config("explain", ["logger=none", *overrides], tmp_path, tmp_path / "explain_run")


def odd_mode_folder(folder: Path) -> list[str]:
    """Five real test images, each saved in another mode PIL reads (grey, RGB, palette, 16-bit, CMYK), a broken
    PNG and a text file. Returns the good files' names."""
    images, _, _ = fashion_test_images(5)
    folder.mkdir(parents=True)
    grey = [Image.fromarray(image[0].numpy(), mode="L") for image in images]
    grey[0].save(folder / "grey.png")
    grey[1].convert("RGB").save(folder / "rgb.jpg")
    grey[2].convert("P").save(folder / "palette.png")
    Image.fromarray(images[3][0].numpy().astype(np.uint16) * 257).save(folder / "sixteen.png")
    grey[4].convert("CMYK").save(folder / "cmyk.tif")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    (folder / "notes.txt").write_text("not an image")
    return ["grey.png", "rgb.jpg", "palette.png", "sixteen.png", "cmyk.tif"]


@pytest.fixture(scope="session")
def lite0_run(tmp_path_factory, fashion_dir) -> Path:
    """EfficientNet-Lite0 fine-tuned from its real ImageNet weights on 300 Fashion-MNIST images: its best checkpoint
    (trained once per test run)."""

    def train_into(work: Path) -> str:
        cfg = compose_config("train", ["experiment=lite0_finetune", "data.train_size=300", "trainer.max_epochs=2",
                                       "logger=none", "test=false"], work, work / "run")  # fmt: skip
        return train(cfg)["best_checkpoint"]

    return Path(trained_once(tmp_path_factory, "lite0_run", train_into))


@pytest.mark.parametrize("model", ["seed", "lite0"])
def test_explain_cli_overlays_every_readable_image_of_any_mode(model, tmp_path, fashion_run, lite0_run):
    checkpoint = fashion_run[1] if model == "seed" else lite0_run
    good = odd_mode_folder(tmp_path / "in")
    out = tmp_path / "out"
    command = [sys.executable, "-m", "cnnlab", "explain", f"ckpt_path={checkpoint}", f"inputs={tmp_path / 'in'}",
               f"output={out}", "logger=none"]  # fmt: skip
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    log = result.stdout + result.stderr
    assert result.returncode == 1, log[-2000:]  # one file could not be read: the work went on, the code says so
    assert "broken.png" in log and "skipped 1 file(s) that are not images by their extension" in log
    report = json.loads((out / "explain.json").read_text())
    assert sorted(Path(f["file"]).name for f in report["files"]) == sorted(good)
    assert list(report["errors"]) == [str(tmp_path / "in" / "broken.png")]
    grid = Image.open(out / "gradcam_000.png")
    assert grid.size[0] == 8 * 128 and grid.size[1] > 2 * 128  # 5 images + 5 overlays: two rows of 8 tiles
    expected_layer = "backbone.features.5" if model == "seed" else "backbone.model.blocks.6"
    assert report["layer"] == expected_layer


@pytest.fixture(scope="session")
def canvas_run(tmp_path_factory, fashion_dir) -> Path:
    """A seed CNN (3 padded stages) trained on 4,000 real Fashion-MNIST items, each placed at a random spot of a blank
    56 px canvas and read through data=image_folder: a model that has to find the item. Its best checkpoint (trained
    once per test run)."""
    return Path(trained_once(tmp_path_factory, "canvas_run", train_on_canvases))


def train_on_canvases(work: Path) -> str:
    images, labels = fashion_items("train", 4000)
    rng = np.random.default_rng(0)
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        canvas = np.zeros((CANVAS, CANVAS), np.uint8)
        row, col = rng.integers(0, CANVAS - ITEM + 1, 2)
        canvas[row : row + ITEM, col : col + ITEM] = image
        folder = work / "data" / f"class{label}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(canvas).save(folder / f"{i}.png")
    overrides = ["data=image_folder", f"data.root={work / 'data'}", f"data.image_size={CANVAS}", "data.channels=1",
                 "data.num_workers=0", "model.backbone.padding=1", "model.backbone.widths=[32,64,128]",
                 "trainer.max_epochs=3", "logger=none", "test=false"]  # fmt: skip
    return train(compose_config("train", overrides, work, work / "run"))["best_checkpoint"]


def fashion_items(split: str, count: int) -> tuple[np.ndarray, np.ndarray]:
    dm = FashionMNISTDataModule(system_dirs=["/usr/share/datasets/fashion-mnist"], train_size=None)
    dm.info  # noqa: B018 (loads the splits)
    images, labels = dm.splits.test if split == "test" else dm.splits.train
    return images[:count, 0].numpy(), labels[:count].numpy()


def canvas_images(count: int, seed: int) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """Test items at random known places of blank canvases: (uint8 (N, 1, 56, 56), the items' top-left corners)."""
    items, _ = fashion_items("test", count)
    rng = np.random.default_rng(seed)
    canvases, corners = np.zeros((count, 1, CANVAS, CANVAS), np.uint8), []
    for i, item in enumerate(items):
        row, col = (int(v) for v in rng.integers(0, CANVAS - ITEM + 1, 2))
        canvases[i, 0, row : row + ITEM, col : col + ITEM] = item
        corners.append((row, col))
    return torch.from_numpy(canvases), corners


def mass_in_box(maps: np.ndarray, corners: list[tuple[int, int]]) -> np.ndarray:
    """The share of each map's mass that lies in its item's box."""
    boxes = [m[r : r + ITEM, c : c + ITEM].sum() for m, (r, c) in zip(maps, corners, strict=True)]
    return np.array(boxes) / np.maximum(maps.sum((1, 2)), 1e-12)


def test_gradcam_mass_lies_on_the_object(canvas_run):
    """The item covers 1/4 of the canvas, so a map blind to it (uniform, or anywhere at random) puts 0.25 of its mass
    in the item's box; "mostly inside" is a majority, 0.5, twice chance (measured: 0.76 on average, 98% of images
    over 0.5). The same maps against the boxes of other images stay near chance: the alignment is what counts."""
    model = load_classifier(canvas_run)
    images, corners = canvas_images(64, seed=1)
    _, layer = find_layer(model, None)
    maps = class_maps(model, images, model(images).argmax(1).tolist(), layer, "gradcam")
    assert maps.shape == (64, CANVAS, CANVAS)
    inside = mass_in_box(maps, corners)
    shuffled = mass_in_box(maps, corners[1:] + corners[:1])
    print(f"Grad-CAM mass in the item's box: mean {inside.mean():.3f} (another image's box: {shuffled.mean():.3f})")
    assert inside.mean() > 0.5 and (inside > 0.5).mean() > 0.8
    assert shuffled.mean() < inside.mean() - 0.2


@pytest.mark.parametrize("method", ["gradcam++", "layercam", "eigencam"])
def test_other_cam_methods_find_the_object_too(canvas_run, method):
    model = load_classifier(canvas_run)
    images, corners = canvas_images(32, seed=2)
    _, layer = find_layer(model, None)
    inside = mass_in_box(class_maps(model, images, model(images).argmax(1).tolist(), layer, method), corners)
    assert inside.mean() > 0.5, f"{method}: {inside.mean():.3f}"


def test_sanity_check_maps_change_when_the_weights_are_destroyed(fashion_run):
    """Adebayo et al.'s cascading randomization on the trained seed CNN: once the weights are random, the Grad-CAM
    maps no longer rank the pixels as the trained model's do."""
    model = load_classifier(fashion_run[1])
    images, _, _ = fashion_test_images(32)
    layer_name, _ = find_layer(model, None)
    trained, steps = sanity_check(model, images, model(images).argmax(1).tolist(), layer_name, "gradcam")
    print("\n".join(f"randomized {s.randomized}: mean rank correlation {s.mean_rho:+.3f}" for s in steps))
    assert [s.randomized.split(" (")[0] for s in steps] == ["head", "stage 2/2", "stage 1/2"]
    everything_random = steps[-1]
    assert not everything_random.insensitive and abs(everything_random.mean_rho) < INSENSITIVE_RHO
    assert np.abs(everything_random.maps - trained).mean() > 0.1
    # the copy was randomized, not the model itself
    assert torch.equal(model.head[0].weight, load_classifier(fashion_run[1]).head[0].weight)


def test_sanity_check_flags_a_map_that_ignores_the_weights(fashion_run, monkeypatch):
    """A "saliency map" that is the input's own brightness survives every randomization: flagged as insensitive."""
    model = load_classifier(fashion_run[1])
    images, _, _ = fashion_test_images(8)
    monkeypatch.setattr(cams, "class_maps", lambda _m, imgs, *_a, **_k: imgs[:, 0].float().numpy() / 255)
    _, steps = sanity_check(model, images, [0] * 8, find_layer(model, None)[0])
    assert all(s.insensitive and s.mean_rho > 0.99 for s in steps)


@pytest.mark.parametrize(
    ("name", "stage"),
    [("resnet18", "backbone.model.layer4"), ("tf_efficientnet_lite0", "backbone.model.blocks.6"),
     ("mobilenetv3_large_100", "backbone.model.blocks.6"), ("vgg11", "backbone.model.features.20"),
     ("convnext_nano", "backbone.model.stages.3")],
)  # fmt: skip
def test_the_last_conv_stage_is_found_for_every_backbone_family(name, stage, tmp_path):
    info = DataInfo("rgb", 3, 3, (64, 64), ("a", "b", "c"), (0.5,) * 3, (0.25,) * 3)
    model = build_model(compose_config("train", ["model=timm", f"model.backbone.name={name}"], tmp_path, tmp_path),
                        info).eval()  # fmt: skip
    layer_name, layer = find_layer(model, None)
    assert layer_name == stage
    images = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    maps = class_maps(model, images, [0, 2], layer, "gradcam")
    assert maps.shape == (2, 64, 64) and np.isfinite(maps).all()
    twin = build_model(compose_config("train", ["model=timm", f"model.backbone.name={name}"], tmp_path, tmp_path), info)
    with pytest.raises(CnnlabError, match="not a module of this model"):  # a layer of another model: no map at all
        class_maps(model, images, [0, 2], find_layer(twin, None)[1])
    with pytest.raises(CnnlabError, match=rf"layer='backbone.model.nope' is not a module.*{stage}"):
        find_layer(model, "backbone.model.nope")


def test_a_frozen_backbone_still_gets_maps(tmp_path):
    """transfer=frozen loads with the backbone's parameters frozen: the maps need its gradients all the same."""
    info = DataInfo("grey", 10, 1, (28, 28), tuple("abcdefghij"), (0.3,), (0.3,))
    model = build_model(compose_config("train", ["transfer=frozen", "transfer.pretrained=false"], tmp_path, tmp_path),
                        info).eval()  # fmt: skip
    assert not any(p.requires_grad for p in model.backbone.parameters())
    images, _, _ = fashion_test_images(4)
    maps = class_maps(model, images, [0, 1, 2, 3], find_layer(model, None)[1])
    assert maps.shape == (4, 28, 28) and maps.max() > 0
    assert not any(p.requires_grad for p in model.backbone.parameters())  # restored


def test_features_draw_each_stage_strongest_channel_first(tmp_path, fashion_run):
    images, _, _ = fashion_test_images(1)
    Image.fromarray(images[0, 0].numpy()).save(tmp_path / "one.png")
    report = explain_images(explain_cfg(tmp_path, f"ckpt_path={fashion_run[1]}", f"inputs={tmp_path / 'one.png'}",
                                 "what=features", "max_channels=8"))  # fmt: skip
    assert [s["module"] for s in report["stages"]] == ["backbone.features.2", "backbone.features.5"]
    assert [s["shape"] for s in report["stages"]] == [[32, 13, 13], [64, 5, 5]]
    assert {Path(p).name for p in report["pictures"]} == {"features_stage1.png", "features_stage2.png", "filters.png"}
    activations = torch.tensor([[[0.0, 1.0]], [[5.0, 5.0]], [[2.0, 2.0]]])
    maps, order = strongest_channels(activations, 2)
    assert order == [1, 2] and maps.shape == (2, 1, 1, 2)


def test_targets_true_and_by_name(tmp_path, fashion_run):
    images, labels, names = fashion_test_images(4)
    for image, label in zip(images, labels, strict=True):
        folder = tmp_path / "in" / names[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[0].numpy()).save(folder / f"{len(list(folder.iterdir()))}.png")
    common = [f"ckpt_path={fashion_run[1]}", f"inputs={tmp_path / 'in'}"]
    report = explain_images(explain_cfg(tmp_path, *common, "target=true"))
    assert sorted(f["target"] for f in report["files"]) == sorted(names[i] for i in labels)
    report = explain_images(explain_cfg(tmp_path, *common, "target=Bag"))
    assert {f["target"] for f in report["files"]} == {"Bag"}
    with pytest.raises(CnnlabError, match=r"target='Handbag'.*Ankle boot"):
        explain_images(explain_cfg(tmp_path, *common, "target=Handbag"))
    Image.fromarray(images[0, 0].numpy()).save(tmp_path / "loose.png")
    with pytest.raises(CnnlabError, match=r"loose\.png is not in a folder named after a class"):
        explain_images(
            explain_cfg(tmp_path, f"ckpt_path={fashion_run[1]}", f"inputs={tmp_path / 'loose.png'}", "target=true")
        )


def test_bad_explain_values_are_listed_in_one_message(tmp_path, fashion_run):
    with pytest.raises(CnnlabError) as err:
        explain_images(explain_cfg(tmp_path, f"ckpt_path={fashion_run[1]}", "inputs=x.png", "method=gradcamm",
                                   "what=both", "top_k=0", "sanity=maybe"))  # fmt: skip
    message = str(err.value)
    assert "nothing was run" in message and "method='gradcamm'" in message and "gradcam++" in message
    assert "what='both'" in message and "top_k=0" in message and "sanity='maybe'" in message
    with pytest.raises(CnnlabError, match="sanity=true checks class activation maps"):
        explain_images(
            explain_cfg(tmp_path, f"ckpt_path={fashion_run[1]}", "inputs=x.png", "what=features", "sanity=true")
        )
    images, _, _ = fashion_test_images(1)
    Image.fromarray(images[0, 0].numpy()).save(tmp_path / "one.png")
    with pytest.raises(CnnlabError, match=r"layer='head.9' is not a module.*backbone.features.5"):
        explain_images(
            explain_cfg(tmp_path, f"ckpt_path={fashion_run[1]}", f"inputs={tmp_path / 'one.png'}", "layer=head.9")
        )
