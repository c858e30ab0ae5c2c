"""cnnlab predict: top-k labels for image files, printed and optionally written to a table."""

from __future__ import annotations

from omegaconf import DictConfig

from cnnlab.commands import Verb
from cnnlab.run.checks import check_predict_config


def run(cfg: DictConfig) -> None:
    """Predict every image of `inputs`."""
    from cnnlab.run.prediction import predict  # lazy: torch loads once the config has passed

    predict(cfg)


VERB = Verb(
    name="predict",
    summary="top-k labels for image files (a file, a folder or a glob), as a table or .csv / .json",
    examples=(
        "cnnlab predict ckpt_path=model.ckpt inputs=photo.jpg",
        "cnnlab predict ckpt_path=model.ckpt inputs=my_images/ output=preds.csv",
        "cnnlab predict ckpt_path=model.ckpt inputs='shots/*.png' top_k=1 tta=flip",
    ),
    run=run,
    config="predict",
    check=check_predict_config,
    docs="docs/apply.md",
)
