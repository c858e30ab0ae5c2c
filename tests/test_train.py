"""Real training runs through the real entry point on real data, in small slices (the recipes' full-length
accuracy is benchmarks/recipe_accuracy.py's job)."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from cnnlab.run.training import train
from cnnlab.utils.rundir import unique_dir

ROOT = Path(__file__).resolve().parents[1]


def read_metrics(cfg) -> dict:
    return json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())


def test_short_fashion_training_learns_and_writes_everything(make_cfg, fashion_dir):
    cfg = make_cfg("data.train_size=3000", "trainer.max_epochs=1", "trainer.log_every_n_steps=10")
    summary = train(cfg)
    metrics = read_metrics(cfg)
    assert metrics["val/acc"] > 0.6 and metrics["test/acc"] > 0.6  # chance is 0.1
    assert metrics["val/acc_best"] == pytest.approx(metrics["val/acc"])
    assert metrics["params"]["total"] == 225_034 and summary["test/acc"] == metrics["test/acc"]
    assert {"train/loss", "train/acc", "val/loss", "test/loss"} <= metrics.keys()
    out = Path(cfg.paths.output_dir)
    assert (out / "checkpoints" / "last.ckpt").is_file() and Path(metrics["best_checkpoint"]).is_file()
    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"images": 0, "tensors": 0}).Reload()
    tags = events.Tags()
    assert {"train/loss_step", "train/loss", "val/acc", "val/acc_best", "test/acc"} <= set(tags["scalars"])
    assert any(t.startswith("lr-") for t in tags["scalars"])
    assert "test/confusion_matrix" in tags["images"]
    session = plugin_data_pb2.HParamsPluginData.FromString(
        events.SummaryMetadata("_hparams_/session_start_info").plugin_data.content
    ).session_start_info
    assert session.hparams["data/train_size"].number_value == 3000
    experiment = plugin_data_pb2.HParamsPluginData.FromString(
        events.SummaryMetadata("_hparams_/experiment").plugin_data.content
    ).experiment
    assert {"val/acc_best", "test/acc"} <= {m.name.tag for m in experiment.metric_infos}


def test_resume_continues_from_checkpoint(make_cfg, fashion_dir):
    first = make_cfg("data.train_size=640", "trainer.max_epochs=1")
    train(first)
    last = Path(first.paths.output_dir) / "checkpoints" / "last.ckpt"
    resumed = make_cfg("data.train_size=640", "trainer.max_epochs=2", f"ckpt_path={last}")
    resumed.paths.output_dir = str(Path(first.paths.output_dir).parent / "resumed")
    summary = train(resumed)
    assert summary["epochs"] == 2 and summary["global_step"] == 2 * 10  # 640 / 64 steps per epoch


def test_digits_trains_to_high_accuracy(make_cfg):
    summary = train(make_cfg("data=digits", "trainer.max_epochs=15", "model.backbone.padding=1"))
    assert summary["test/acc"] > 0.9
    assert summary["params"]["total"] < 225_034  # the head is sized from the 8x8 input, not hard-coded


def test_gradient_clipping_bounds_every_sgd_step(make_cfg, tmp_path):
    """trainer.gradient_clip_val reaches the written-out optimizer step. With plain SGD (update = lr x gradient,
    no momentum, no weight decay) a 1e-6 norm clip bounds 30 steps at lr 0.1 to 3e-6 in all; unclipped, the
    weights move by far more."""
    import lightning as L
    import torch

    class Distance(L.Callback):
        def on_train_start(self, trainer, module):
            self.start = torch.cat([p.detach().flatten().clone() for p in module.parameters()])

        def on_train_end(self, trainer, module):
            end = torch.cat([p.detach().flatten() for p in module.parameters()])
            self.moved = float((end - self.start).norm())

    moved = {}
    for clip in ("1e-6", "null"):
        cfg = make_cfg("data=digits", "model.backbone.padding=1", "optimizer=sgd", "optimizer.lr=0.1",
                       "optimizer.momentum=0", "optimizer.weight_decay=0", "optimizer.nesterov=false",
                       "trainer.max_epochs=2", "data.train_size=480", "data.batch_size=32", "logger=none",
                       "test=false", f"trainer.gradient_clip_val={clip}")  # fmt: skip
        cfg.paths.output_dir = str(tmp_path / clip)
        distance = Distance()
        summary = train(cfg, extra_callbacks=[distance])
        assert summary["global_step"] == 30
        moved[clip] = distance.moved
    assert moved["1e-6"] <= 30 * 0.1 * 1e-6 * 1.01 and moved["null"] > 1e-2


def test_no_logger_with_the_default_callbacks(make_cfg):
    """logger=none: the LR monitor (which needs a logger) is left out instead of Lightning refusing to start."""
    cfg = make_cfg("logger=none", "data=digits", "trainer.max_epochs=1", "model.backbone.padding=1")
    summary = train(cfg)
    assert summary["best_checkpoint"] and not (Path(cfg.paths.output_dir) / "tensorboard").exists()


def test_csv_logger_and_no_callbacks(make_cfg, fashion_dir):
    cfg = make_cfg("logger=csv", "callbacks=none", "data.train_size=500", "trainer.max_epochs=1")
    summary = train(cfg)
    assert summary["best_checkpoint"] is None and summary["test/acc"] > 0.3
    rows = list(csv.DictReader((Path(cfg.paths.output_dir) / "csv" / "metrics.csv").open()))
    assert any(r.get("val/acc") for r in rows)


def test_debug_fast_runs_on_a_folder_of_fifty_images(make_cfg, tmp_path):
    """`debug=fast` is a few batches of everything on any dataset: it sets no training-set size that a small folder
    lacks (it once forced data.train_size=1000, which a 50-image folder refused)."""
    images = np.random.default_rng(0).integers(0, 256, (50, 20, 20), dtype=np.uint8)
    for i, image in enumerate(images):
        folder = tmp_path / "pets" / f"class{i % 5}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i}.png")
    cfg = make_cfg("debug=fast", "data=image_folder", f"data.root={tmp_path / 'pets'}", "data.channels=1",
                   "data.image_size=20", "logger=none", "callbacks.progress_bar.refresh_rate=0")  # fmt: skip
    summary = train(cfg)
    assert summary["epochs"] == 1 and 0 <= summary["test/acc"] <= 1 and summary["best_checkpoint"]


def test_unique_run_dirs_in_the_same_second(tmp_path):
    first = unique_dir(str(tmp_path / "12-00-00_train"))
    second = unique_dir(str(tmp_path / "12-00-00_train"))
    assert first != second and Path(first).is_dir() and Path(second).is_dir()


def run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    env.pop("CNNLAB_ROOT", None)
    return subprocess.run(
        [sys.executable, "-m", "cnnlab", "train", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_runs_from_any_directory(tmp_path, fashion_dir):
    result = run_cli(["debug=fast"], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    runs = list((tmp_path / "outputs" / "runs").glob("*/*_train"))
    assert len(runs) == 1
    metrics = json.loads((runs[0] / "metrics.json").read_text())
    assert metrics["params"]["total"] == 225_034
    assert (runs[0] / ".hydra" / "config.yaml").is_file() and (runs[0] / "train.log").is_file()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.val_fraction=1.5", "data.val_fraction=1.5: a number in (0, 1)"),
        ("data.nonsense=1", "data.nonsense is not a key of the data group; `cnnlab train --help data` lists"),
        ("model=nonsense", "model=nonsense is not an option of the model group. Options: cnn, "),
        ("paths.log_dir=/proc/cnnlab/outputs", "paths.log_dir='/proc/cnnlab/outputs' is not a writable directory"),
    ],
)
def test_cli_bad_input_is_one_clear_message(tmp_path, override, message):
    result = run_cli([override], tmp_path)
    assert result.returncode == 2
    assert message in result.stderr + result.stdout
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "outputs").exists()  # refused before anything was written


@pytest.mark.parametrize("experiment", ["seed_fashion", "fashion_cnn_fast", "mnist_cnn_fast"])
def test_recipe_smoke_run(make_cfg, mnist_data_dir, fashion_dir, experiment):
    """Each recipe composes and learns in 30 steps; their full-length accuracy targets are checked by
    `python -m benchmarks.recipe_accuracy` (minutes each), not here."""
    cfg = make_cfg(f"experiment={experiment}", f"paths.data_dir={mnist_data_dir}", "logger=none",
                   "trainer.max_epochs=1", "trainer.limit_train_batches=30", "trainer.limit_val_batches=2",
                   "trainer.limit_test_batches=4")  # fmt: skip
    summary = train(cfg)
    assert summary["global_step"] == 30 and summary["test/acc"] >= 0.6, summary
    expected_weights = 225_034 if experiment.startswith("seed") else 164_402
    assert summary["params"]["total"] == expected_weights


def test_long_job_names_are_shortened_but_unique(tmp_path):
    from cnnlab.utils.rundir import unique_subdir

    long = "0_" + ",".join(f"model.backbone.option_{i}=0.123456789" for i in range(20))
    first, second = unique_subdir(str(tmp_path), long), unique_subdir(str(tmp_path), long)
    assert len(first.encode()) <= 160 and first != second and (tmp_path / first).is_dir()
    assert unique_subdir(str(tmp_path), long[:-1] + "8") not in (first, second)
