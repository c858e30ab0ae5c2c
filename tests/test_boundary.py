"""The trust boundary beyond pickles: what a checkpoint names (at any depth) is built only from trusted modules, a
resumed run records its own config, a run dir belongs to one run, failures to write are one line, and text cnnlab
did not write (file and class names) is escaped where it goes out (CSV cells, log lines).

Each crafted input would leave a mark if it worked (a file created or zeroed, a directory made); each test shows the
refusal names the file and the reason, and the mark is absent.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cnnlab.errors import CnnlabError
from cnnlab.run.builders import build_callbacks
from cnnlab.run.callbacks.divergence import DivergenceGuard
from cnnlab.run.callbacks.resumable import Resumable
from cnnlab.run.checkpoints import load_classifier, project_modules, read_checkpoint
from cnnlab.run.evaluation import evaluate
from cnnlab.run.explaining import explain_images
from cnnlab.run.exporting import export
from cnnlab.run.prediction import predict
from cnnlab.run.training import train
from cnnlab.utils.cli import escape_foreign_text_in_logs
from cnnlab.utils.rundir import LOCK_NAME, claim_run_dir, release_run_dir
from tests.conftest import compose_config

ROOT = Path(__file__).resolve().parents[1]
USER_PROJECT = ROOT / "tests" / "user_project"
DIGITS = [
    "data=digits",
    "model.backbone.padding=1",
    "logger=none",
    "trainer.max_epochs=1",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
]


@pytest.fixture
def good(digits_run) -> dict:
    return torch.load(digits_run[1] / "checkpoints" / "last.ckpt", weights_only=True)


@pytest.fixture
def image(tmp_path) -> Path:
    from PIL import Image

    path = tmp_path / "image.png"
    Image.new("L", (8, 8), 128).save(path)
    return path


def with_backbone_part(checkpoint: dict, part: dict) -> dict:
    backbone = {**checkpoint["hyper_parameters"]["backbone"], "helper": part}
    return {**checkpoint, "hyper_parameters": {**checkpoint["hyper_parameters"], "backbone": backbone}}


def with_data(checkpoint: dict, **data) -> dict:
    config = {**checkpoint["cnnlab"]["config"], "data": {**checkpoint["cnnlab"]["config"]["data"], **data}}
    return {**checkpoint, "cnnlab": {**checkpoint["cnnlab"], "config": config}}


def verbs(tmp_path: Path, crafted: Path, image: Path) -> dict:
    """Every verb that reads a checkpoint, as a call on `crafted`."""
    cfg = lambda name, *o: compose_config(name, [f"ckpt_path={crafted}", *o], tmp_path, tmp_path / f"{name}-out")  # noqa: E731
    return {
        "eval": lambda: evaluate(cfg("eval")),
        "predict": lambda: predict(cfg("predict", f"inputs={image}")),
        "export": lambda: export(cfg("export", "format=torchscript", f"output={tmp_path / 'm.pt'}")),
        "explain": lambda: explain_images(cfg("explain", f"inputs={image}", "logger=none")),
    }


def test_a_nested_target_from_an_installed_library_is_never_built(tmp_path, good, image):
    """numpy.memmap is a class of an installed library (the old check let it through): built with mode w+ it
    zero-fills any file it is given. subprocess.Popen runs a command. Both are refused by name in every verb."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    marker = tmp_path / "pwned"
    parts = {
        "numpy.memmap": {"_target_": "numpy.memmap", "filename": str(victim), "mode": "w+", "shape": [8]},
        "subprocess.Popen": {"_target_": "subprocess.Popen", "args": ["touch", str(marker)]},
        "lightning.pytorch.loggers.CSVLogger": {"_target_": "lightning.pytorch.loggers.CSVLogger",
                                                "save_dir": str(marker)},
    }  # fmt: skip
    for target, part in parts.items():
        crafted = tmp_path / f"{target}.ckpt"
        torch.save(with_backbone_part(good, part), crafted)
        for name, call in verbs(tmp_path, crafted, image).items():
            with pytest.raises(CnnlabError) as caught:
                call()
            message = str(caught.value)
            assert str(crafted) in message and f"model.backbone.helper._target_='{target}'" in message, name
            assert "not from a trusted module" in message and "trust=[" in message, name
            assert victim.read_text() == "precious" and not marker.exists(), f"{name} built {target}"


