"""Applying a trained model: cnnlab eval, cnnlab predict on image files, data=image_folder, export."""

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
from cnnlab.errors import CnnlabError
from cnnlab.run.checkpoints import load_classifier
from cnnlab.run.evaluation import evaluate
from cnnlab.run.prediction import predict_files
from cnnlab.run.training import train
from tests.conftest import compose_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def trained(fashion_run):
    """The session's shared Fashion-MNIST run (tests/conftest.py): (summary, best checkpoint, work dir)."""
    return fashion_run


def fashion_test_images(count: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    dm = FashionMNISTDataModule(system_dirs=["/usr/share/datasets/fashion-mnist"])
    images, labels = dm.info and dm.splits.test
    return images[:count], labels[:count], list(dm.info.class_names)


def write_pngs(images: torch.Tensor, folder: Path, mode: str = "L") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(images):
        grey = Image.fromarray(image[0].numpy(), mode="L")
        picture = {
            "L": grey,
            "RGB": grey.convert("RGB"),
            "P": grey.convert("RGB").quantize(256, method=Image.MAXCOVERAGE),
        }[mode]
        paths.append(folder / f"{i:04d}_{mode}.png")
        picture.save(paths[-1])
    return paths


def test_eval_reproduces_training_test_accuracy(trained):
    summary, checkpoint, work = trained
    cfg = compose_config("eval", [f"ckpt_path={checkpoint}"], work, work / "eval")
    report = evaluate(cfg)
    assert abs(report["test/acc"] - summary["test/acc"]) <= 0.001
    stored = json.loads((work / "eval" / "metrics.json").read_text())
    assert set(stored["per_class"]) == {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                                        "Sneaker", "Bag", "Ankle boot"}  # fmt: skip
    assert 0 < stored["macro/f1"] <= 1 and stored["per_class"]["Trouser"]["support"] == 1000
    assert (work / "eval" / "confusion_matrix.png").is_file() and (work / "eval" / "mistakes.png").is_file()


def test_eval_rejects_a_broken_checkpoint(tmp_path, trained):
    _, checkpoint, _ = trained
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(checkpoint.read_bytes()[:5000])
    with pytest.raises(CnnlabError, match=r"broken.ckpt' is not a readable checkpoint"):
        load_classifier(broken)
    with pytest.raises(CnnlabError, match=r"no such file"):
        load_classifier(tmp_path / "missing.ckpt")


@pytest.mark.parametrize("mode", ["L", "RGB", "P"])
def test_predict_on_png_files_matches_in_memory_predictions(tmp_path, trained, mode):
    _, checkpoint, _ = trained
    model = load_classifier(checkpoint)
    images, _, names = fashion_test_images(64)
    paths = write_pngs(images, tmp_path, mode)
    results, errors = predict_files(model, paths, top_k=3, batch_size=16)
    assert not errors and len(results) == 64
    with torch.no_grad():
        expected = model(images).argmax(1).tolist()
    assert [names.index(r["top"][0]["label"]) for r in results] == expected
    assert all(len(r["top"]) == 3 and r["top"][0]["prob"] >= r["top"][1]["prob"] for r in results)


def test_predict_handles_any_size_and_mode(tmp_path, trained):
    _, checkpoint, _ = trained
    model = load_classifier(checkpoint)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (300, 200, 3), dtype=np.uint8)).save(tmp_path / "big.jpg")
    Image.fromarray(rng.integers(0, 256, (40, 50, 4), dtype=np.uint8), mode="RGBA").save(tmp_path / "alpha.png")
    Image.fromarray(rng.integers(0, 65535, (28, 28), dtype=np.uint16)).save(tmp_path / "deep.png")
    Image.fromarray(rng.integers(0, 256, (28, 28, 3), dtype=np.uint8)).convert("CMYK").save(tmp_path / "print.tiff")
    Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(tmp_path / "plain.bmp")
    results, errors = predict_files(model, sorted(tmp_path.iterdir()))
    assert not errors and len(results) == 5


