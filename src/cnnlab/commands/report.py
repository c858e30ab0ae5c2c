"""cnnlab report SWEEP_DIR [METRIC] [--compare A B]: (re)write a sweep's summaries and print them; with --compare,
the paired difference of two configurations over their matched seeds / folds, in plain words."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from cnnlab.commands import Verb, argument_parser
from cnnlab.errors import CnnlabError
from cnnlab.utils.cli import PARTIAL_FAILURE_EXIT_CODE, USER_ERROR_EXIT_CODE


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argument_parser("report", __doc__, EXAMPLES, DOCS)
    parser.add_argument("sweep_dir", type=Path, help="a sweep dir under outputs/multirun/")
    parser.add_argument("metric", nargs="?", help="default: the sweep's optimized_metric (val/acc_best)")
    parser.add_argument("--compare", nargs=2, metavar=("A", "B"),
                        help="two configurations (as summary.md names them, or a part naming one each)")  # fmt: skip
    return parser.parse_args(list(argv))


def _refuse(message: str) -> None:
    print(f"cnnlab report: error: {message}", file=sys.stderr)
    sys.exit(USER_ERROR_EXIT_CODE)


def run(argv: Sequence[str]) -> None:
    """Exit 0, 1 when a job of the sweep failed, 2 for a bad argument."""
    from cnnlab.run.sweeps import compare, write_summary  # lazy: its plots import torch, once the arguments parse

    args = parse(argv)
    if not args.sweep_dir.is_dir():
        _refuse(f"{args.sweep_dir} is not a directory (give a sweep dir under outputs/multirun/)")
    try:
        rows = write_summary(args.sweep_dir, args.metric, plot=True)
    except CnnlabError as err:
        _refuse(str(err))
    if not rows:
        _refuse(f"no job directories in {args.sweep_dir}")
    print((args.sweep_dir / "summary.md").read_text())
    if args.compare:
        try:
            print(compare(args.sweep_dir, *args.compare, metric=args.metric).verdict())
        except (CnnlabError, ValueError) as err:
            _refuse(str(err))
    sys.exit(PARTIAL_FAILURE_EXIT_CODE if any(r["status"] == "failed" for r in rows) else 0)


DOCS = "docs/sweeps.md"
EXAMPLES = (
    "cnnlab report outputs/multirun/2026-12-04/10-00-00_train",
    "cnnlab report outputs/multirun/2026-12-04/10-00-00_train test/acc",
    "cnnlab report outputs/multirun/2026-12-04/10-00-00_train --compare transfer=frozen transfer=finetune",
)

VERB = Verb(
    name="report",
    summary="a sweep's table (summary.md / .csv, a plot), and --compare A B: a paired test over matched seeds",
    examples=EXAMPLES,
    run=run,
    docs=DOCS,
)