def test_cnnlabs_own_functions_and_interpolations_are_refused_too(tmp_path, good, image):
    """A trusted module is not enough: only classes are built (write_text_atomic would write any file), and a
    `${...}` value is refused before composing could run a resolver (ensure_dir makes a directory)."""
    victim = tmp_path / "victim.txt"
    made = tmp_path / "made-by-resolver"
    cases = {
        "which is not a class": {"_target_": "cnnlab.utils.io.write_text_atomic", "path": str(victim), "text": "x"},
        "an interpolation": {"_target_": "torch.nn.Identity", "note": f"${{ensure_dir:{made}}}"},
    }
    for why, part in cases.items():
        crafted = tmp_path / "crafted.ckpt"
        torch.save(with_backbone_part(good, part), crafted)
        with pytest.raises(CnnlabError, match=why):
            verbs(tmp_path, crafted, image)["eval"]()
        assert not victim.exists() and not made.exists()


@pytest.mark.parametrize(("data", "says"), [
    ({"_target_": "cnnlab.data.StreamingDataModule", "input_dir": "s3://someone/shards"}, "is a remote address"),
    ({"_target_": "cnnlab.data.MNISTDataModule", "download": True}, "downloads the dataset"),
    ({"_target_": "cnnlab.data.HuggingFaceDataModule", "name": "someone/dataset", "path": None},
     "loads a dataset from the Hugging Face hub"),
])  # fmt: skip
def test_a_checkpoints_data_config_is_never_fetched(tmp_path, good, image, data, says):
    crafted = tmp_path / "crafted.ckpt"
    torch.save(with_data(good, **data), crafted)
    with pytest.raises(CnnlabError, match=f"which {says}: cnnlab fetches nothing a checkpoint names"):
        verbs(tmp_path, crafted, image)["eval"]()


def test_a_users_own_modules_are_trusted_when_declared_or_beside_their_conf(tmp_path, monkeypatch):
    """A checkpoint of a user's backbone (my_project.nets.TinyNet): refused from elsewhere, loaded with
    trust=[my_project], and loaded from the user's project (its conf/ makes it their own)."""
    for name in [m for m in sys.modules if m.split(".")[0] == "my_project"]:  # a copy another test imported
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.syspath_prepend(str(USER_PROJECT))
    cfg = compose_config("train", [*DIGITS, "model.backbone._target_=my_project.nets.TinyNet",
                                   "~model.backbone.widths", "~model.backbone.kernel_size", "~model.backbone.padding",
                                   "~model.backbone.batch_norm", "~model.backbone.width_mult",
                                   "~model.backbone.convs_per_stage"], tmp_path, tmp_path / "run")  # fmt: skip
    checkpoint = Path(train(cfg)["best_checkpoint"])
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CnnlabError, match=r"'my_project\.nets\.TinyNet', which is not from a trusted module"):
        load_classifier(checkpoint)
    assert type(load_classifier(checkpoint, trust=["my_project"]).backbone).__name__ == "TinyNet"
    monkeypatch.chdir(USER_PROJECT)
    assert type(load_classifier(checkpoint).backbone).__name__ == "TinyNet"
    with pytest.raises(CnnlabError, match="each entry is a module name"):
        load_classifier(checkpoint, trust=["my project; rm"])


def test_a_project_folder_named_like_an_installed_library_does_not_trust_the_library(tmp_path, good, monkeypatch):
    """The project's own modules are trusted because an import finds them there; a folder `numpy/` beside `conf/`
    is not what `import numpy` takes, so numpy.memmap stays refused."""
    project = tmp_path / "project"
    for folder in ("conf", "numpy", "mine"):
        (project / folder).mkdir(parents=True)
    (project / "mine" / "__init__.py").write_text("")
    monkeypatch.chdir(project)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    crafted = tmp_path / "memmap.ckpt"
    torch.save(with_backbone_part(good, {"_target_": "numpy.memmap", "filename": str(victim), "mode": "w+",
                                         "shape": [8]}), crafted)  # fmt: skip
    with pytest.raises(CnnlabError, match=r"'numpy\.memmap', which is not from a trusted module"):
        load_classifier(crafted)
    assert victim.read_text() == "precious"
    assert project_modules() == ["mine"]


def test_a_resumed_run_records_its_own_config_and_says_what_changed(tmp_path, caplog):
    first = compose_config("train", [*DIGITS, "data.batch_size=16"], tmp_path, tmp_path / "first")
    train(first)
    old = tmp_path / "first" / "checkpoints" / "last.ckpt"
    second = compose_config("train", [*DIGITS, "data.batch_size=32", "trainer.max_epochs=2", f"ckpt_path={old}"],
                            tmp_path, tmp_path / "second")  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="cnnlab.run.training"):
        train(second)
    assert "data.batch_size: 16 -> 32" in caplog.text
    stored = read_checkpoint(tmp_path / "second" / "checkpoints" / "last.ckpt")["cnnlab"]["config"]
    assert stored["data"]["batch_size"] == 32 and stored["trainer"]["max_epochs"] == 2
    assert stored["ckpt_path"] == str(old)