def test_predict_cli_reports_bad_files_and_exits_non_zero(tmp_path, trained):
    _, checkpoint, _ = trained
    images, _, _ = fashion_test_images(5)
    folder = tmp_path / "in"
    write_pngs(images, folder)
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "preds.csv"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    command = [
        sys.executable,
        "-m",
        "cnnlab",
        "predict",
        f"ckpt_path={checkpoint}",
        f"inputs={folder}/*",
        f"output={out}",
    ]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr[-2000:]
    log = result.stdout + result.stderr
    assert "corrupt.png" in log and "notes.txt" in log
    rows = out.read_text().splitlines()
    assert len(rows) == 1 + 7 and sum(",ok," in r for r in rows) == 5
    json_out = tmp_path / "preds.json"
    folder_run = subprocess.run([sys.executable, "-m", "cnnlab", "predict", f"ckpt_path={checkpoint}",
                                 f"inputs={folder}", f"output={json_out}"], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=300)  # fmt: skip
    assert len(json.loads(json_out.read_text())["predictions"]) == 5
    # A folder's notes.txt is not an image by its extension: named once as skipped, not counted as a failure.
    assert "skipped 1 file(s) that are not images by their extension" in folder_run.stdout + folder_run.stderr
    assert not [f for f in json.loads(json_out.read_text())["errors"] if f.endswith("notes.txt")]


def make_folder_tree(root: Path, per_class_train: int, per_class_test: int) -> dict[str, dict[str, torch.Tensor]]:
    """Fashion-MNIST as PNGs in root/train/<class>/ and root/test/<class>/; returns {split: {file name: image}}."""
    dm = FashionMNISTDataModule(system_dirs=["/usr/share/datasets/fashion-mnist"], val_fraction=0.1)
    names = dm.info.class_names
    written: dict[str, dict[str, torch.Tensor]] = {"train": {}, "test": {}}
    for split, (images, labels), per_class in (("train", dm.splits.train, per_class_train),
                                               ("test", dm.splits.test, per_class_test)):  # fmt: skip
        for c, name in enumerate(names):
            folder = root / split / name.replace("/", "-")
            folder.mkdir(parents=True)
            for i in torch.nonzero(labels == c).flatten()[:per_class].tolist():
                Image.fromarray(images[i, 0].numpy(), mode="L").save(folder / f"{i}.png")
                written[split][f"{i}.png"] = images[i]
    return written


def test_image_folder_decodes_exactly_the_images_written_cached_or_streamed(tmp_path, fashion_dir):
    """The data path, checked by decoded tensors rather than by training: PNGs of real Fashion-MNIST images come
    back bit-identical, with their class folders' labels, whether decoded once into memory or per batch from
    disk; a broken file is skipped by name."""
    from cnnlab.data import ImageFolderDataModule

    root = tmp_path / "fashion_pngs"
    written = make_folder_tree(root, per_class_train=6, per_class_test=4)
    (root / "train" / "Bag" / "broken.png").write_bytes(b"not a png")
    for streamed in (False, True):
        dm = ImageFolderDataModule(root=str(root), channels=1, image_size=28, cache_max_gb=0 if streamed else 4,
                                   num_workers=0, eval_batch_size=7, val_fraction=0.2)  # fmt: skip
        dm.setup()
        assert dm.streaming is streamed and "Bag" in dm.info.class_names and dm.skipped == (0 if streamed else 1)
        batches = list(dm.test_dataloader())
        images, labels = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
        files = [p for name in dm.info.class_names for p in sorted((root / "test" / name).iterdir())]
        assert len(images) == len(files) == 40
        for image, label, path in zip(images, labels, files, strict=True):
            assert torch.equal(image, written["test"][path.name]) and path.parent.name == dm.info.class_names[label]
        train_count = sum(len(b[1]) for b in dm.train_dataloader()) + sum(len(b[1]) for b in dm.val_dataloader())
        assert train_count == 60  # every readable training image, in train or val


