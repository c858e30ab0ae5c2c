"""cnnlab shards: any of cnnlab's datasets written as LitData shards that data=streaming trains from."""

from __future__ import annotations

from omegaconf import DictConfig

from cnnlab.commands import Verb
from cnnlab.run.checks import check_shards_config


def run(cfg: DictConfig) -> None:
    """Write the shards."""
    from cnnlab.run.sharding import write_dataset_shards  # lazy: torch and LitData load once the config has passed

    write_dataset_shards(cfg)


VERB = Verb(
    name="shards",
    summary="a dataset as LitData shards (local or s3://) for data=streaming",
    examples=(
        "cnnlab shards data=fashion_mnist output_dir=shards/fashion",
        "cnnlab shards data=image_folder data.root=my_images output_dir=shards/mine",
        "cnnlab shards data=mnist output_dir=s3://bucket/mnist chunk_bytes=128MB",
    ),
    run=run,
    config="shards",
    check=check_shards_config,
    docs="docs/data.md",
)
