"""What a run prints: Lightning's bar on a terminal; off one (a log file, CI, `| tee`) a line per epoch and not one
control character; a table of the final metrics in both."""

from __future__ import annotations

import errno
import fcntl
import io
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from lightning.pytorch.callbacks import TQDMProgressBar

from cnnlab import metrics as M
from cnnlab.errors import CnnlabError
from cnnlab.run.builders import build_callbacks, build_trainer
from cnnlab.run.callbacks.progress import EpochLines, console_progress, epoch_line
from cnnlab.utils.tables import metrics_table, two_column_table
from tests.conftest import compose_config

TINY = ["data=digits", "model.backbone.padding=1", "trainer.max_epochs=2", "logger=none"]
EPOCH_LINE = re.compile(r"\] - epoch (\d+)/2  (.*)  \(\d+\.\d s\)$", re.MULTILINE)


def cli_env() -> dict[str, str]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    env.pop("CNNLAB_ROOT", None)
    return env


def start_on_terminal(args: list[str], cwd: Path) -> tuple[subprocess.Popen, int]:
    """Start `args` with a pseudo-terminal (120 columns) as its stdout and stderr, as a shell would; returns the
    process and the terminal's reading end."""
    reader, writer = pty.openpty()
    fcntl.ioctl(writer, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(args, cwd=cwd, env=cli_env(), stdin=subprocess.DEVNULL, stdout=writer, stderr=writer)
    os.close(writer)  # the child holds its own copy: reading ends (EIO) when the child exits
    return proc, reader


def terminal_output(reader: int, timeout: float = 300) -> Iterator[bytes]:
    """What the process writes to its terminal, chunk by chunk, until it closes it; closes `reader` at the end."""
    deadline = time.monotonic() + timeout
    try:
        while select.select([reader], [], [], max(0.0, deadline - time.monotonic()))[0]:
            try:
                chunk = os.read(reader, 4096)
            except OSError as err:  # Linux answers EIO once every writer is gone
                if err.errno != errno.EIO:
                    raise
                return
            if not chunk:
                return
            yield chunk
        raise TimeoutError(f"no output for {timeout} s")
    finally:
        os.close(reader)


def cnnlab_train(*args: str) -> list[str]:
    return [sys.executable, "-m", "cnnlab", "train", *args]


def test_off_a_terminal_a_line_per_epoch_and_no_control_characters(tmp_path):
    run_dir = tmp_path / "run"
    result = subprocess.run(cnnlab_train(*TINY, f"hydra.run.dir={run_dir}"), cwd=tmp_path, env=cli_env(),
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    log = (run_dir / "train.log").read_text()
    for text in (result.stdout, result.stderr, log):
        assert "\r" not in text and "\x1b" not in text and "it/s" not in text
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for text in (result.stdout, log):
        epochs = EPOCH_LINE.findall(text)
        assert [n for n, _ in epochs] == ["1", "2"]
        last = dict(re.findall(r"(\S+) (\d+\.\d{4})", epochs[-1][1]))
        # The last epoch's line has that epoch's values (the model logs train/ after the callbacks' epoch end).
        assert last == {name: f"{metrics[name]:.4f}" for name in (M.TRAIN_LOSS, M.VAL_LOSS, M.VAL_ACC)}
        assert_final_table(text, metrics)


def assert_final_table(text: str, metrics: dict) -> None:
    """The final metrics, one aligned row each (train/, val/, test/ in that order, 4 decimals), then the run dir."""
    after = text.split("] - final metrics:\n", 1)[1].splitlines()
    names = [M.TRAIN_ACC, M.TRAIN_LOSS, M.VAL_ACC, M.VAL_ACC_BEST, M.VAL_LOSS, M.TEST_ACC, M.TEST_LOSS]
    rows = after[: len(names)]
    assert [row.split() for row in rows] == [[name, f"{metrics[name]:.4f}"] for name in names]
    assert len({len(row) for row in rows}) == 1  # the values right-aligned in one column
    assert "] - outputs: " in after[len(names)]


def test_on_a_terminal_lightnings_bar(tmp_path):
    proc, reader = start_on_terminal(cnnlab_train(*TINY, f"hydra.run.dir={tmp_path / 'run'}"), tmp_path)
    output = b"".join(terminal_output(reader)).decode(errors="replace")
    assert proc.wait(timeout=60) == 0, output[-2000:]
    assert "Epoch 1: 100%" in output and "it/s" in output and "\r" in output
    assert not EPOCH_LINE.search(output.replace("\r\n", "\n"))  # the bar says it already
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert_final_table(output.replace("\r\n", "\n"), metrics)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_bar_is_chosen_by_where_the_output_goes():
    assert type(console_progress(50, stream=Terminal())) is TQDMProgressBar
    assert console_progress(50, stream=Terminal()).refresh_rate == 50
    assert isinstance(console_progress(50, stream=io.StringIO()), EpochLines)
    assert isinstance(console_progress(0, stream=Terminal()), EpochLines)  # refresh_rate=0: no bar, the lines
    assert isinstance(console_progress(50, stream=None), EpochLines)  # pytest's captured stdout is no terminal
    with pytest.raises(CnnlabError, match=r"refresh_rate=-1: a whole number of steps >= 0"):
        console_progress(-1)


def test_without_a_bar_in_the_config_lightning_adds_none(tmp_path):
    """callbacks=none: Lightning would add its own tqdm bar (frames off a terminal too) unless told not to."""
    cfg = compose_config("train", [*TINY, "callbacks=none"], tmp_path, tmp_path / "run")
    assert build_trainer(cfg, build_callbacks(cfg)).progress_bar_callback is None
    cfg = compose_config("train", TINY, tmp_path, tmp_path / "run")
    assert isinstance(build_trainer(cfg, build_callbacks(cfg)).progress_bar_callback, EpochLines)


def test_epoch_lines_and_tables_read_as_documented():
    line = epoch_line(2, 10, {M.TRAIN_LOSS: 0.41204, M.VAL_ACC: 0.87312}, 12.44)
    assert line == "epoch 3/10  train/loss 0.4120  val/acc 0.8731  (12.4 s)"
    assert epoch_line(0, -1, {}, 1.0) == "epoch 1  (1.0 s)"  # bounded by steps: no count of epochs
    assert two_column_table([("a", "1.5"), ("longer", "10.25")]) == "a         1.5\nlonger  10.25"
    assert two_column_table([]) == ""
    table = metrics_table({M.TEST_ACC: 0.5, "other": 2.0, M.VAL_LOSS: 0.25, M.TRAIN_LOSS: 1.0})
    assert [row.split()[0] for row in table.splitlines()] == [M.TRAIN_LOSS, M.VAL_LOSS, M.TEST_ACC, "other"]
