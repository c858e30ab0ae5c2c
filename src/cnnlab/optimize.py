"""cnnlab-optimize data=<any> output_dir=<folder | s3://...>: any of cnnlab's datasets (the MNIST family, digits,
image folders, torchvision's, Hugging Face's) as LitData shards that data=streaming trains from. Each split (as
cnnlab-train would split it) goes to <output_dir>/<split>/, its class names, geometry and statistics to cnnlab.json.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from cnnlab.builders import build_datamodule
from cnnlab.config_checks import writable_dir_problem
from cnnlab.data.base import InMemoryDataModule
from cnnlab.data.checks import check_byte_size, check_data
from cnnlab.data.shards import write_shards
from cnnlab.errors import CnnlabError, Problems
from cnnlab.utils.cli import hydra_cli
from cnnlab.utils.config import resolved_config

log = logging.getLogger("cnnlab.optimize")


def optimize(cfg: DictConfig) -> dict[str, Any]:
    """Write the shards; returns what cnnlab.json holds (plus the time it took)."""
    problems = Problems()
    output = cfg.get("output_dir")
    problems.check(isinstance(output, str) and bool(output), "output_dir", output,
                   "required: a folder or s3:// URI for the shards")  # fmt: skip
    if isinstance(output, str) and output and "://" not in output:
        problem = writable_dir_problem(Path(output).expanduser())
        if problem:
            problems.add(f"output_dir={output!r} {problem}")
    problems.int_at_least("num_workers", cfg.get("num_workers"), 1)
    check_byte_size("chunk_bytes", cfg.get("chunk_bytes"), problems)
    check_data(resolved_config(cfg).get("data") or {}, problems)
    problems.raise_if_any("invalid cnnlab-optimize configuration (nothing was written)")
    datamodule, info = build_datamodule(cfg.data)
    if not isinstance(datamodule, InMemoryDataModule):
        raise CnnlabError(f"data={info.name}: cnnlab-optimize reads cnnlab's own datasets (MNIST family, digits, "
                          "image_folder, torchvision, hf); it is already a DataModule of its own.")  # fmt: skip
    started = time.perf_counter()
    target = output if "://" in output else str(Path(output).expanduser())
    meta = write_shards(datamodule, target, str(cfg.chunk_bytes), int(cfg.num_workers))
    meta["duration_s"] = round(time.perf_counter() - started, 2)
    log.info("%s: %s images as LitData shards in %s (%.1f s). Train with: cnnlab-train data=streaming "
             "data.input_dir=%s", info.name, meta["counts"], target, meta["duration_s"], target)  # fmt: skip
    return meta


def run(cfg: DictConfig) -> None:
    """Write a dataset as LitData shards."""
    optimize(cfg)


cli = hydra_cli("optimize", run)

if __name__ == "__main__":
    cli()
