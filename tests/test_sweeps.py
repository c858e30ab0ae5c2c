"""Sweeps through the real CLI: grids, a failing job, Optuna with resume, DDP on CPU, submitit_local."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cnnlab.commands.report import run as report_cli

TINY = ["data.train_size=200", "trainer.max_epochs=1", "trainer.limit_val_batches=2", "trainer.limit_test_batches=2",
        "callbacks.progress_bar.refresh_rate=0"]  # fmt: skip


def cnnlab_train(args: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    env.pop("CNNLAB_ROOT", None)
    return subprocess.run([sys.executable, "-m", "cnnlab", "train", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip


def only_sweep_dir(cwd: Path) -> Path:
    sweeps = list((cwd / "outputs" / "multirun").glob("*/*"))
    assert len(sweeps) == 1, sweeps
    return sweeps[0]


def summary_rows(sweep: Path) -> list[dict]:
    return list(csv.DictReader((sweep / "summary.csv").open()))


def test_grid_2x2_leaves_four_jobs_and_one_summary(tmp_path, fashion_dir):
    result = cnnlab_train(
        ["-m", "model=cnn,resnet18", "optimizer.lr=1e-3,3e-4", "model.image_size=32", *TINY], tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    sweep = only_sweep_dir(tmp_path)
    jobs = sorted(p for p in sweep.iterdir() if (p / "metrics.json").is_file())
    assert len(jobs) == 4
    assert any("model-resnet18" in p.name and "optimizer.lr-0.0003" in p.name for p in jobs)  # names tell overrides
    assert not [p for p in jobs if set(p.name) & set("=,'\" []{}")]  # and paste into a shell or an override as they are
    assert all(list((p / "tensorboard").glob("events.*")) for p in jobs)  # one TensorBoard run each
    rows = summary_rows(sweep)
    assert len(rows) == 4 and {r["status"] for r in rows} == {"completed"}
    best = [float(r["val/acc_best"]) for r in rows]
    assert best == sorted(best, reverse=True)
    assert "| job | status |" in (sweep / "summary.md").read_text()


def test_failing_job_does_not_take_the_sweep_down(tmp_path, fashion_dir):
    """A job that fails when it runs (here: more training images asked for than the split holds, found out only
    when the data is loaded) is recorded as failed and the sweep goes on. A value that is bad on its face never
    gets this far: the whole sweep is refused before any job starts (tests/test_cli.py)."""
    result = cnnlab_train(["-m", "data.train_size=200,100000", *TINY[1:]], tmp_path)
    assert result.returncode != 0
    sweep = only_sweep_dir(tmp_path)
    rows = {r["overrides"].split("data.train_size=")[1].split()[0]: r for r in summary_rows(sweep)}
    assert rows["200"]["status"] == "completed" and float(rows["200"]["test/acc"]) > 0
    assert rows["100000"]["status"] == "failed" and "data.train_size=100000 is larger" in rows["100000"]["error"]
    failed_job = next(p for p in sweep.iterdir() if "data.train_size-100000" in p.name)
    assert json.loads((failed_job / "job.json").read_text())["status"] == "failed"
    # The summary can be rebuilt at any time; its exit code also says a job failed.
    with pytest.raises(SystemExit) as exit_info:
        report_cli([str(sweep)])
    assert exit_info.value.code == 1


def test_job_dirs_are_named_by_the_swept_values_only(tmp_path):
    digits = ["data=digits", "model.backbone.padding=1", "trainer.max_epochs=1", "logger=none",
              "callbacks.progress_bar.refresh_rate=0", "trainer.limit_train_batches=1", "trainer.limit_val_batches=1",
              "trainer.limit_test_batches=1"]  # fmt: skip
    result = cnnlab_train(["-m", "optimizer.lr=1e-3,3e-3", "seed=1,2", *digits], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    sweep = only_sweep_dir(tmp_path)
    jobs = sorted(p.name for p in sweep.iterdir() if (p / "job.json").is_file())
    assert jobs == ["0_optimizer.lr-0.001_seed-1", "1_optimizer.lr-0.001_seed-2", "2_optimizer.lr-0.003_seed-1",
                    "3_optimizer.lr-0.003_seed-2"]  # fmt: skip
    rows = {r["job"]: r for r in summary_rows(sweep)}  # the summary still tells configuration from replicate
    assert rows[jobs[1]]["configuration"] == "optimizer.lr=0.001" and rows[jobs[1]]["replicate"] == "seed=2"
    assert "data=digits" in rows[jobs[1]]["overrides"]  # the constants are kept in the records, not in the names


def test_a_job_dir_name_shows_what_its_sweep_varies(tmp_path):
    import yaml

    from cnnlab.utils.rundir import job_dir_name

    def sweep_config(task: list[str], params: dict | None = None) -> None:
        config = {"hydra": {"overrides": {"task": task}, "sweeper": {"params": params}}}
        (tmp_path / "multirun.yaml").write_text(yaml.safe_dump(config))

    job = ["optimizer.lr=0.001", "seed=1", "debug=fast", "model.backbone.widths=[16,32]"]
    sweep_config(["optimizer.lr=0.001,0.003", "seed=range(1,3)", "debug=fast", "model.backbone.widths=[16,32]"])
    assert job_dir_name(3, str(tmp_path), job) == "3_optimizer.lr=0.001,seed=1"  # a list value is one value
    sweep_config(["debug=fast"])
    assert job_dir_name(0, str(tmp_path), ["debug=fast"]) == "0"  # nothing varies
    sweep_config(["cv=5fold", "debug=fast"], {"data.fold": "range(5)"})  # cv=5fold's folds, Optuna's params
    assert job_dir_name(2, str(tmp_path), ["cv=5fold", "debug=fast", "data.fold=2"]) == "2_data.fold=2"


def test_optuna_failed_trial_is_recorded_and_search_goes_on(tmp_path, fashion_dir):
    optuna = pytest.importorskip("optuna")
    # A fixed override that breaks every trial when it loads its data: more images than the training split holds.
    result = cnnlab_train(["-m", "hparams_search=cnn_optuna", "hydra.sweeper.n_trials=2", "data.train_size=100000",
                           *TINY[1:]], tmp_path)  # fmt: skip
    assert result.returncode != 0
    sweep = only_sweep_dir(tmp_path)
    trials = optuna.load_study(study_name="cnn_optuna", storage=f"sqlite:///{sweep / 'optuna.db'}").trials
    assert len(trials) == 2 and all(t.state == optuna.trial.TrialState.FAIL for t in trials)
    rows = summary_rows(sweep)
    assert len(rows) == 2 and all("data.train_size=100000 is larger" in r["error"] for r in rows)


def test_submitit_local_runs_a_two_job_sweep(tmp_path, fashion_dir):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    result = cnnlab_train(["-m", "hydra/launcher=submitit_local", "optimizer.lr=1e-3,2e-3", *TINY], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = summary_rows(only_sweep_dir(tmp_path))
    assert len(rows) == 2 and all(r["status"] == "completed" and float(r["test/acc"]) > 0 for r in rows)


def test_ddp_on_cpu_finetune_unfreezes_at_the_configured_epoch(tmp_path, fashion_dir):
    """Two CPU processes; under DDP freezing is the LR gate alone (DDP's gradient buckets are fixed at start)."""
    import timm
    import torch

    from cnnlab.models.weights import package_weights

    ddp = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.sync_batchnorm=false"]
    finetune = ["model=efficientnet_lite0", "transfer=finetune", "transfer.freeze_epochs=1", "transfer.freeze_bn=true"]
    small = ["model.image_size=32", "data.train_size=200", "data.batch_size=50", "data.val_fraction=0.02",
             "trainer.max_epochs=2", "trainer.limit_test_batches=2", "callbacks.model_checkpoint.save_top_k=-1",
             "callbacks.progress_bar.refresh_rate=0"]  # fmt: skip
    result = cnnlab_train([*ddp, *finetune, *small], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics_files = list((tmp_path / "outputs").rglob("metrics.json"))
    assert len(metrics_files) == 1  # only rank 0 writes
    assert json.loads(metrics_files[0].read_text())["global_step"] == 4  # 2 epochs x 200 images / 2 ranks / batch 50
    assert (metrics_files[0].parent / "train_ddp_process_1.log").is_file()
    checkpoints = sorted((tmp_path / "outputs").rglob("best-epoch*.ckpt"))
    assert len(checkpoints) == 2
    first, second = (torch.load(c, map_location="cpu", weights_only=True) for c in checkpoints)
    pretrained = package_weights("tf_efficientnet_lite0", timm.create_model("tf_efficientnet_lite0").state_dict())
    key = "backbone.model.conv_stem.weight"
    assert torch.equal(first["state_dict"][key], pretrained["conv_stem.weight"])  # epoch 0: frozen
    assert not torch.equal(second["state_dict"][key], pretrained["conv_stem.weight"])  # epoch 1: training
    stem_lr = [g["lr"] for g in second["optimizer_states"][0]["param_groups"] if g["name"] == "backbone.stage0"]
    assert stem_lr and stem_lr[0] > 0


def test_ddp_on_cpu_with_the_training_tools_on(tmp_path, fashion_dir):
    """Two CPU processes with EMA, mixup / CutMix, RandAugment, TTA and class weights: the average is built and
    checkpointed once (rank 0 writes), both ranks step together, and the test runs on the averaged weights."""
    import torch

    ddp = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.sync_batchnorm=false"]
    tools = [
        "callbacks=ema",
        "callbacks.ema.decay=0.9",
        "model.mix={mixup_alpha: 0.4, cutmix_alpha: 1.0}",
        "+data.augment={policy: trivialaugment, hflip: true}",
        "model.tta=flip",
        "model.class_weights=balanced",
    ]
    small = ["data.train_size=200", "data.batch_size=25", "data.val_fraction=0.02", "trainer.max_epochs=2",
             "trainer.limit_test_batches=2", "callbacks.progress_bar.refresh_rate=0"]  # fmt: skip
    result = cnnlab_train([*ddp, *tools, *small], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics_files = list((tmp_path / "outputs").rglob("metrics.json"))
    assert len(metrics_files) == 1
    metrics = json.loads(metrics_files[0].read_text())
    assert metrics["global_step"] == 8 and metrics["test/acc"] > 0.1  # 2 epochs x 200 images / 2 ranks / batch 25
    best = torch.load(metrics["best_checkpoint"], map_location="cpu", weights_only=True)
    key = "backbone.features.0.weight"
    assert not torch.equal(best["state_dict"][key], best["current_model_state"][key])
    assert best["hyper_parameters"]["tta"] == "flip" and len(best["hyper_parameters"]["class_weights"]) == 10
