"""cnnlab-summarize SWEEP_DIR [METRIC] [--compare A B]: (re)write a sweep's summaries and print them; with
--compare, the paired difference of two configurations over their matched seeds / folds, in plain words."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cnnlab.errors import CnnlabError
from cnnlab.sweeps import compare, write_summary


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="cnnlab-summarize", description=__doc__)
    parser.add_argument("sweep_dir", type=Path, help="a sweep dir under outputs/multirun/")
    parser.add_argument("metric", nargs="?", help="default: the sweep's optimized_metric (val/acc_best)")
    parser.add_argument("--compare", nargs=2, metavar=("A", "B"),
                        help="two configurations (as summary.md names them, or a part naming one each)")  # fmt: skip
    return parser.parse_args(argv)


def cli(argv: list[str] | None = None) -> None:
    """Exit 0, 1 when a job of the sweep failed, 2 for a bad argument."""
    args = parse(sys.argv[1:] if argv is None else argv)
    if not args.sweep_dir.is_dir():
        print(f"cnnlab-summarize: {args.sweep_dir} is not a directory (give a sweep dir under outputs/multirun/)")
        sys.exit(2)
    try:
        rows = write_summary(args.sweep_dir, args.metric, plot=True)
    except CnnlabError as err:
        print(f"cnnlab-summarize: {err}")
        sys.exit(2)
    if not rows:
        print(f"cnnlab-summarize: no job directories in {args.sweep_dir}")
        sys.exit(2)
    print((args.sweep_dir / "summary.md").read_text())
    if args.compare:
        try:
            print(compare(args.sweep_dir, *args.compare, metric=args.metric).verdict())
        except (CnnlabError, ValueError) as err:
            print(f"cnnlab-summarize: {err}")
            sys.exit(2)
    sys.exit(1 if any(r["status"] == "failed" for r in rows) else 0)


if __name__ == "__main__":
    cli()
