"""cnnlab shards data=<any> output_dir=<folder | s3://...>: any of cnnlab's datasets (the MNIST family, digits,
image folders, torchvision's, Hugging Face's) as LitData shards that data=streaming trains from. Each split (as
cnnlab train would split it) goes to <output_dir>/<split>/, its class names, geometry and statistics to cnnlab.json.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from cnnlab.data.base import InMemoryDataModule
from cnnlab.data.shards import write_shards
from cnnlab.errors import CnnlabError
from cnnlab.run.builders import build_datamodule
from cnnlab.run.checks import check_shards_config

log = logging.getLogger("cnnlab.run.sharding")


def write_dataset_shards(cfg: DictConfig) -> dict[str, Any]:
    """Write the shards; returns what cnnlab.json holds (plus the time it took)."""
    check_shards_config(cfg)
    output = cfg.output_dir
    datamodule, info = build_datamodule(cfg.data)
    if not isinstance(datamodule, InMemoryDataModule):
        raise CnnlabError(f"data={info.name}: cnnlab shards reads cnnlab's own datasets (MNIST family, digits, "
                          "image_folder, torchvision, hf); it is already a DataModule of its own.")  # fmt: skip
    started = time.perf_counter()
    target = output if "://" in output else str(Path(output).expanduser())
    meta = write_shards(datamodule, target, str(cfg.chunk_bytes), int(cfg.num_workers))
    meta["duration_s"] = round(time.perf_counter() - started, 2)
    log.info("%s: %s images as LitData shards in %s (%.1f s). Train with: cnnlab train data=streaming "
             "data.input_dir=%s", info.name, meta["counts"], target, meta["duration_s"], target)  # fmt: skip
    return meta
