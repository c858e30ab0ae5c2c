"""Results with error bars: replicates (seeds, folds) grouped in sweep summaries with Student-t intervals, and the
paired comparison of two configurations."""

import csv
import json
import math
import statistics
from pathlib import Path

import pytest
import torch
from scipy.stats import t

from cnnlab.commands.report import run as report_cli
from cnnlab.run.sweeps.records import read_jobs
from cnnlab.run.sweeps.replicates import compare, group_jobs
from cnnlab.run.sweeps.report import write_summary
from cnnlab.utils.stats import spread
from tests.test_sweeps import cnnlab_train, only_sweep_dir


def fake_job(sweep: Path, number: int, overrides: list[str], value: float | None) -> None:
    job = sweep / f"{number}_job"
    job.mkdir(parents=True)
    status = "failed" if value is None else "completed"
    (job / "job.json").write_text(json.dumps({"overrides": overrides, "status": status, "error": "boom" * (not value)}))
    if value is not None:
        (job / "metrics.json").write_text(json.dumps({"val/acc_best": value, "test/acc": value - 0.01}))


@pytest.fixture
def sweep(tmp_path) -> Path:
    """lr=0.1: 0.90 0.91 0.92; lr=0.2: 0.80 0.81 (its seed=3 failed); lr=0.3: lr=0.1's values, 0.002 higher."""
    values = {"0.1": [0.90, 0.91, 0.92], "0.2": [0.80, 0.81, None], "0.3": [0.902, 0.912, 0.922]}
    number = 0
    for lr, runs in values.items():
        for seed, value in enumerate(runs, start=1):
            fake_job(tmp_path, number, [f"optimizer.lr={lr}", f"seed={seed}"], value)
            number += 1
    return tmp_path


def expected(values: list[float]) -> tuple[float, float, float, float]:
    """Mean, sd and interval, computed here independently of cnnlab."""
    mean, sd = sum(values) / len(values), statistics.stdev(values)
    half = t.ppf(0.975, len(values) - 1) * sd / math.sqrt(len(values))
    return mean, sd, mean - half, mean + half


def test_replicates_are_grouped_with_n_mean_sd_interval_min_max(sweep):
    write_summary(sweep, "val/acc_best")
    groups = {row["configuration"]: row for row in csv.DictReader((sweep / "summary_groups.csv").open())}
    assert set(groups) == {"optimizer.lr=0.1", "optimizer.lr=0.2", "optimizer.lr=0.3"}
    for lr, values in (("0.1", [0.90, 0.91, 0.92]), ("0.2", [0.80, 0.81])):
        row = groups[f"optimizer.lr={lr}"]
        mean, sd, low, high = expected(values)
        assert int(row["n"]) == len(values)
        assert float(row["val/acc_best/mean"]) == pytest.approx(mean)
        assert float(row["val/acc_best/sd"]) == pytest.approx(sd)
        assert float(row["val/acc_best/ci_low"]) == pytest.approx(low)
        assert float(row["val/acc_best/ci_high"]) == pytest.approx(high)
        assert float(row["val/acc_best/min"]) == min(values) and float(row["val/acc_best/max"]) == max(values)
    assert groups["optimizer.lr=0.2"]["failed"] == "1"  # counted, never averaged in
    text = (sweep / "summary.md").read_text()
    assert "| optimizer.lr=0.1 | 3 | 0 | 0.9100 +- 0.0248 (n=3) |" in text


def test_groups_rank_by_the_lower_end_of_the_interval(sweep):
    order = [g["configuration"] for g in group_jobs(read_jobs(sweep), "val/acc_best")]
    assert order == ["optimizer.lr=0.3", "optimizer.lr=0.1", "optimizer.lr=0.2"]


