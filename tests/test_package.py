"""cnnlab as users get it: a wheel installed (not editable) into a fresh environment, run from a project directory
of the user's own with its own conf/ (experiment, model, data), DataModule, backbone and model class."""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import lightning as L
import pytest
import torch
from PIL import Image

from cnnlab.data import DataInfo
from cnnlab.errors import CnnlabError
from cnnlab.run.builders import build_datamodule
from cnnlab.run.training import train
from cnnlab.utils.config import USER_CONF_ENV, compose_config

ROOT = Path(__file__).resolve().parents[1]
USER_PROJECT = Path(__file__).resolve().parent / "user_project"


def run(args: list, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    output = f"{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    assert result.returncode == 0, f"{args} failed ({result.returncode}):\n{output}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with cnnlab's wheel installed non-editable: its bin/ folder. The wheel is built from a copy of
    the sources (the build writes nothing into the checkout); the dependencies (torch & co., gigabytes) are this
    environment's, made visible through a .pth file, so only cnnlab itself comes from the wheel."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for part in ("src", "conf"):
        shutil.copytree(ROOT / part, source / part, ignore=ignore)
    for part in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / part, source / part)
    run([sys.executable, "-m", "pip", "wheel", source, "--no-deps", "--no-build-isolation", "-q", "-w", work], work)
    wheel = next(work.glob("cnnlab-*.whl"))
    venv = work / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv], work)
    python = venv / "bin" / "python"
    run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-index", wheel], work)
    site = run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], work).stdout.strip()
    (Path(site) / "cnnlab_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv / "bin"


def test_the_wheel_holds_the_configs_and_the_plugin(installed):
    code = (
        "import cnnlab, importlib.resources as r, hydra_plugins.cnnlab_searchpath as p; print(cnnlab.__file__); "
        "print(sorted(x.name for x in r.files('cnnlab.conf').iterdir())); print(p.__file__)"
    )
    out = run([installed / "python", "-c", code], cwd=installed).stdout.splitlines()
    assert out[0].startswith(str(installed.parent)), "cnnlab must come from the installed wheel, not the checkout"
    assert {"train.yaml", "eval.yaml", "model", "data", "experiment"} <= set(eval(out[1]))
    assert out[2].startswith(str(installed.parent))


@pytest.mark.slow
def test_a_users_project_trains_evaluates_predicts_and_exports_with_the_wheel(installed, tmp_path):
    project = shutil.copytree(USER_PROJECT, tmp_path / "project", ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", USER_CONF_ENV, "CNNLAB_ROOT")}
    trained = run([installed / "cnnlab", "train", "experiment=my_run", "callbacks.progress_bar.refresh_rate=0"],
                  project, env)  # fmt: skip
    run_dir = next((project / "outputs" / "runs").glob("*/*_my_run"))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test/acc"] >= 0.9, trained.stderr[-2000:]
    assert "💡" not in trained.stdout + trained.stderr and "LeafSpec" not in trained.stderr
    checkpoint = Path(metrics["best_checkpoint"])
    saved = torch.load(checkpoint, weights_only=True)
    assert saved["cnnlab"]["model_class"] == "my_project.nets.MyClassifier"

    run([installed / "cnnlab", "eval", f"ckpt_path={checkpoint}", "hydra.run.dir=eval"], project, env)
    report = json.loads((project / "eval" / "metrics.json").read_text())
    assert report["test/acc"] == pytest.approx(metrics["test/acc"]) and report["data"] == "patterns"
    assert report["test/loss"] == pytest.approx(metrics["test/loss"], abs=1e-5)  # the user's own loss, both times

    sys.path.insert(0, str(project))
    try:
        from my_project.data import CLASSES, patterns
    finally:
        sys.path.remove(str(project))
        for name in [m for m in sys.modules if m.split(".")[0] == "my_project"]:  # this copy is no other test's
            del sys.modules[name]
    images, labels = patterns(6, 16, seed=7)
    for i, image in enumerate(images):
        Image.fromarray(image[0].numpy()).save(project / f"pattern{i}.png")
    out = run([installed / "cnnlab", "predict", f"ckpt_path={checkpoint}", "inputs=pattern*.png", "hydra.run.dir=pred"],
              project, env).stdout  # fmt: skip
    predicted = [line.split(": ")[1].rsplit(" ", 1)[0].split("  ")[0] for line in out.splitlines() if ".png: " in line]
    predicted = [p.rsplit(" ", 1)[0] for p in predicted]
    assert predicted == [CLASSES[i] for i in labels.tolist()]

    run([installed / "cnnlab", "export", f"ckpt_path={checkpoint}", "format=torchscript", "hydra.run.dir=export"],
        project, env)  # fmt: skip
    assert (project / "export" / checkpoint.with_suffix(".pt").name).is_file()  # in the export's own run dir

    # Looking inside the user's own backbone: its last conv is where the maps are computed; the sanity check
    # randomizes its layers one by one (it has no `stages()`).
    run([installed / "cnnlab", "explain", f"ckpt_path={checkpoint}", "inputs=pattern*.png", "sanity=true",
         "hydra.run.dir=explain"], project, env)  # fmt: skip
    explained = json.loads((project / "explain" / "explain.json").read_text())
    assert len(explained["files"]) == 6 and explained["layer"] == "backbone.features.3"
    assert [step["randomized"].split(" (")[0] for step in explained["sanity"]] == ["head", "stage 2/2", "stage 1/2"]
    # The 0.1 name still works for one release (cnnlab-summary is now `cnnlab layers`) and says the new one.
    old = run([installed / "cnnlab-summary", "experiment=my_run", "hydra.run.dir=summary"], project, env)
    assert "cnnlab-summary is now `cnnlab layers`" in old.stderr
    summarized = json.loads((project / "summary" / "model_summary.json").read_text())
    assert summarized["params"] == metrics["params"]["total"] and summarized["macs"] == metrics["params"]["macs"]


def test_user_configs_come_from_the_environment_variable_too(tmp_path, monkeypatch):
    """From any directory: $CNNLAB_CONFIG_PATH names the user's conf/, whose project becomes importable."""
    project = shutil.copytree(USER_PROJECT, tmp_path / "project", ignore=shutil.ignore_patterns("__pycache__"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv(USER_CONF_ENV, str(project / "conf"))
    monkeypatch.setattr(sys, "path", list(sys.path))
    cfg = compose_config(["experiment=my_run", "trainer.max_epochs=1", "logger=none", "callbacks=none"],
                         output_dir=tmp_path / "run")  # fmt: skip
    assert cfg.model._target_ == "my_project.nets.MyClassifier" and cfg.data._target_ == "my_project.data.PatternData"
    summary = train(cfg)
    assert summary["test/acc"] > 0.5


class NoInfo(L.LightningDataModule):
    """A DataModule that does not say what it holds."""


class HalfInfo(L.LightningDataModule):
    info = {"num_classes": 3}  # noqa: RUF012


class NamesDoNotMatch(L.LightningDataModule):
    info = DataInfo("x", num_classes=3, in_chans=1, image_size=(8, 8), class_names=("a", "b"), mean=(0.5,), std=(0,))


@pytest.mark.parametrize(("name", "message"), [
    ("NoInfo", r"NoInfo has no `info`, so cnnlab cannot size the model.*'Your own DataModule'"),
    ("HalfInfo", r"its `info` lacks name, in_chans, image_size, class_names, mean, std"),
    ("NamesDoNotMatch", r"info.class_names=\('a', 'b'\): a list of num_classes=3 names(.|\n)*info.std=\(0,\)"),
])  # fmt: skip
def test_a_datamodule_that_breaks_the_contract_gets_a_clear_error(name, message):
    with pytest.raises(CnnlabError, match=message):
        build_datamodule({"_target_": f"tests.test_package.{name}"})
