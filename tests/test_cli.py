"""The one command: `cnnlab` lists the verbs, `cnnlab <verb> --help` shows one, and a typo, a bad value or a missing
required key is refused up front - exit code 2, the closest names, torch never imported, nothing written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cnnlab.cli import main, verbs

BIN = Path(sys.executable).parent
DIGITS = ["data=digits", "model.backbone.padding=1", "trainer.max_epochs=1", "logger=none",
          "callbacks.progress_bar.refresh_rate=0"]  # fmt: skip


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    """`cnnlab <args>` in this process: (exit code, stdout, stderr)."""
    try:
        main(list(args))
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def test_cnnlab_alone_lists_every_verb_one_line_each(capsys):
    code, out, _ = run_cli(capsys)
    assert code == 0
    listed = [line.split()[0] for line in out.splitlines() if line.startswith("  ") and not line.startswith("   ")]
    assert listed == [*verbs(), "version"]
    assert "cnnlab <verb> --help" in out and "--cfg job" in out


def test_version_names_the_libraries(capsys):
    code, out, _ = run_cli(capsys, "version")
    assert code == 0 and out.startswith("cnnlab ") and "torch " in out and "lightning " in out


def test_an_unknown_verb_gets_the_closest_one(capsys):
    code, _, err = run_cli(capsys, "trian", "model=cnn")
    assert code == 2 and "did you mean `cnnlab train`" in err


def test_every_verb_has_three_examples_and_a_docs_page():
    for name, verb in verbs().items():
        assert verb.name == name and len(verb.examples) == 3, name
        assert all(example.startswith(f"cnnlab {name}") for example in verb.examples), name
        assert verb.docs.startswith("docs/") and verb.docs.endswith(".md"), name


def test_train_help_shows_examples_groups_with_options_and_commented_keys(capsys):
    code, out, _ = run_cli(capsys, "train", "--help")
    assert code == 0
    assert "cnnlab train experiment=seed_fashion" in out  # an example
    model_line = next(line for line in out.splitlines() if line.strip().startswith("model "))
    assert "[cnn]" in model_line and "resnet50" in model_line and "efficientnet_lite0" in model_line
    seed_line = next(line for line in out.splitlines() if line.strip().startswith("seed = "))
    assert "seeds Python, NumPy, torch" in seed_line  # the comment beside the key in conf/train.yaml
    assert "more: docs/recipes.md" in out and "--cfg job" in out


def test_eval_help_shows_only_what_eval_uses_and_marks_required_keys(capsys):
    code, out, _ = run_cli(capsys, "eval", "--help")
    assert code == 0
    assert "ckpt_path = (required)" in out
    for foreign in ("optimizer", "scheduler", "hparams_search", "cv ", "transfer"):
        assert foreign not in out, foreign
    assert "data " in out and "(none chosen)" in out  # data=null: the checkpoint's own data


def test_help_of_a_group_lists_its_keys_as_composed(capsys):
    code, out, _ = run_cli(capsys, "train", "--help", "trainer", "trainer.max_epochs=7")
    assert code == 0
    line = next(line for line in out.splitlines() if "trainer.max_epochs" in line)
    assert "= 7" in line
    code, _, err = run_cli(capsys, "train", "--help", "trainr")
    assert code == 2 and "did you mean trainer" in err
    code, _, err = run_cli(capsys, "train", "--help", "model=resnet5O")  # help composes as a run would: refused
    assert code == 2 and "did you mean resnet50" in err and "Traceback" not in err


def test_help_of_a_group_shows_the_keys_its_option_inherits_with_their_comments(capsys):
    """data=fashion_mnist builds on data=mnist (its defaults list): the keys and comments of both are shown."""
    code, out, _ = run_cli(capsys, "train", "--help", "data")
    assert code == 0
    assert "data.system_dirs = [/usr/share/datasets/fashion-mnist]" in out  # fashion_mnist.yaml's own
    batch = next(line for line in out.splitlines() if line.strip().startswith("data.batch_size = "))
    assert "# training batch" in batch  # the comment in mnist.yaml
    assert "data.defaults" not in out


def test_help_shows_lists_as_they_are_typed(capsys):
    code, out, _ = run_cli(capsys, "eval", "--help")
    assert code == 0 and "  trust = []    # modules of yours a checkpoint may name" in out
    assert "task_name" not in out  # which verb a config is: no user sets it
    code, out, _ = run_cli(capsys, "train", "--help", "model")
    assert "model.backbone.widths = [32, 64]" in out


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["train", "trainer.max_epoch=3"], "did you mean trainer.max_epochs"),
        (["train", "model=resnet5O"], "did you mean resnet50"),
        (["train", "model=convnext_tiny"], "model=timm model.backbone.name=<timm name>"),
        (["train", "optimizer.lrr=0.1"], "did you mean optimizer.lr"),
        (["train", "sead=1"], "did you mean seed"),
        (["train", "max_epochs=3"], "did you mean trainer.max_epochs"),  # a key of a group, given at the top
        (["train", "model.lr=0.1"], "did you mean optimizer.lr"),
        (["train", "trainer.max_epochs=abc"], "trainer.max_epochs='abc'"),
        (["train", "data.train_size=[1,"], "cannot read the override"),
        (["train", "-m", "model=cnn,resnet5O"], "did you mean resnet50"),  # the second job's value, before the first
        (["train", "-m", "optimizer.lr=0.1,-1"], "optimizer.lr=-1"),
        (["eval"], "ckpt_path is required"),
        (["predict", "ckpt_path=missing.ckpt", "inputs=x.png", "batch_size=0"], "batch_size=0"),
        (["export", "ckpt_path=missing.ckpt"], "ckpt_path='missing.ckpt': no such file"),
        (
            ["predict", "ckpt_path=missing.ckpt", "inputs=x.png", "output=/proc/cnnlab/preds.csv"],
            "output='/proc/cnnlab/preds.csv': its folder is not a writable directory",
        ),
        (["shards", "output_dir=/proc/cnnlab/shards"], "output_dir='/proc/cnnlab/shards' is not a writable directory"),
        (["explain", "ckpt_path=missing.ckpt"], "inputs"),
        (["layers", "depth=0"], "depth=0"),
        (["shards"], "output_dir"),
        (["train", "+callbacks.old={_target_: cnnlab.callbacks.EMA}"], "cnnlab.run.callbacks.EMA"),
    ],
)
def test_a_bad_command_is_refused_up_front_with_the_fix(capsys, tmp_path, monkeypatch, args, expected):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(capsys, *args)
    assert code == 2, err
    assert expected in err, err
    assert not any(tmp_path.iterdir()), "a refused command wrote something"


def test_a_refusal_never_imports_torch(tmp_path):
    """Whole process, as a user types it: the refusal comes before the heavy libraries are imported."""
    code = (
        "import sys\nfrom cnnlab.cli import main\ntry:\n    main(['train', 'trainer.max_epoch=3'])\n"
        "except SystemExit as stop:\n    print('exit', stop.code)\n"
        "print('heavy:', sorted(m for m in ('torch', 'lightning', 'timm', 'torchvision') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert "exit 2" in result.stdout and "heavy: []" in result.stdout, result.stdout + result.stderr


def test_cfg_job_prints_the_config_and_writes_nothing(tmp_path):
    result = subprocess.run([BIN / "cnnlab", "train", "model=resnet18", "--cfg", "job"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "timm.create_model" in result.stdout or "TimmBackbone" in result.stdout
    assert not (tmp_path / "outputs").exists()


def test_an_old_script_name_still_works_and_says_the_new_one(tmp_path):
    result = subprocess.run([BIN / "cnnlab-eval"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "cnnlab-eval is now `cnnlab eval`" in result.stderr and "ckpt_path is required" in result.stderr


def test_a_refusal_after_the_run_started_leaves_no_run_dir(tmp_path):
    """A checkpoint that is not one is only found out when read, after Hydra made the run dir: the dir goes."""
    fake = tmp_path / "fake.ckpt"
    fake.write_bytes(b"not a checkpoint")
    result = subprocess.run([BIN / "cnnlab", "eval", f"ckpt_path={fake}"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120, env={**os.environ, "PYTHONWARNINGS": "ignore"})  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "not a readable" in result.stderr + result.stdout
    assert not [p for p in (tmp_path / "outputs").rglob("*") if p.is_file()], "the refused eval left files"


def test_only_training_writes_to_outputs_runs(tmp_path):
    """`cnnlab layers` (like eval, predict, export, explain, shards) writes under outputs/<verb>/."""
    result = subprocess.run([BIN / "cnnlab", "layers", *DIGITS[:2]], cwd=tmp_path, capture_output=True, text=True,
                            timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "outputs" / "runs").exists()
    assert len(list((tmp_path / "outputs" / "layers").glob("*/*_layers/model_summary.json"))) == 1