def test_compare_says_better_or_no_difference(sweep, capsys):
    clear = compare(sweep, "optimizer.lr=0.1", "lr=0.2", "val/acc_best")  # a part that names one is enough
    assert clear.matched == ["seed=1", "seed=2"] and clear.difference.mean == pytest.approx(0.10)
    assert clear.verdict().startswith("optimizer.lr=0.1 is better than optimizer.lr=0.2 on val/acc_best by 10.00")
    tiny = compare(sweep, "lr=0.3", "lr=0.1", "val/acc_best")  # +0.002 on every seed: consistent, so detectable
    assert "optimizer.lr=0.3 is better" in tiny.verdict() and "by 0.20 +- 0.00 points" in tiny.verdict()
    same = compare(sweep, "lr=0.1", "lr=0.1", "val/acc_best")
    assert same.verdict().startswith("no difference detectable with n=3")
    with pytest.raises(SystemExit) as exit_info:
        report_cli([str(sweep), "--compare", "lr=0.1", "lr=0.2"])
    assert exit_info.value.code == 1  # a job of the sweep failed
    assert "is better than" in capsys.readouterr().out and (sweep / "groups.png").is_file()


def test_noisy_replicates_show_no_difference():
    assert spread([0.5]).cell() == "0.5000 (n=1)" and math.isnan(spread([0.5]).sd)
    a = {"seed=1": 0.90, "seed=2": 0.93, "seed=3": 0.88}
    b = {"seed=1": 0.91, "seed=2": 0.89, "seed=3": 0.90}
    from cnnlab.utils.stats import paired

    assert paired(a, b, ("a", "b"), "test/acc").verdict().startswith("no difference detectable with n=3")