def test_a_resume_whose_weights_cannot_fit_is_refused_with_what_changed(tmp_path, digits_run):
    old = digits_run[1] / "checkpoints" / "last.ckpt"
    cfg = compose_config("train", [*DIGITS, "model.backbone.widths=[8,16]", f"ckpt_path={old}"], tmp_path,
                         tmp_path / "run")  # fmt: skip
    with pytest.raises(CnnlabError) as caught:
        train(cfg)
    message = str(caught.value)
    assert "its weights do not fit the model (5 tensors differ, e.g. backbone.features.0.bias (32,) vs (8,)" in message
    assert "Changed since that run: " in message and "model.backbone.widths: [32, 64] -> [8, 16]" in message
    assert "model.weights=<that .ckpt>" in message


def fingerprint(folder: Path) -> dict[str, tuple[int, float]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime) for p in folder.rglob("*") if p.is_file()}


def test_a_second_run_into_a_used_run_dir_is_refused_and_the_first_is_intact(tmp_path, digits_run):
    run_dir = digits_run[1]
    before = fingerprint(run_dir)
    cfg = compose_config("train", DIGITS, tmp_path, run_dir)
    with pytest.raises(CnnlabError) as caught:
        train(cfg)
    message = str(caught.value)
    assert f"the run directory {run_dir.resolve()} already holds a run (checkpoints, csv, " in message
    assert "metrics.json, provenance.json)" in message  # git.diff before them when the tree was dirty
    assert f"hydra.run.dir={run_dir} ckpt_path=last" in message
    assert fingerprint(run_dir) == before and not (run_dir / LOCK_NAME).exists()


