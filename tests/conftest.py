"""Shared fixtures: real configs composed with hydra.compose, real data from the machine."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from omegaconf import DictConfig, open_dict

from cnnlab.utils.config import compose_config as package_compose

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Two workers on two cores (`make test` runs `pytest -n 2`): one thread each, for them and the processes their
    # tests start, instead of two each fighting over both cores (measured: see README, "Two commands").
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
# Real MNIST for tests only (see ../shared/data/README.md); the product never reads this folder itself.
SHARED_MNIST = ROOT.parent / "shared" / "data" / "mnist"


def require(path: Path, how: str) -> Path:
    if not path.is_dir():
        pytest.fail(f"{path} is missing: {how}")
    return path


@pytest.fixture(scope="session")
def fashion_dir() -> Path:
    return require(FASHION_DIR, "install it with `apt-get install dataset-fashion-mnist` (.ci/run does)")


@pytest.fixture(scope="session")
def shared_mnist() -> Path:
    return require(SHARED_MNIST, "the real MNIST for tests lives in ../shared/data/mnist beside the project")


@pytest.fixture
def mnist_data_dir(tmp_path: Path, shared_mnist: Path) -> Path:
    """A data_dir with MNIST in torchvision's layout, as a user would set it up by hand."""
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in shared_mnist.glob("*.gz"):
        (raw / f.name).symlink_to(f)
    return tmp_path / "data"


def compose_config(name: str, overrides: list[str], root: Path, output_dir: Path) -> DictConfig:
    """Compose conf/<name>.yaml with overrides, writing under `root`, as the CLI would."""
    cfg = package_compose(overrides, output_dir=output_dir, root_dir=root, config_name=name)
    with open_dict(cfg):
        if "paths.log_dir" not in " ".join(overrides):
            cfg.paths.log_dir = str(root / "outputs")
        if "data_dir" not in " ".join(overrides):
            cfg.paths.data_dir = str(root / "data")
    return cfg


@pytest.fixture
def make_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    """conf/train.yaml with overrides; the run writes to tmp_path/run."""
    return lambda *overrides: compose_config("train", list(overrides), tmp_path, tmp_path / "run")


@pytest.fixture
def copy_dir() -> Callable[[Path, Path], Path]:
    def _copy(src: Path, dst: Path) -> Path:
        shutil.copytree(src, dst)
        return dst

    return _copy


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory) -> tuple[dict, Path]:
    """One small seed-CNN run on scikit-learn's digits, trained once per test session and shared: (metrics, run
    dir). Label smoothing on, so the loss every entry point reports is the smoothed one."""
    from cnnlab.run.training import train

    work = tmp_path_factory.mktemp("digits_run")
    cfg = compose_config("train", ["data=digits", "model.backbone.padding=1", "model.label_smoothing=0.1",
                                   "trainer.max_epochs=2", "logger=csv"], work, work / "run")  # fmt: skip
    return train(cfg), work / "run"


def trained_once(tmp_path_factory, name: str, train_into: Callable[[Path], Any]) -> Any:
    """What `train_into(work_dir)` returns (plain JSON data), computed once per test run: with `pytest -n 2` the first
    worker to need it trains it into a folder both workers share, under a lock, and the other reads its result
    instead of training the same model again. Tests treat that folder as read-only."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the run's own folder, above each worker's
    work, done = root / f"shared_{name}", root / f"shared_{name}.json"
    with open(root / f"shared_{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if done.is_file():
            return json.loads(done.read_text())
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        value = train_into(work)
        done.write_text(json.dumps(value))
        return value


@pytest.fixture(scope="session")
def fashion_run(tmp_path_factory, fashion_dir) -> tuple[dict, Path, Path]:
    """The seed CNN trained once per test run on 3,000 real Fashion-MNIST images (2 epochs), shared by the tests
    that apply a model (eval, predict, export): (metrics, best checkpoint, work dir)."""
    from cnnlab.run.training import train

    def train_into(work: Path) -> dict:
        cfg = compose_config("train", ["data.train_size=3000", "trainer.max_epochs=2", "logger=csv"], work,
                             work / "run")  # fmt: skip
        return {"summary": train(cfg), "work": str(work)}

    shared = trained_once(tmp_path_factory, "fashion_run", train_into)
    return shared["summary"], Path(shared["summary"]["best_checkpoint"]), Path(shared["work"])


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The `slow` tests (a minute or so each, one process each) first: started last, one of them would keep one
    worker busy while the other has nothing left to take."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
