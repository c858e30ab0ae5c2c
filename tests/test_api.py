"""The Python API (`cnnlab.compose / train / load_classifier / predict`): light to import, and the same runs, models
and rows the verbs give."""

import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits

import cnnlab
from cnnlab.errors import CnnlabError
from cnnlab.models import ImageClassifier


class EpochCounter(L.Callback):
    def __init__(self) -> None:
        self.epochs = 0

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.epochs += 1


@pytest.fixture(scope="module")
def api_run(tmp_path_factory) -> tuple[dict, EpochCounter]:
    """One 1-epoch seed-CNN run on the digits, composed and trained through the API: (summary, callback)."""
    work = tmp_path_factory.mktemp("api_run")
    cfg = cnnlab.compose("data=digits", "model.backbone.padding=1", "trainer.max_epochs=1", "logger=none",
                         output_dir=work / "run", root_dir=work)  # fmt: skip
    counter = EpochCounter()
    return cnnlab.train(cfg, callbacks=[counter]), counter


def digit_pngs(folder: Path, count: int) -> tuple[list[Path], torch.Tensor]:
    """The first `count` digits as 8x8 greyscale PNGs (0..255, as DigitsDataModule scales them)."""
    images = torch.from_numpy(load_digits().images[:count] * (255 / 16)).round().to(torch.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"digit{i}.png" for i in range(count)]
    for path, image in zip(paths, images, strict=True):
        Image.fromarray(image.numpy(), mode="L").save(path)
    return paths, images.unsqueeze(1)


def test_import_cnnlab_imports_no_torch():
    code = (
        "import sys, cnnlab; assert cnnlab.__version__ and {'compose', 'predict'} <= set(dir(cnnlab)); "
        "print(sorted(m for m in ('torch', 'lightning', 'hydra', 'omegaconf', 'cnnlab.api') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'fit'"):
        cnnlab.fit  # noqa: B018


def test_compose_and_train_give_the_runs_summary(api_run):
    summary, counter = api_run
    assert counter.epochs == 1 and summary["epochs"] == 1
    assert 0 <= summary["test/acc"] <= 1 and Path(summary["best_checkpoint"]).is_file()


def test_compose_refuses_a_list_of_overrides():
    with pytest.raises(CnnlabError, match=r"compose\(\*my_list\)"):
        cnnlab.compose(["data=digits"])


def test_predict_gives_the_models_own_answers_row_by_row(api_run, tmp_path):
    model = cnnlab.load_classifier(api_run[0]["best_checkpoint"])
    assert type(model) is ImageClassifier and not model.training
    paths, images = digit_pngs(tmp_path / "pngs", 6)
    broken = tmp_path / "pngs" / "digit3b.png"  # sorted between digit3 and digit4
    broken.write_bytes(b"not a png")
    rows = cnnlab.predict(model, tmp_path / "pngs", top_k=2, batch_size=4)
    assert [row["file"] for row in rows] == sorted(str(p) for p in [*paths, broken])
    failed = [row for row in rows if "error" in row]
    assert [row["file"] for row in failed] == [str(broken)] and failed[0]["top"] == []
    read = [row for row in rows if "error" not in row]
    expected = model.predict_logits(images).softmax(1).topk(2, dim=1)
    for row, probs, classes in zip(read, expected.values.tolist(), expected.indices.tolist(), strict=True):
        assert [t["label"] for t in row["top"]] == [model.class_names[c] for c in classes]
        assert [t["prob"] for t in row["top"]] == pytest.approx(probs, abs=1e-5)


def test_predict_refuses_bad_values_before_reading_anything(api_run, tmp_path):
    model = cnnlab.load_classifier(api_run[0]["best_checkpoint"])
    with pytest.raises(CnnlabError, match="top_k=0"):
        cnnlab.predict(model, tmp_path, top_k=0)
    with pytest.raises(CnnlabError, match="matches no image file"):
        cnnlab.predict(model, tmp_path / "*.png")


def test_lightnings_unchecked_loader_points_to_load_classifier():
    with pytest.raises(TypeError, match=r"cnnlab\.load_classifier\(path\)"):
        ImageClassifier.load_from_checkpoint("any.ckpt")
