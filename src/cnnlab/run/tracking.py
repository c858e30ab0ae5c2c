"""What a tracker (MLflow, W&B) gets of a run beyond Lightning's per-epoch metrics, and the end of its tracker run.

Lightning logs the metrics as they come. At the end of a job cnnlab adds what makes a run readable in `mlflow ui` or
W&B: the params a person chose (the same as TensorBoard's hparams table: the overrides or a sweep's swept values,
group choices by name, the seed - not 150 `_target_` keys), tags (provenance), the composed config as `config.yaml`
and the confusion matrix as a picture. TensorBoard keeps its own extras (cnnlab.utils.tensorboard); CSV needs none.

Then each tracker run ends with the job's status. That matters in a sweep: the basic launcher runs every job in one
process, and W&B keeps one current run per process, which the next job's WandbLogger would take over.

Tracker text is data: each param is a number or a plain, printable string of bounded length, each tag such a string,
the config YAML of plain values; nothing read back from a tracker is run. mlflow and wandb are optional (the `track`
extra): each is imported only where its logger is in use (Lightning's logger classes import them lazily, so
`isinstance` needs neither).
"""

from __future__ import annotations

import io
import logging
import posixpath
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import yaml
from lightning.pytorch.loggers import Logger, MLFlowLogger, TensorBoardLogger, WandbLogger
from PIL import Image

from cnnlab import metrics as M
from cnnlab.errors import CnnlabError
from cnnlab.utils.tensorboard import render_confusion_matrix
from cnnlab.utils.text import printable

log = logging.getLogger("cnnlab.run.tracking")

Status = Literal["success", "failed", "killed"]  # killed: interrupted (Ctrl+C, SIGTERM), resumable
MLFLOW_STATUS = {"success": "FINISHED", "failed": "FAILED", "killed": "KILLED"}
WANDB_EXIT_CODES = {"success": 0, "failed": 1, "killed": 130}
CONFIG_FILE = "config.yaml"
CONFUSION_FILE = "confusion_matrix.png"
WANDB_FILES = "cnnlab"  # our files' folder in a W&B run's files: W&B writes its own config.yaml beside them
# Bounds every MLflow store takes (older servers allow 500-character params, 5000-character tags).
MAX_KEY, MAX_PARAM, MAX_TAG = 250, 500, 5000
MAX_PER_BATCH = 100  # params and tags of one MLflow log_batch call
RESERVED_TAG_PREFIXES = ("mlflow.", "_wandb")  # the trackers' own tags (run name, source, user): never forged


@dataclass(frozen=True)
class RunRecord:
    """What every tracker receives, already made plain: params (numbers stay numbers: W&B plots them), string tags,
    float metrics, YAML, a picture."""

    params: dict[str, str | int | float | bool]
    tags: dict[str, str]
    metrics: dict[str, float]
    config_yaml: str
    confusion: Image.Image | None


def log_run_to_trackers(loggers: Sequence[Logger], *, params: Mapping[str, Any], config: Mapping[str, Any],
                        metrics: Mapping[str, float], tags: Mapping[str, str],
                        confusion_png: bytes | Image.Image | None) -> None:  # fmt: skip
    """Give each MLflow / W&B logger of the run its readable params, tags, final metrics, `config.yaml` and confusion
    matrix (TensorBoard its tags). A tracker that refuses them is said in the log, not fatal: the run's results are
    in its run dir already, and the other trackers still get theirs."""
    record = RunRecord(params=plain_params(params), tags=plain_tags(tags), metrics=final_numbers(metrics),
                       config_yaml=config_text(config), confusion=as_picture(confusion_png))  # fmt: skip
    for logger in loggers:
        writer = _writer_of(logger)
        if writer is None:
            continue
        try:
            writer(logger, record)
        except Exception as err:
            log.warning("%s did not take the run's params, tags and files: %s", type(logger).__name__, printable(err))


def close_trackers(loggers: Sequence[Logger], status: Status) -> None:
    """End each tracker run of a job with its status (MLflow: FINISHED / FAILED / KILLED; W&B: `finish` with exit
    code 0 / 1 / 130), so that the next job of a sweep, in the same process, starts runs of its own."""
    if status not in MLFLOW_STATUS:
        raise CnnlabError(f"close_trackers: status={status!r}; expected one of {', '.join(MLFLOW_STATUS)}.")
    for logger in loggers:
        try:
            if isinstance(logger, MLFlowLogger):
                logger.finalize(MLFLOW_STATUS[status])  # Lightning's: a no-op when the run never started
            elif isinstance(logger, WandbLogger):
                _finish_wandb(logger, status)
        except Exception as err:  # a tracker that cannot close must not hide how the job itself ended
            log.warning("could not end the %s run (%s): %s", type(logger).__name__, status, printable(err))


def confusion_picture(matrix: torch.Tensor | None, class_names: Sequence[str] | None) -> Image.Image | None:
    """The test confusion matrix as the picture TensorBoard shows (class names on both axes, counts in the cells)."""
    if matrix is None:
        return None
    pixels = render_confusion_matrix(matrix.cpu(), class_names)
    return Image.fromarray(pixels.permute(1, 2, 0).numpy())  # (H, W, 3) uint8: RGB


# ------------------------------------------------------------------------------------------- plain tracker text


def plain_key(name: Any) -> str:
    """A name every tracker accepts as a key: MLflow's characters (letters, digits, `_-. :/`), no empty or `..`
    path parts (MLflow treats keys as file names), at most MAX_KEY characters."""
    key = re.sub(r"[^A-Za-z0-9_\-. :/]", "_", str(name))
    parts = [p for p in key.split("/") if p not in ("", ".", "..")]
    return posixpath.join(*parts)[:MAX_KEY] if parts else "_"


