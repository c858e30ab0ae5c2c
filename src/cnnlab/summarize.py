"""cnnlab-summarize SWEEP_DIR [METRIC]: (re)write a sweep's summary.csv / summary.md and print the table."""

from __future__ import annotations

import sys
from pathlib import Path

from cnnlab.sweeps import write_summary


def cli(argv: list[str] | None = None) -> None:
    """cnnlab-summarize SWEEP_DIR [METRIC]: (re)write summary.csv / summary.md and print the table."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print("usage: cnnlab-summarize SWEEP_DIR [METRIC]   (METRIC defaults to the sweep's optimized_metric)")
        sys.exit(0 if args else 2)
    sweep_dir = Path(args[0])
    if not sweep_dir.is_dir():
        print(f"cnnlab-summarize: {sweep_dir} is not a directory (give a sweep dir under outputs/multirun/)")
        sys.exit(2)
    rows = write_summary(sweep_dir, args[1] if len(args) > 1 else None)
    if not rows:
        print(f"cnnlab-summarize: no job directories in {sweep_dir}")
        sys.exit(2)
    print((sweep_dir / "summary.md").read_text())
    sys.exit(1 if any(r["status"] == "failed" for r in rows) else 0)


if __name__ == "__main__":
    cli()