def test_image_folder_trains_end_to_end(tmp_path, make_cfg, fashion_dir):
    root = tmp_path / "fashion_pngs"
    make_folder_tree(root, per_class_train=30, per_class_test=10)
    cfg = make_cfg("data=image_folder", f"data.root={root}", "data.channels=1", "data.image_size=28",
                   "model.backbone.padding=1", "trainer.max_epochs=3", "callbacks=none", "logger=none")  # fmt: skip
    summary = train(cfg)
    assert summary["test/acc"] > 0.4  # 10 classes, 270 training images, 3 epochs: well above chance (0.1)


def test_image_folder_errors(tmp_path):
    from cnnlab.data import ImageFolderDataModule

    with pytest.raises(CnnlabError, match="is not a directory"):
        ImageFolderDataModule(root=str(tmp_path / "nope")).setup()
    (tmp_path / "cats").mkdir()
    (tmp_path / "dogs").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "cats" / "a.png")
    with pytest.raises(CnnlabError, match=r"class folders with no images .*: dogs"):
        ImageFolderDataModule(root=str(tmp_path)).setup()


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_export_round_trip(tmp_path, trained, fmt):
    pytest.importorskip("onnxruntime") if fmt == "onnx" else None
    from cnnlab.run.exporting import example_batch, export

    _, checkpoint, work = trained
    out = tmp_path / f"model.{'onnx' if fmt == 'onnx' else 'pt'}"
    info = export(compose_config("export", [f"ckpt_path={checkpoint}", f"format={fmt}", f"output={out}"], work,
                                 work / f"export_{fmt}"))  # fmt: skip
    assert info["max_abs_diff"] < 1e-4 and Path(str(out) + ".json").is_file()
    model = load_classifier(checkpoint)
    images = example_batch(model, batch=5, seed=7)
    with torch.no_grad():
        expected = model(images)
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        got = torch.from_numpy(session.run(None, {"images": images.numpy()})[0])
    else:
        got = torch.jit.load(str(out))(images)
    assert (got - expected).abs().max() < 1e-4


def test_eval_reports_the_same_loss_as_the_training_run(digits_run, tmp_path):
    """One loss: the digits run smooths its labels (0.1), and cnnlab eval's test/loss is that smoothed loss."""
    summary, _ = digits_run
    report = evaluate(compose_config("eval", [f"ckpt_path={summary['best_checkpoint']}"], tmp_path, tmp_path / "eval"))
    assert report["test/acc"] == pytest.approx(summary["test/acc"], abs=1e-6)
    assert report["test/loss"] == pytest.approx(summary["test/loss"], abs=1e-5)


def test_image_folder_k_fold_cuts_train_and_val_folders_together(tmp_path, fashion_dir):
    from cnnlab.data import ImageFolderDataModule

    root = tmp_path / "fashion_pngs"
    make_folder_tree(root, per_class_train=6, per_class_test=2)
    for class_dir in (root / "train").iterdir():  # a val/ folder too: 2 of each class's 6, merged into the pool
        (root / "val" / class_dir.name).mkdir(parents=True)
        for image in sorted(class_dir.iterdir())[:2]:
            image.rename(root / "val" / class_dir.name / image.name)
    for streamed in (False, True):
        sizes = []
        for fold in range(3):
            dm = ImageFolderDataModule(root=str(root), channels=1, image_size=28, folds=3, fold=fold, num_workers=0,
                                       cache_max_gb=0 if streamed else 4)  # fmt: skip
            dm.setup()
            sizes.append(sum(len(b[1]) for b in dm.val_dataloader()))
            assert sizes[-1] + sum(len(b[1]) for b in dm.train_dataloader()) == 60
        assert sum(sizes) == 60  # every train/ and val/ image validates in exactly one fold
