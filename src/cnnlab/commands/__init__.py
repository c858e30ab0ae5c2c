"""The verbs of `cnnlab`, one module each and all of one shape: `VERB = Verb(name, summary, examples, run, ...)`.

A verb's module imports only what composing and checking its config need - no torch, no Lightning - so that
`cnnlab <verb>` answers a bad value in about a second; its `run` imports the work when the work starts.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Verb:
    """One verb of the `cnnlab` command.

    Args:
        name: what the user types (`cnnlab <name>`); also the module's and the config's name.
        summary: one line for `cnnlab`'s list of verbs.
        examples: three real commands, shown by `cnnlab <name> --help` (and run by the docs tests).
        run: does the work. Hydra verbs get the composed config; plain-argument verbs get their argv.
        config: `conf/<config>.yaml` for a Hydra verb; None for a verb of plain arguments (argparse).
        check: every value of the composed config, before anything runs; torch-free (raises CnnlabError).
        docs: the page of the docs that says more.
    """

    name: str
    summary: str
    examples: Sequence[str]
    run: Callable[[Any], Any]
    config: str | None = None
    check: Callable[[Any], None] | None = None
    docs: str = "docs/index.md"


def description(doc: str) -> str:
    """What a verb does, from its module's docstring (`cnnlab train: <what it does>`)."""
    return doc.split(": ", 1)[-1].strip()


def argument_parser(name: str, doc: str, examples: Sequence[str], docs: str) -> argparse.ArgumentParser:
    """The parser of a verb of plain arguments (report, study), whose `--help` reads like a Hydra verb's: what it
    does, three examples, where to read more."""
    return argparse.ArgumentParser(prog=f"cnnlab {name}", description=description(doc),
                                   epilog="examples:\n  " + "\n  ".join(examples) + f"\n\nmore: {docs}",
                                   formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