def plain_value(value: Any, limit: int) -> str:
    """`value` as one printable line (control characters shown as their escapes), cut to `limit` characters."""
    text, cut = printable(value), " ...(truncated)"
    return text if len(text) <= limit else text[: limit - len(cut)] + cut


def plain_params(params: Mapping[str, Any]) -> dict[str, str | int | float | bool]:
    """Params under plain keys: a number as it is, anything else (a list, a name, None) as a plain string."""
    return {
        plain_key(k): v if isinstance(v, bool | int | float) else plain_value(v, MAX_PARAM) for k, v in params.items()
    }


def plain_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """Tags as plain strings; one named like a tracker's own (`mlflow.runName`, ...) is kept under `cnnlab.`, so a
    tag can never rename a run or forge where it came from."""
    plain = {plain_key(k): plain_value(v, MAX_TAG) for k, v in tags.items()}
    return {f"cnnlab.{k}" if k.startswith(RESERVED_TAG_PREFIXES) else k: v for k, v in plain.items()}


def final_numbers(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The final metrics that are numbers (a tracker takes no others), under plain keys."""
    return {
        plain_key(k): float(v) for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)
    }


def config_text(config: Mapping[str, Any]) -> str:
    """The composed config as YAML of plain values (safe_dump writes no Python tags; nothing in it is evaluated)."""
    return yaml.safe_dump(dict(config), sort_keys=False, width=120, allow_unicode=True)


def as_picture(png: bytes | Image.Image | None) -> Image.Image | None:
    """The confusion matrix given as PNG bytes or a PIL image, as an RGB image."""
    if png is None or isinstance(png, Image.Image):
        return None if png is None else png.convert("RGB")
    if not bytes(png[:8]) == b"\x89PNG\r\n\x1a\n":
        raise CnnlabError("log_run_to_trackers: confusion_png is not a PNG (it lacks the PNG signature); pass the "
                          "PNG's bytes, a PIL image or None.")  # fmt: skip
    return Image.open(io.BytesIO(png)).convert("RGB")


# ------------------------------------------------------------------------------------------------ each tracker


def _writer_of(logger: Logger) -> Callable[[Any, RunRecord], None] | None:
    for cls, writer in ((MLFlowLogger, _log_to_mlflow), (WandbLogger, _log_to_wandb),
                        (TensorBoardLogger, _log_tags_to_tensorboard)):  # fmt: skip
        if isinstance(logger, cls):
            return writer
    return None


def _log_to_mlflow(logger: MLFlowLogger, record: RunRecord) -> None:
    from mlflow.entities import Metric, Param, RunTag  # lazy: an optional extra, installed if its logger is in use

    client, run_id = logger.experiment, logger.run_id
    logged = client.get_run(run_id).data
    # MLflow refuses a param logged twice with another value; the final metrics Lightning logged keep their history.
    entries = [Param(k, plain_value(v, MAX_PARAM)) for k, v in record.params.items() if k not in logged.params]
    entries += [RunTag(k, v) for k, v in record.tags.items()]
    for chunk in _chunks(entries, MAX_PER_BATCH):
        client.log_batch(run_id, params=[e for e in chunk if isinstance(e, Param)],
                         tags=[e for e in chunk if isinstance(e, RunTag)])  # fmt: skip
    now = int(time.time() * 1000)
    missing = [Metric(k, v, now, 0) for k, v in record.metrics.items() if k not in logged.metrics]
    if missing:
        client.log_batch(run_id, metrics=missing)
    client.log_text(run_id, record.config_yaml, CONFIG_FILE)
    if record.confusion is not None:
        client.log_image(run_id, record.confusion, artifact_file=CONFUSION_FILE)


def _log_to_wandb(logger: WandbLogger, record: RunRecord) -> None:
    import wandb  # lazy: an optional extra, installed if its logger is in use

    run = logger.experiment
    run.config.update(record.params | {f"tags/{k}": v for k, v in record.tags.items()}, allow_val_change=True)
    run.summary.update(record.metrics)
    config_file = Path(run.dir) / WANDB_FILES / CONFIG_FILE  # a run's files dir: inside the cnnlab run dir
    config_file.parent.mkdir(parents=True, exist_ok=True)
    config_file.write_text(record.config_yaml, encoding="utf-8")
    run.save(str(config_file), base_path=run.dir, policy="now")
    if record.confusion is not None:
        run.log({M.TEST_CONFUSION: wandb.Image(record.confusion, caption="rows: true class, columns: predicted")})


def _log_tags_to_tensorboard(logger: TensorBoardLogger, record: RunRecord) -> None:
    """TensorBoard has its params, config and confusion matrix already (cnnlab.utils.tensorboard): only the tags."""
    if not record.tags:
        return
    rows = [f"| {k} | {v.replace('|', '/')} |" for k, v in record.tags.items()]
    logger.experiment.add_text("tags", "\n".join(["| tag | value |", "|---|---|", *rows]), 0)
    logger.experiment.flush()


def _finish_wandb(logger: WandbLogger, status: Status) -> None:
    """Lightning's finalize (checkpoints as artifacts on success), then the run's end: Lightning never calls
    `finish`. Only a run that started is ended (`experiment` would start one)."""
    run = getattr(logger, "_experiment", None)  # where Lightning keeps the run it started
    if run is None:
        return
    logger.finalize(status)
    run.finish(exit_code=WANDB_EXIT_CODES[status])


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
