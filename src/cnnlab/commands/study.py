"""cnnlab study: test accuracy vs training-set size for scratch / frozen / fine-tuned (and the seed CNN)."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from cnnlab.commands import Verb, argument_parser
from cnnlab.run.study_plan import IMAGES_PER_RUN, MODES, SEEDS, SIZES, markdown_table

DOCS = "docs/results.md"
EXAMPLES = (
    "cnnlab study --sizes 100 1000 --seeds 1 2 3",
    "cnnlab study trainer=gpu --modes 'lite0 frozen' 'lite0 finetune'",
    "cnnlab study --root outputs/study_small --sizes 100 --images-per-run 3000",
)


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argument_parser("study", __doc__, EXAMPLES, DOCS)
    parser.add_argument("--root", default="outputs/study", help="results.json and one run dir per (mode, size)")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--images-per-run", type=int, default=IMAGES_PER_RUN)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS), help="replicates of every cell")
    parser.add_argument("overrides", nargs="*", help="cnnlab train overrides for every run, e.g. trainer=gpu")
    return parser.parse_args(list(argv))


def run(argv: Sequence[str]) -> None:
    """Run (or continue) the study of `argv`'s sizes, modes and seeds; print its table."""
    args = parse(argv)
    from cnnlab.run.study import run_study  # lazy: torch and Lightning load once the arguments have parsed

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rows = run_study(args.root, args.sizes, args.modes, args.overrides, args.images_per_run, seeds=args.seeds)
    print(markdown_table(rows))


VERB = Verb(
    name="study",
    summary="the transfer-learning study: accuracy vs training-set size, scratch / frozen / finetune, with seeds",
    examples=EXAMPLES,
    run=run,
    docs=DOCS,
)
