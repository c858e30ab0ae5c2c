"""cnnlab study: test accuracy vs training-set size for scratch / frozen / fine-tuned (and the seed CNN)."""

from __future__ import annotations

from collections.abc import Sequence

from cnnlab.commands import Verb


def run(argv: Sequence[str]) -> None:
    """Run (or continue) the study of `argv`'s sizes, modes and seeds."""
    from cnnlab.run.study import main  # torch and Lightning: imported once the command is known

    main(argv)


VERB = Verb(
    name="study",
    summary="the transfer-learning study: accuracy vs training-set size, scratch / frozen / finetune, with seeds",
    examples=(
        "cnnlab study --sizes 100 1000 --seeds 1 2 3",
        "cnnlab study --modes 'lite0 frozen' 'lite0 finetune' trainer=gpu",
        "cnnlab study --root outputs/study_small --sizes 100 --images-per-run 3000",
    ),
    run=run,
    docs="docs/results.md",
)