def test_the_cli_refuses_before_hydra_writes_anything(tmp_path, digits_run):
    """From the command line the refusal comes before Hydra writes .hydra/ and the log: exit 2, one message."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "metrics.json").write_text('{"test/acc": 0.9}')
    (run_dir / ".hydra").mkdir()
    (run_dir / ".hydra" / "config.yaml").write_text("the first run's config\n")
    result = subprocess.run([sys.executable, "-m", "cnnlab", "train", "data=digits", f"hydra.run.dir={run_dir}"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.startswith(f"error: the run directory {run_dir} already holds a run (.hydra, metrics.json)")
    assert "Traceback" not in result.stderr + result.stdout
    assert (run_dir / ".hydra" / "config.yaml").read_text() == "the first run's config\n"
    assert sorted(p.name for p in run_dir.iterdir()) == [".hydra", "metrics.json"]  # no train.log, no lock left


def test_two_processes_cannot_write_one_run_dir_and_a_stale_lock_is_taken_over(tmp_path, caplog):
    run_dir = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from cnnlab.utils.rundir import "
                               "claim_run_dir; claim_run_dir(sys.argv[1], False, ''); print('held', flush=True); "
                               "time.sleep(60)", str(run_dir)], stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(CnnlabError, match=rf"is in use by another run \(pid {holder.pid} on "):
            train(compose_config("train", DIGITS, tmp_path, run_dir))
    finally:
        holder.kill()
        holder.wait()
    assert (run_dir / LOCK_NAME).read_text().startswith(f"pid {holder.pid} on ")  # killed: it never released
    with caplog.at_level(logging.INFO, logger="cnnlab"):
        assert claim_run_dir(run_dir, reuse=False, resume_hint="")
    assert f"(pid {holder.pid} on" in caplog.text and "is stale; taken over" in caplog.text
    release_run_dir(run_dir)
    assert not (run_dir / LOCK_NAME).exists()


def test_a_full_disk_during_a_checkpoint_save_is_one_message_and_the_checkpoints_stay(tmp_path, monkeypatch):
    """torch reports a full disk as `inline_container.cc ... unexpected pos` with the OSError as its context; the
    second epoch's save fails here as it would (the same exception chain), the first epoch's checkpoints stay."""
    real_save, saves = torch.save, []

    def save_until_full(obj, handle, *args, **kwargs):
        saves.append(handle)
        if len(saves) <= 2:  # epoch 0: best and last
            return real_save(obj, handle, *args, **kwargs)
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598") from None

    monkeypatch.setattr(torch, "save", save_until_full)
    cfg = compose_config("train", [*DIGITS, "trainer.max_epochs=2"], tmp_path, tmp_path / "run")
    with pytest.raises(CnnlabError) as caught:
        train(cfg)
    message = str(caught.value)
    checkpoints = tmp_path / "run" / "checkpoints"
    assert message.startswith(f"cannot write {checkpoints / 'best-epoch001.ckpt'}: No space left on device (the "
                              "disk is full, ")  # fmt: skip
    assert "Nothing written before was changed" in message and "ckpt_path=last" in message
    monkeypatch.setattr(torch, "save", real_save)
    assert sorted(p.name for p in checkpoints.iterdir()) == ["best-epoch000.ckpt", "last.ckpt"]  # no temp files
    assert read_checkpoint(checkpoints / "last.ckpt")["epoch"] == 0


def mount_tmpfs(folder: Path, size: str) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True).returncode == 0  # fmt: skip


@pytest.fixture
def small_disk(tmp_path):
    disk = tmp_path / "disk"
    if not mount_tmpfs(disk, "1800k"):
        pytest.skip("mounting a tmpfs needs root with CAP_SYS_ADMIN (CI has it); the simulated test above runs")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_really_full_disk_and_a_read_only_run_dir_are_one_line_each_exit_2(small_disk, tmp_path):
    """A 1.8 MB file system: the seed CNN's 670 KB checkpoints fill it in the second epoch. Then the same file system
    read-only, and the run resumed: one line naming the run dir, not Hydra's 'Unable to configure handler'."""
    run_dir = small_disk / "run"
    args = [sys.executable, "-m", "cnnlab", "train", *DIGITS, "trainer.max_epochs=3", f"hydra.run.dir={run_dir}"]
    full = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert full.returncode == 2, full.stderr[-2000:]
    error = next(line for line in full.stdout.splitlines() if "] - error: " in line)
    assert "error: cannot write " in error and "No space left on device (the disk is full" in error
    assert "Traceback" not in full.stdout + full.stderr
    assert "error: cannot write" in (run_dir / "train.log").read_text()
    last = read_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    assert last["epoch"] >= 0
    assert subprocess.run(["mount", "-o", "remount,ro", str(small_disk)]).returncode == 0
    resumed = subprocess.run([*args, "ckpt_path=last"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 2
    assert resumed.stderr.strip() == (f"error: cannot write the run directory {run_dir} (Read-only file system): "
                                      "set paths.log_dir=<a writable directory>, or give hydra.run.dir=<one you can "
                                      "write>.")  # fmt: skip


def test_names_cnnlab_did_not_write_are_escaped_in_csv_cells_the_table_and_log_lines(tmp_path, good, image, capsys):
    names = ['=HYPERLINK("http://x","y")', "+1", "a\nb", "@SUM(A1)", "ok", "\x1b[31mred", "-", "s", "t", "u"]
    crafted = tmp_path / "names.ckpt"
    data = {**good["hyper_parameters"]["data"], "class_names": names}
    torch.save({**good, "hyper_parameters": {**good["hyper_parameters"], "data": data}}, crafted)
    hostile_file = tmp_path / "=cmd|' calc'!A0.png"
    hostile_file.write_bytes(image.read_bytes())
    cfg = compose_config("predict", [f"ckpt_path={crafted}", f"inputs={tmp_path}", "top_k=10",
                                     f"output={tmp_path / 'out' / 'p.csv'}"], tmp_path, tmp_path / "run")  # fmt: skip
    predict(cfg)
    rows = list(csv.reader(io.StringIO((tmp_path / "out" / "p.csv").read_text())))
    cells = [cell for row in rows[1:] for cell in row]
    assert not [c for c in cells if c[:1] in "=+-@\t\r"], cells  # nothing a spreadsheet would run
    assert f"'{hostile_file}" not in cells and f"'={hostile_file.name}" not in cells  # the path starts with /
    assert '\'=HYPERLINK("http://x","y")' in cells and "'+1" in cells and "a\\nb" in cells
    assert "\\x1b[31mred" in cells
    table = capsys.readouterr().out
    assert "a\\nb" in table and "\x1b" not in table

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logging.getLogger().addHandler(handler)
    try:
        escape_foreign_text_in_logs()
        logging.getLogger("cnnlab.test").warning("class %s, file %s, %d images", "a\nFAKE LINE", Path("x\ry"), 3)
        logging.getLogger("cnnlab.test").error("error: %s", CnnlabError("two problems:\n  - one\x1b[2J\n  - two"))
    finally:
        logging.getLogger().removeHandler(handler)
    assert (
        stream.getvalue()
        == "class a\\nFAKE LINE, file x\\ry, 3 images\nerror: two problems:\n  - one\\x1b[2J\n  - two\n"
    )


def test_callbacks_none_keeps_the_safety_callbacks_unless_each_is_dropped_on_purpose(tmp_path):
    kinds = lambda *o: {type(c) for c in build_callbacks(compose_config("train", list(o), tmp_path, tmp_path / "r"))}  # noqa: E731
    assert {DivergenceGuard, Resumable} <= kinds("callbacks=none")
    assert DivergenceGuard not in kinds("callbacks=none", "+callbacks.divergence_guard=null")
    assert Resumable not in kinds("callbacks.resumable=null")
    cfg = compose_config("train", [*DIGITS, "callbacks=none", "optimizer=sgd", "optimizer.lr=1e12"], tmp_path,
                         tmp_path / "run")  # fmt: skip
    with pytest.raises(CnnlabError, match=r"training diverged: the training loss is (nan|inf) at epoch 0"):
        train(cfg)


def test_export_writes_into_its_own_run_dir_not_beside_anothers_checkpoint(tmp_path, digits_run):
    checkpoint = digits_run[1] / "checkpoints" / "last.ckpt"
    before = fingerprint(checkpoint.parent)
    info = export(compose_config("export", [f"ckpt_path={checkpoint}", "format=torchscript"], tmp_path,
                                 tmp_path / "export-run"))  # fmt: skip
    assert Path(info["file"]).parent == tmp_path / "export-run" and fingerprint(checkpoint.parent) == before
    assert json.loads(Path(info["file"] + ".json").read_text())["checkpoint"] == str(checkpoint)


def test_a_sweep_dir_is_read_inside_itself_and_its_summary_cells_are_safe(tmp_path):
    """A shared sweep dir: a job's metrics.json that links out of it, or is a FIFO, is refused naming it (no hang,
    nothing of the outside file shown); a job's error text that starts like a formula is escaped in summary.csv."""
    from cnnlab.run.sweeps.report import write_summary

    sweep = tmp_path / "sweep"
    for n, lr in enumerate(("0.1", "0.2")):
        job = sweep / f"{n}_optimizer.lr-{lr}"
        job.mkdir(parents=True)
        record = {"overrides": [f"optimizer.lr={lr}"], "status": "failed" if n else "completed",
                  "error": '=HYPERLINK("http://x","click")' if n else ""}  # fmt: skip
        (job / "job.json").write_text(json.dumps(record))
        (job / "metrics.json").write_text(json.dumps({"val/acc_best": 0.5, "test/acc": 0.5}))
    write_summary(sweep, "val/acc_best")
    cells = [c for row in csv.reader(io.StringIO((sweep / "summary.csv").read_text())) for c in row]
    assert '\'=HYPERLINK("http://x","click")' in cells and not [c for c in cells if c.startswith("=")]

    secret = tmp_path / "secret.json"
    secret.write_text('{"val/acc_best": 0.123456}')
    metrics = sweep / "0_optimizer.lr-0.1" / "metrics.json"
    metrics.unlink()
    metrics.symlink_to(secret)
    with pytest.raises(CnnlabError, match=rf"{metrics} cannot be read as a job's file \(RefusedFile: .* leads outside"):
        write_summary(sweep, "val/acc_best")
    assert "0.123456" not in (sweep / "summary.csv").read_text()
    result = subprocess.run([sys.executable, "-m", "cnnlab", "report", str(sweep)], capture_output=True, text=True,
                            timeout=60)  # fmt: skip
    assert result.returncode == 2 and result.stderr.startswith(f"cnnlab report: error: {metrics} cannot be read")
    metrics.unlink()
    os.mkfifo(metrics)  # never opened: a plain read would block here for ever
    rows = {row["job"]: row for row in write_summary(sweep, "val/acc_best")}
    assert rows["0_optimizer.lr-0.1"]["val/acc_best"] is None and rows["1_optimizer.lr-0.2"]["val/acc_best"] == 0.5


def test_a_resumed_checkpoint_with_crafted_rng_states_is_one_clear_error(tmp_path, good):
    key = next(k for k in good["callbacks"] if "Resumable" in k)
    crafted = tmp_path / "rng.ckpt"
    state = {"rng": {**good["callbacks"][key]["rng"], "python": (3, "not a state", None)}}
    torch.save({**good, "callbacks": {**good["callbacks"], key: state}}, crafted)
    overrides = [*DIGITS, "trainer.max_epochs=3", "model.label_smoothing=0.1", f"ckpt_path={crafted}"]
    cfg = compose_config("train", overrides, tmp_path, tmp_path / "run")
    refused = r"holds random-number states that cannot be restored \(ValueError: state vector is the wrong size"
    with pytest.raises(CnnlabError, match=refused):
        train(cfg)
