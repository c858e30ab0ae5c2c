"""Provenance: a real run records its code, libraries, machine, command and data beside it and in its checkpoints;
`cnnlab eval` says when a checkpoint comes from other code; a stored record is hostile input."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, TensorDataset

from cnnlab import __version__
from cnnlab.data.digits import DigitsDataModule
from cnnlab.data.fingerprint import data_fingerprints
from cnnlab.data.image_folder import ImageFolderDataModule
from cnnlab.data.shards import StreamingDataModule, write_shards
from cnnlab.run.checkpoints import read_checkpoint
from cnnlab.run.evaluation import evaluate
from cnnlab.run.training import train
from cnnlab.utils.provenance import (
    CHECKPOINT_KEY,
    code_differences,
    code_state,
    collect_provenance,
    git_state,
    provenance_tags,
)
from tests.conftest import compose_config

ROOT = Path(__file__).resolve().parents[1]
TINY = ["data=digits", "model.backbone.padding=1", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1", "trainer.limit_test_batches=1", "logger=none",
        "callbacks.progress_bar.refresh_rate=0"]  # fmt: skip
needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def git(cwd: Path, *args: str) -> str:
    identity = ["-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false"]
    return subprocess.run(["git", *identity, *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def cnnlab(verb: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    env.pop("CNNLAB_ROOT", None)
    return subprocess.run([sys.executable, "-m", "cnnlab", verb, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip


def dirty_project(folder: Path) -> Path:
    """A project of the user's own, a git repository of its own with a changed tracked file."""
    folder.mkdir()
    git(folder, "init", "-q")
    (folder / "notes.txt").write_text("first\n")
    git(folder, "add", "notes.txt")
    git(folder, "commit", "-q", "-m", "first")
    (folder / "notes.txt").write_text("first\nchanged\n")
    return folder


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, dict]:
    """One tiny CLI training run from a dirty project repository: (its run dir, its provenance.json)."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    project = dirty_project(tmp_path_factory.mktemp("provenance") / "project")
    result = cnnlab("train", TINY, project)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = next((project / "outputs" / "runs").glob("*/*"))
    return run_dir, json.loads((run_dir / "provenance.json").read_text())


@needs_git
def test_a_run_records_its_code_libraries_machine_command_and_data(trained):
    run_dir, record = trained
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    code = record["git"]["code"]
    assert record["cnnlab"] == {"version": __version__, "path": str(ROOT / "src" / "cnnlab"), "source": "git"}
    assert code["commit"] == head and code["root"] == str(ROOT) and isinstance(code["dirty"], bool)
    assert record["packages"]["torch"] == torch.__version__ and record["packages"]["lightning"] == L.__version__
    assert record["packages"]["python"] == platform.python_version()
    assert all(record["packages"][name] for name in ("torchvision", "timm", "hydra-core", "omegaconf"))
    assert record["device"]["accelerator"] in ("cpu", "cuda") and record["device"]["name"]
    assert record["device"]["hostname"] and record["device"]["cpu"]
    assert record["command"].endswith("train " + " ".join(TINY)) and record["argv"][1:] == ["train", *TINY]
    assert record["cwd"] == str(run_dir.parents[3])
    expected = DigitsDataModule()  # the run's data config: the same seed, split and sizes
    expected.setup()
    counts = {split: len(getattr(expected.splits, split)[1]) for split in ("train", "val", "test")}
    assert {split: value.split(" items")[0] for split, value in record["data"].items()} == {
        split: str(n) for split, n in counts.items()
    }
    assert record["data"] == data_fingerprints(expected)  # what the run really used, hashed as the run did


@needs_git
def test_a_dirty_project_tree_is_recorded_and_its_diff_saved_beside_the_run(trained):
    run_dir, record = trained
    project = record["git"]["project"]
    assert project["root"] == record["cwd"] and project["dirty"] is True and project["branch"]
    diff = (run_dir / project["diff_file"]).read_text()
    assert "+changed" in diff and "diff" not in project  # the text in its file, not in the JSON
    if record["git"]["code"]["dirty"]:  # cnnlab's own tree, when being edited, has its diff too
        assert (run_dir / record["git"]["code"]["diff_file"]).is_file()
    written = {p.name for p in run_dir.iterdir()} - {".hydra", "checkpoints", "metrics.json", "train.log"}
    assert written == {"provenance.json", project["diff_file"]} | (
        {record["git"]["code"]["diff_file"]} if record["git"]["code"]["dirty"] else set()
    )


@needs_git
def test_every_checkpoint_holds_the_record_as_plain_data(trained):
    run_dir, record = trained
    for checkpoint in (run_dir / "checkpoints").glob("*.ckpt"):
        assert read_checkpoint(checkpoint)[CHECKPOINT_KEY] == record  # read without running code


@needs_git
def test_a_resumed_run_keeps_the_record_of_the_checkpoint_it_resumed_from(trained, tmp_path):
    run_dir, record = trained
    copy = shutil.copytree(run_dir, tmp_path / "run")
    train(compose_config("train", [*TINY, "trainer.max_epochs=2", "ckpt_path=last"], tmp_path, copy))
    resumed = json.loads((copy / "provenance.json").read_text())
    assert resumed["resumed_from"] == record and resumed["argv"] != record["argv"]
    saved = [read_checkpoint(path) for path in (copy / "checkpoints").glob("*.ckpt")]
    own = [checkpoint[CHECKPOINT_KEY] for checkpoint in saved if checkpoint["epoch"] == 1]  # this run's epoch
    assert own and all(stored == resumed for stored in own)


@needs_git
def test_eval_of_a_checkpoint_from_another_commit_warns_naming_both_and_records_its_own_run(trained, tmp_path, caplog):
    """`cnnlab eval`'s own function (the CLI's process start costs seconds; its log line is this one)."""
    run_dir, record = trained
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    checkpoint[CHECKPOINT_KEY]["git"]["code"].update(commit="1a2b3c4d5e6f7a8b9c0d" * 2, dirty=True)
    torch.save(checkpoint, tmp_path / "other.ckpt")
    evaluate(compose_config("eval", [f"ckpt_path={tmp_path / 'other.ckpt'}", "logger=none"], tmp_path, tmp_path / "e"))
    lines = [r.getMessage() for r in caplog.records if "other code than runs now" in r.getMessage()]
    now = record["git"]["code"]["commit"][:12]
    assert len(lines) == 1 and f"cnnlab {__version__} at 1a2b3c4d5e6f (dirty) vs now {__version__} at {now}" in lines[0]
    assert "\n" not in lines[0]
    evaluated = json.loads((tmp_path / "e" / "provenance.json").read_text())
    assert evaluated["data"] == {"test": record["data"]["test"]}  # eval's own run dir: the split it tested
    caplog.clear()
    evaluate(compose_config("eval", [f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}", "logger=none"], tmp_path,
                            tmp_path / "same"))  # fmt: skip
    if not code_differences(record, collect_provenance()):  # a tree being edited may have changed since the run
        assert not [r for r in caplog.records if "other code than runs now" in r.getMessage()]


def test_code_differences_name_what_changed_and_nothing_when_the_same():
    current = collect_provenance(argv=["cnnlab", "eval"])
    assert code_differences(json.loads(json.dumps(current)), current) == []
    other = json.loads(json.dumps(current))
    other["cnnlab"]["version"] = "0.1.0"
    other["git"]["code"] = {"commit": "5d6e7f8091a2b3c4", "dirty": False}
    other["packages"]["timm"] = "0.9.2"
    phrases = code_differences(other, current)
    assert phrases[0].startswith("cnnlab 0.1.0 at 5d6e7f8091a2 vs now ")
    assert f"timm 0.9.2 vs now {current['packages']['timm']}" in phrases
    assert code_differences(None, current) == [
        "it holds no provenance record (saved before cnnlab recorded one, or by another program): its code cannot "
        "be compared with this one"
    ]


def test_a_hostile_record_is_compared_without_raising_or_printing_much_of_it():
    current = collect_provenance(argv=["cnnlab", "eval"])
    huge = "\x1b[31m" + "x" * 10_000
    nested: list = []
    for _ in range(5000):
        nested = [nested]
    for stored in ([1, 2], "text", {"cnnlab": huge}, {"cnnlab": {"version": huge}, "git": {"code": {"commit": huge}}},
                   {"git": ["a list where a dict belongs"], "packages": {"torch": nested}},
                   {"git": {"code": nested}, "cnnlab": {"version": nested}}):  # fmt: skip
        phrases = code_differences(stored, current)
        assert phrases and all(len(p) < 700 and "\x1b" not in p for p in phrases), phrases
        tags = provenance_tags(stored)
        assert all(isinstance(v, str) and len(v) <= 500 for v in tags.values())


@needs_git
def test_tracker_tags_are_flat_short_strings(trained):
    tags = provenance_tags(trained[1])
    assert tags["cnnlab.version"] == __version__ and tags["torch"] == torch.__version__
    assert tags["git.commit"] == trained[1]["git"]["code"]["commit"] and tags["project.git.dirty"] == "True"
    assert {"git.dirty", "data.train", "data.val", "data.test", "command", "device.name"} <= tags.keys()
    assert all(isinstance(v, str) and len(v) <= 500 for v in tags.values())


@needs_git
def test_an_installed_package_or_a_folder_outside_git_has_no_commit(tmp_path, monkeypatch):
    assert git_state(tmp_path) is None
    project = dirty_project(tmp_path / "project")
    package = project / ".venv" / "cnnlab"  # installed into a virtual environment inside a project's tree
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    assert git_state(package)["root"] == str(project) and code_state(package) is None
    assert code_state(ROOT / "src" / "cnnlab")["root"] == str(ROOT)
    monkeypatch.setenv("PATH", str(tmp_path))  # no git at all
    assert git_state(ROOT) is None and collect_provenance(argv=[])["cnnlab"]["source"] == "installed package"


def test_the_same_seed_gives_the_same_fingerprint_and_another_split_another():
    def fingerprints(**kwargs) -> dict[str, str]:
        datamodule = DigitsDataModule(**kwargs)
        datamodule.setup()
        return data_fingerprints(datamodule)

    first = fingerprints(seed=1)
    assert first == fingerprints(seed=1)
    subset = fingerprints(seed=1, train_size=500)
    assert subset["train"].startswith("500 items, ") and subset["train"] != first["train"]
    assert subset["val"] == first["val"]  # the subset is taken from the training split alone
    other_seed = fingerprints(seed=2)
    assert other_seed["train"] != first["train"] and other_seed["val"] != first["val"]


def test_a_streamed_image_folder_is_fingerprinted_by_its_files_names_sizes_and_labels(tmp_path):
    for name in ("cat", "dog"):
        (tmp_path / name).mkdir()
        for i in range(5):
            Image.new("L", (8, 8), color=i * 20).save(tmp_path / name / f"{i}.png")

    def fingerprints() -> dict[str, str]:
        datamodule = ImageFolderDataModule(root=str(tmp_path), image_size=8, channels=1, cache_max_gb=0,
                                           num_workers=0, val_fraction=0.2)  # fmt: skip
        datamodule.setup()
        assert datamodule.streaming
        return data_fingerprints(datamodule)

    first = fingerprints()
    assert [int(v.split()[0]) for v in first.values()] == [6, 2, 2] and first == fingerprints()
    Image.new("L", (8, 8), color=255).save(tmp_path / "cat" / "0.png", optimize=False, compress_level=0)
    assert fingerprints() != first


def test_shards_are_fingerprinted_by_their_checked_index(tmp_path):
    write_shards(DigitsDataModule(train_size=100), str(tmp_path / "shards"), num_workers=1)
    found = data_fingerprints(StreamingDataModule(input_dir=str(tmp_path / "shards"), num_workers=0))
    assert found["train"].startswith("100 items, sha256:") and set(found) == {"train", "val", "test"}
    assert found == data_fingerprints(StreamingDataModule(input_dir=str(tmp_path / "shards")))


class _OwnData(L.LightningDataModule):
    """A user's own DataModule: labels in a TensorDataset for train, none to be had for val."""

    def train_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(torch.zeros(4, 1, 2, 2), torch.tensor([0, 1, 0, 1])))

    def val_dataloader(self) -> DataLoader:
        return DataLoader([torch.zeros(1, 2, 2)] * 3)


def test_a_datamodule_of_the_user_s_own_is_fingerprinted_by_its_labels_or_said_unknown():
    found = data_fingerprints(_OwnData())
    assert found["train"].startswith("4 items, sha256:") and found["train"].endswith("(labels only)")
    assert found["val"] == "unknown (_OwnData)" and "test" not in found  # no test split defined
