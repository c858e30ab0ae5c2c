"""Tracking where teams track: MLflow (SQLite store under outputs/) and W&B (offline, inside the run dir), alone and
together, through the real CLI; the tracker text made plain; and a real `mlflow server` rendered by headless Chromium.

One sweep serves the CLI tests: `logger=[many,wandb]` (Hydra's list selection of the group; `many` is TensorBoard +
MLflow + CSV) over `optimizer.lr=1e-3,3e-3,1e30`, two epochs on digits. The third job diverges (a NaN loss at its
second step): a failing job.
"""

from __future__ import annotations

import io
import json
import os
import struct
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from PIL import Image

from cnnlab.errors import CnnlabError
from cnnlab.run.tracking import MAX_TAG, close_trackers, log_run_to_trackers, plain_key, plain_params, plain_tags
from tests.browser import chromium, chromium_dom, free_port, serving
from tests.conftest import trained_once
from tests.test_sweeps import cnnlab_train

DIGITS = ["data=digits", "model.backbone.padding=1", "trainer.max_epochs=2", "trainer.limit_train_batches=2",
          "trainer.limit_val_batches=1", "trainer.limit_test_batches=1",
          "callbacks.progress_bar.refresh_rate=0"]  # fmt: skip
EPOCHS = 2
GOOD_JOBS = {"0_optimizer.lr-0.001": "0.001", "1_optimizer.lr-0.003": "0.003"}
FAILING_JOB = "2_optimizer.lr-1e+30"


@pytest.fixture(scope="session")
def tracked_sweep(tmp_path_factory) -> tuple[Path, Path]:
    """(the folder the sweep ran in, the sweep dir), made once per test run and shared read-only."""
    pytest.importorskip("mlflow")
    pytest.importorskip("wandb")

    def sweep_into(work: Path) -> dict:
        result = cnnlab_train(["-m", "optimizer.lr=1e-3,3e-3,1e30", "logger=[many,wandb]", *DIGITS], work)
        return {"returncode": result.returncode, "stderr": result.stderr[-3000:], "work": str(work)}

    shared = trained_once(tmp_path_factory, "tracked_sweep", sweep_into)
    assert shared["returncode"] == 1, shared["stderr"]  # the diverging job fails, the sweep says so at the end
    work = Path(shared["work"])
    sweeps = list((work / "outputs" / "multirun").glob("*/*"))
    assert len(sweeps) == 1, sweeps
    return work, sweeps[0]


def mlflow_client(work: Path):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{work / 'outputs' / 'mlflow.db'}")


def mlflow_runs(work: Path) -> dict[str, object]:
    client = mlflow_client(work)
    experiment = client.get_experiment_by_name("cnnlab")
    return {run.info.run_name: run for run in client.search_runs([experiment.experiment_id])}


# ------------------------------------------------------------------------------------------------------- MLflow


def _job_provenance(work: Path, job: str) -> str:
    return next(work.glob(f"outputs/multirun/*/*/{job}/provenance.json")).read_text()


def test_mlflow_gets_one_run_per_job_with_its_params_metrics_files_and_status(tracked_sweep, tmp_path):
    work, _ = tracked_sweep
    client = mlflow_client(work)
    experiment = client.get_experiment_by_name("cnnlab")  # one experiment for the project
    assert Path(experiment.artifact_location) == work / "outputs" / "mlartifacts"
    runs = mlflow_runs(work)
    assert set(runs) == {*GOOD_JOBS, FAILING_JOB}  # one MLflow run per job, named as its job dir
    for name, lr in GOOD_JOBS.items():
        run = runs[name]
        assert run.info.status == "FINISHED", name
        assert run.data.params == {"optimizer/lr": lr, "seed": "42"}  # the swept value and the seed, no _target_
        assert {"val/acc", "val/acc_best", "train/loss", "test/acc"} <= set(run.data.metrics)
        history = client.get_metric_history(run.info.run_id, "val/acc")
        assert sorted(m.step for m in history) == sorted({m.step for m in history}) and len(history) == EPOCHS
        assert {a.path for a in client.list_artifacts(run.info.run_id)} == {"config.yaml", "confusion_matrix.png"}
        config = yaml.safe_load(
            Path(client.download_artifacts(run.info.run_id, "config.yaml", str(tmp_path))).read_text()
        )
        assert config["optimizer"]["lr"] == float(lr) and config["data"]["_target_"].endswith("DigitsDataModule")
        with Image.open(client.download_artifacts(run.info.run_id, "confusion_matrix.png", str(tmp_path))) as png:
            assert png.format == "PNG" and png.width > 10 * 40  # ten classes, a 40-pixel cell each
        assert Path(run.info.artifact_uri).is_relative_to(work / "outputs" / "mlartifacts")
        # provenance: the same record the job dir's provenance.json holds, as tags
        record = json.loads(_job_provenance(work, name))
        assert run.data.tags["git.commit"] == record["git"]["code"]["commit"] and run.data.tags["torch"]
        assert run.data.tags["data.train"] == record["data"]["train"] and "cnnlab" in run.data.tags["command"]
    failed = runs[FAILING_JOB]
    assert failed.info.status == "FAILED"
    assert failed.data.params["optimizer/lr"] == "1e+30" and failed.data.tags["git.commit"]  # says what it was
    assert {p.name for p in work.iterdir()} == {"outputs"}  # no mlruns/ or mlartifacts/ in the working directory


