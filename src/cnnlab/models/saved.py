"""What a cnnlab checkpoint holds beside the weights, and why Lightning's own loader is shut.

Every constructor argument of the model is a plain value or dict, saved as the checkpoint's `hyper_parameters`; the
`cnnlab` record beside it names the version, the model class, the run's composed config and the preprocessing. So
`cnnlab.load_classifier(path)` rebuilds the model - preprocessing included - without the run dir or Hydra.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn

from cnnlab import __version__

RECORD = "cnnlab"  # the checkpoint key of cnnlab's record


class SavedRun:
    """Mixin of the LightningModule cnnlab saves: the run's config it carries, and Lightning's loader shut."""

    run_config: dict[str, Any] | None = None  # set by cnnlab.run.training: the composed config of the run

    @classmethod
    def load_from_checkpoint(cls, *args: Any, **kwargs: Any) -> NoReturn:
        """Shut: Lightning's loader unpickles the file, so a crafted checkpoint could run code."""
        raise TypeError(
            f"{cls.__name__}.load_from_checkpoint would unpickle the file without cnnlab's checks: use "
            "cnnlab.load_classifier(path), which refuses files that would run code."
        )


def checkpoint_record(model: Any, train_sums: list[float]) -> dict[str, Any]:
    """The `cnnlab` record `model.on_save_checkpoint` writes: what rebuilding and resuming need beside the weights.

    Args:
        model: the ImageClassifier (or a subclass) being saved.
        train_sums: the epoch's running train loss / accuracy sums, so a run resumed mid-epoch reports the same
            epoch means.
    """
    return {
        "version": __version__,
        "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
        "config": model.run_config,
        "preprocessing": model.preprocessing(),
        "train_sums": train_sums,
    }


def saved_record(checkpoint: Mapping[str, Any]) -> dict[str, Any]:
    """The `cnnlab` record of a read checkpoint; empty for one written before the record existed."""
    return checkpoint.get(RECORD) or {}