def test_a_replicated_grid_through_the_cli(tmp_path, fashion_dir):
    """seed=1,2,3 x two learning rates on digits: six jobs, two groups; the summary's figures are recomputed here
    from each job's own metrics.json."""
    tiny = ["data=digits", "model.backbone.padding=1", "trainer.max_epochs=1", "logger=none",
            "callbacks.progress_bar.refresh_rate=0"]  # fmt: skip
    result = cnnlab_train(["-m", "seed=1,2,3", "optimizer.lr=0.001,0.01", *tiny], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    sweep = only_sweep_dir(tmp_path)
    values: dict[str, list[float]] = {}
    for job in sweep.iterdir():
        if (job / "metrics.json").is_file():
            overrides = json.loads((job / "job.json").read_text())["overrides"]
            lr = next(o for o in overrides if o.startswith("optimizer.lr="))
            values.setdefault(lr, []).append(json.loads((job / "metrics.json").read_text())["test/acc"])
    groups = {row["configuration"]: row for row in csv.DictReader((sweep / "summary_groups.csv").open())}
    for lr, runs in values.items():
        mean, sd, low, high = expected(runs)
        assert len(runs) == 3 and int(groups[lr]["n"]) == 3
        assert float(groups[lr]["test/acc/mean"]) == pytest.approx(mean)
        assert float(groups[lr]["test/acc/sd"]) == pytest.approx(sd)
        assert float(groups[lr]["test/acc/ci_low"]) == pytest.approx(low)
        assert float(groups[lr]["test/acc/ci_high"]) == pytest.approx(high)
    assert (sweep / "groups.png").is_file() and list((sweep / "tensorboard").glob("events.*"))


def test_cv_runs_every_fold_as_a_job_and_reports_the_cv_interval(tmp_path, fashion_dir):
    tiny = ["data=digits", "model.backbone.padding=1", "trainer.max_epochs=1", "logger=none",
            "callbacks.progress_bar.refresh_rate=0"]  # fmt: skip
    result = cnnlab_train(["cv=3fold", *tiny], tmp_path)  # no -m: the cv option makes it a sweep
    assert result.returncode == 0, result.stderr[-3000:]
    sweep = only_sweep_dir(tmp_path)
    rows = read_jobs(sweep)
    assert sorted(r["replicate"] for r in rows) == ["data.fold=0", "data.fold=1", "data.fold=2"]
    (group,) = group_jobs(rows, "val/acc_best")
    assert group["n"] == 3 and group["val/acc_best"].low < group["val/acc_best"].mean < group["val/acc_best"].high


def test_the_hparams_table_shows_what_was_swept_not_every_config_key():
    from cnnlab.utils.tensorboard import table_hparams

    config = {"seed": 1, "optimizer": {"_target_": "torch.optim.Adam", "lr": 0.003}, "model": {"backbone": {
        "_target_": "cnnlab.models.cnn.SeedCNN", "widths": [32, 64]}}, "transfer": {"mode": "scratch"}}  # fmt: skip
    assert table_hparams(config, ["optimizer.lr=0.003", "model=cnn"]) == {
        "optimizer/lr": 0.003, "model": "cnn", "seed": 1}  # fmt: skip
    essentials = table_hparams(config, [])
    assert essentials == {"model/backbone/widths": "[32, 64]", "transfer/mode": "scratch", "optimizer/lr": 0.003,
                          "seed": 1}  # fmt: skip


def test_swept_keys_come_from_the_sweeps_own_command_line(tmp_path):
    from cnnlab.utils.overrides import swept_keys

    (tmp_path / "multirun.yaml").write_text(
        "hydra:\n  sweeper:\n    params:\n      data.fold: range(5)\n  overrides:\n    task:\n"
        "    - optimizer.lr=0.001,0.003\n    - seed=range(3)\n    - data=digits\n    - trainer.max_epochs=2\n"
    )
    assert swept_keys(tmp_path) == {"data.fold", "optimizer.lr", "seed"}


def test_the_confusion_matrix_picture_has_a_labelled_cell_per_pair():
    from cnnlab.utils.tensorboard import render_confusion_matrix

    matrix = torch.tensor([[9, 1], [3, 7]])
    short, named = render_confusion_matrix(matrix), render_confusion_matrix(matrix, ["T-shirt/top", "Trouser"])
    assert named.dtype == torch.uint8 and named.shape[0] == 3
    assert named.shape[1] > short.shape[1]  # room for the names on both axes
    margin = named.shape[1] - 2 * 40 - 4
    diagonal = named[:, margin + 5, margin + 5].float().mean()  # inside cell (0, 0): 90% of its row, dark
    off = named[:, margin + 5, margin + 45].float().mean()  # inside cell (0, 1): 10%, pale
    assert diagonal < 120 < off


def test_a_duplicate_run_is_counted_once_never_as_a_replicate(tmp_path):
    """Two workers (or a relaunch) ran lr=0.1 with seed=1 twice: the same run twice says nothing about consistency.
    The configuration shows n=1 with the duplicate counted apart, no interval; real replicates keep theirs; the
    Optuna trial id every job carries (hydra.sweeper.trial_id) is not part of a configuration."""
    runs = [("0.1", 1, 0.90, 0), ("0.1", 1, 0.90, 1), ("0.2", 1, 0.80, 2), ("0.2", 2, 0.82, 3)]
    for number, (lr, seed, value, trial) in enumerate(runs):
        fake_job(tmp_path, number, [f"optimizer.lr={lr}", f"seed={seed}", f"hydra.sweeper.trial_id={trial}"], value)
    groups = {g["configuration"]: g for g in group_jobs(read_jobs(tmp_path), "val/acc_best")}
    assert set(groups) == {"optimizer.lr=0.1", "optimizer.lr=0.2"}
    assert (groups["optimizer.lr=0.1"]["n"], groups["optimizer.lr=0.1"]["duplicates"]) == (1, 1)
    assert (groups["optimizer.lr=0.2"]["n"], groups["optimizer.lr=0.2"]["duplicates"]) == (2, 0)
    write_summary(tmp_path, "val/acc_best")
    summary = (tmp_path / "summary.md").read_text()
    assert "1 job(s) repeat another job's configuration with the same seed" in summary
    row = next(line for line in summary.splitlines() if line.startswith("| optimizer.lr=0.1 |"))
    assert "+-" not in row and "0.9000 (n=1)" in row  # one run, no interval
    assert "+-" in next(line for line in summary.splitlines() if line.startswith("| optimizer.lr=0.2 |"))


def test_pruned_jobs_are_listed_apart_and_never_ranked(tmp_path):
    fake_job(tmp_path, 0, ["optimizer.lr=0.1"], 0.90)
    fake_job(tmp_path, 1, ["optimizer.lr=0.2"], 0.95)
    metrics = tmp_path / "1_job" / "metrics.json"
    metrics.write_text(json.dumps({**json.loads(metrics.read_text()), "pruned": {"trial": 1, "epoch": 0}}))
    rows = write_summary(tmp_path, "val/acc_best")
    assert [r["status"] for r in rows] == ["completed", "pruned"]  # the pruned one's higher value does not lead
    assert "1 pruned (stopped early" in (tmp_path / "summary.md").read_text()