def test_an_mlflow_run_ends_as_the_job_did_and_takes_only_plain_text(tmp_path):
    """In-process, against a store of its own: the extras as bytes, reserved tag names, a list param, then
    close_trackers with `killed` (an interrupted job); a status that is none of the three is refused."""
    pytest.importorskip("mlflow")
    from lightning.pytorch.loggers import MLFlowLogger, TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    board = TensorBoardLogger(tmp_path, name="tensorboard", version="")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    logger = MLFlowLogger(experiment_name="cnnlab", run_name="my_run", tracking_uri=uri,
                          artifact_location=str(tmp_path / "mlartifacts"))  # fmt: skip
    logger.log_metrics({"val/acc": 0.5}, step=0)
    png = io.BytesIO()
    Image.new("RGB", (8, 8), "white").save(png, format="PNG")
    params = {"model.backbone.widths": [16, 32], "optimizer/lr": 1e-3}
    tags = {"mlflow.runName": "forged", "commit": "abc\n\x1b[31m"}
    config = {"model": {"_target_": "cnnlab.models.Classifier"}}
    metrics = {"val/acc": 0.5, "test/acc": 0.75}
    log_run_to_trackers([logger, board], params=params, config=config, metrics=metrics, tags=tags,
                        confusion_png=png.getvalue())  # fmt: skip
    close_trackers([logger, board], "killed")
    client = logger.experiment
    run = client.get_run(logger.run_id)
    assert run.info.status == "KILLED" and run.info.run_name == "my_run"  # a tag cannot rename the run
    assert run.data.tags["cnnlab.mlflow.runName"] == "forged" and run.data.tags["commit"] == "abc\\n\\x1b[31m"
    assert run.data.params == {"model.backbone.widths": "[16, 32]", "optimizer/lr": "0.001"}
    assert run.data.metrics == {"val/acc": 0.5, "test/acc": 0.75}  # the final test/acc added, val/acc kept once
    assert len(client.get_metric_history(logger.run_id, "val/acc")) == 1
    assert {a.path for a in client.list_artifacts(logger.run_id)} == {"config.yaml", "confusion_matrix.png"}
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert "tags/text_summary" in events.Tags()["tensors"]  # TensorBoard gets the tags beside its own extras
    with pytest.raises(CnnlabError, match="status='done'; expected one of success, failed, killed"):
        close_trackers([logger], "done")
    with pytest.raises(CnnlabError, match="not a PNG"):
        log_run_to_trackers([logger], params={}, config={}, metrics={}, tags={}, confusion_png=b"GIF89a...")


def test_tracker_text_is_plain():
    assert plain_key("a b/../c//d:e$f") == "a b/c/d:e_f" and plain_key("../..") == "_"
    params = plain_params({"x": [1, "two"], "lr": 0.1, "flag": True, "none": None})
    assert params == {"x": "[1, 'two']", "lr": 0.1, "flag": True, "none": "None"}  # numbers stay numbers
    tags = plain_tags({"_wandb.x": "1", "diff": "y" * (MAX_TAG + 10), "bidi": "a\u202eb"})
    assert set(tags) == {"cnnlab._wandb.x", "diff", "bidi"} and tags["bidi"] == "a\\u202eb"
    assert len(tags["diff"]) == MAX_TAG and tags["diff"].endswith("...(truncated)")


# ----------------------------------------------------------------------------------------------------------- W&B


def wandb_records(path: Path) -> Iterator[object]:
    """The records of a W&B run file (`run-<id>.wandb`), decoded with wandb's own protobuf classes. wandb 0.31 has no
    Python reader of its own: the file is a W&B header (`:W&B`, 7 bytes), then LevelDB-log records in 32 KiB blocks
    (checksum 4 bytes, length 2, type 1: full, or first / middle / last of a record split across blocks)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is no W&B run file"
    position, block, pending = 7, 32768, b""
    while position + 7 <= len(data):
        if block - position % block < 7:  # a block's tail too short for a header is padding
            position += block - position % block
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        pending += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record
        elif kind == 0:
            break


def item_key(item) -> str:
    return item.key or "/".join(item.nested_key)


def wandb_run(job_dir: Path) -> dict:
    """What a job's offline W&B run holds: its name, group, project, history rows, config, files and exit code."""
    runs = list((job_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, runs  # one W&B run per job
    found: dict = {"history": [], "config": {}, "files": set(), "exit_code": None}
    for record in wandb_records(next(runs[0].glob("run-*.wandb"))):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            found |= {"id": record.run.run_id, "name": record.run.display_name, "group": record.run.run_group,
                      "project": record.run.project}  # fmt: skip
        elif kind == "history":
            found["history"].append({item_key(i): json.loads(i.value_json) for i in record.history.item})
        elif kind == "config":
            found["config"] |= {item_key(i): json.loads(i.value_json) for i in record.config.update}
        elif kind == "files":
            found["files"] |= {f.path for f in record.files.files}
        elif kind == "exit":
            found["exit_code"] = record.exit.exit_code
    return found


def test_wandb_runs_offline_inside_each_job_dir_one_run_per_job(tracked_sweep):
    _, sweep = tracked_sweep
    runs = {name: wandb_run(sweep / name) for name in [*GOOD_JOBS, FAILING_JOB]}
    assert len({run["id"] for run in runs.values()}) == 3  # no job took over another's run
    for name, run in runs.items():
        assert (run["name"], run["group"], run["project"]) == (name, sweep.name, "cnnlab")
    for name, lr in GOOD_JOBS.items():
        run = runs[name]
        assert run["exit_code"] == 0
        assert len([row for row in run["history"] if "val/acc" in row]) == EPOCHS
        assert run["config"]["optimizer/lr"] == float(lr) and run["config"]["seed"] == 42
        assert not [key for key in run["config"] if "_target_" in key]
        assert "cnnlab/config.yaml" in run["files"] and any(f.endswith(".png") for f in run["files"])
        saved = next((sweep / name / "wandb").glob("offline-run-*/files/cnnlab/config.yaml"))
        assert yaml.safe_load(saved.read_text())["optimizer"]["lr"] == float(lr)
    assert runs[FAILING_JOB]["exit_code"] == 1


# ----------------------------------------------------------------------------------------------- several at once


def test_many_trackers_write_side_by_side(tracked_sweep):
    """logger=[many,wandb]: TensorBoard, MLflow, CSV (logger=many) and W&B, each job in each of them."""
    work, sweep = tracked_sweep
    for name in GOOD_JOBS:
        job = sweep / name
        assert list((job / "tensorboard").glob("events.*")), name
        rows = (job / "csv" / "metrics.csv").read_text().splitlines()
        assert "val/acc" in rows[0] and len(rows) > EPOCHS
        assert json.loads((job / "metrics.json").read_text())["test/acc"] > 0
    assert set(mlflow_runs(work)) >= set(GOOD_JOBS)


# ------------------------------------------------------------------------------------------------ a real browser


def test_mlflow_ui_shows_the_sweeps_runs_in_a_real_browser(tracked_sweep, tmp_path):
    """`mlflow server` on the sweep's SQLite store, on loopback; headless Chromium renders the page comparing the
    sweep's runs: the jobs' names, the swept param and the metrics' names are on the page a person would see."""
    if chromium() is None:
        pytest.skip("no Chromium to render mlflow ui: apt-get install chromium")
    work, _ = tracked_sweep
    port = free_port()
    store = f"sqlite:///{work / 'outputs' / 'mlflow.db'}"
    server = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", store, "--host", "127.0.0.1", "--port",
              str(port), "--workers", "1"]  # fmt: skip
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no job runner (7 worker processes)
    base = f"http://127.0.0.1:{port}"
    with serving(server, f"{base}/health", tmp_path / "server.log", cwd=tmp_path, env=env):
        dom = chromium_dom(compare_runs_url(base, work))
    missing = [text for text in [*GOOD_JOBS, FAILING_JOB, "optimizer/lr", "val/acc", "test/acc"] if text not in dom]
    assert not missing, f"not on the page: {missing}\n{dom[-2000:]}"


def compare_runs_url(base: str, work: Path) -> str:
    """mlflow ui's page comparing every run of the `cnnlab` experiment: names, params and metrics side by side."""
    client = mlflow_client(work)
    experiment = client.get_experiment_by_name("cnnlab").experiment_id
    runs = [run.info.run_id for run in client.search_runs([experiment])]
    return f'{base}/#/compare-runs?runs={json.dumps(runs, separators=(",", ":"))}&experiments=["{experiment}"]'
