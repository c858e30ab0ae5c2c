"""Every figure the docs quote comes from docs/figures.json: `python docs/figures.py --check | --write`.

In markdown a figure is written `<!--fig KEY-->VALUE<!--/fig-->`; GitHub and mkdocs show just VALUE. The file
holds, for each KEY, the VALUE as shown, the command that measured it, the day and the machine:

    {"seed_fashion.test_acc": {"value": "0.9012", "source": "cnnlab train experiment=seed_fashion",
                               "measured": "2026-12-04", "host": "2-core CPU"}}

--check (exit 1 on any problem) lists each span whose VALUE differs from the file or whose KEY is unknown, each
KEY of the file quoted nowhere, each entry missing a field, and each accuracy-like number (0.5 .. 0.9999 with 3+
decimals) written in prose outside a span, where it could drift unseen. --write sets every span's VALUE from the
file. --add-missing puts each KEY quoted but not in the file into it, with the VALUE shown and the other fields
empty, for a person to fill in (--check fails until they are). The pages read are README.md and docs/**/*.md. No
dependencies beyond the standard library.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIGURES_FILE = ROOT / "docs" / "figures.json"
FIELDS = ("value", "source", "measured", "host")
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
SPAN = re.compile(r"<!--fig (?P<key>[^\s>]+?)\s*-->(?P<value>.*?)<!--/fig-->", re.DOTALL)
# A test accuracy or similar: 0.5 .. 0.9999 with at least three decimals (0.8984), not part of a longer token.
ACCURACY_LIKE = re.compile(r"(?<![\w.])0\.[5-9]\d{2,}(?![\w.])")
FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1", re.DOTALL)
HTML_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)


@dataclass(frozen=True)
class Span:
    """One `<!--fig KEY-->VALUE<!--/fig-->` of a page: where it starts (1-based line) and what it shows."""

    path: Path
    line: int
    key: str
    value: str
    start: int
    end: int


def pages(root: Path = ROOT) -> list[Path]:
    """The markdown that may quote a figure: README.md and every page under docs/."""
    found = [root / "README.md"] if (root / "README.md").is_file() else []
    return found + sorted((root / "docs").rglob("*.md"))


def load(path: Path = FIGURES_FILE) -> dict[str, dict[str, str]]:
    """docs/figures.json: KEY -> {value, source, measured, host}. A missing file is an empty one."""
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object (KEY -> entry), not {type(data).__name__}")
    return data


def save(figures: dict, path: Path = FIGURES_FILE) -> None:
    path.write_text(json.dumps(figures, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def _blank(text: str) -> str:
    return re.sub(r"[^\n]", " ", text)


def code_ranges(text: str) -> list[tuple[int, int]]:
    """The character ranges of fenced code blocks (``` or ~~~, closed by a fence at least as long)."""
    ranges, offset, opened = [], 0, None
    for line in text.splitlines(keepends=True):
        match = FENCE.match(line)
        if match:
            fence = match.group(1)
            if opened is None:
                opened = (offset, fence)
            elif fence[0] == opened[1][0] and len(fence) >= len(opened[1]) and not line.strip(" \n`~"):
                ranges.append((opened[0], offset + len(line)))
                opened = None
        offset += len(line)
    if opened is not None:
        ranges.append((opened[0], len(text)))
    return ranges


def code_ranges_all(text: str) -> list[tuple[int, int]]:
    """Fenced code blocks and inline code spans: where `<!--fig ...-->` is text about the syntax, not a figure."""
    blocks = code_ranges(text)
    chars = list(text)
    for a, b in blocks:
        chars[a:b] = _blank(text[a:b])
    return blocks + [m.span() for m in INLINE_CODE.finditer("".join(chars))]


def spans(path: Path, text: str | None = None) -> list[Span]:
    """Every figure span of a page, in order (one shown as code, to explain the syntax, is none)."""
    text = path.read_text(encoding="utf-8") if text is None else text
    code = code_ranges_all(text)
    return [Span(path, text.count("\n", 0, m.start()) + 1, m["key"], m["value"], m.start("value"), m.end("value"))
            for m in SPAN.finditer(text) if not any(a <= m.start() < b for a, b in code)]  # fmt: skip


def prose(text: str) -> str:
    """The text of a page a reader sees as prose: code blocks, code spans, figure spans and HTML comments
    blanked (newlines kept, so line numbers still count)."""
    chars = list(text)
    for a, b in code_ranges_all(text):
        chars[a:b] = _blank(text[a:b])
    text = "".join(chars)
    for pattern in (SPAN, HTML_COMMENT):
        text = pattern.sub(lambda m: _blank(m.group(0)), text)
    return text


def unmarked(path: Path, text: str | None = None) -> list[tuple[int, str]]:
    """(line, number) of each accuracy-like number written in prose outside a figure span."""
    text = prose(path.read_text(encoding="utf-8") if text is None else text)
    return [(text.count("\n", 0, m.start()) + 1, m.group(0)) for m in ACCURACY_LIKE.finditer(text)]


def _where(path: Path, root: Path, line: int | None = None) -> str:
    try:
        shown = path.relative_to(root)
    except ValueError:
        shown = path
    return f"{shown}:{line}" if line else str(shown)


def entry_problems(figures: dict, where: str = "docs/figures.json") -> list[str]:
    """Each entry of the file that is not {value, source, measured (YYYY-MM-DD), host} of strings."""
    problems = []
    for key, entry in figures.items():
        if not isinstance(entry, dict):
            problems.append(f"{where}: {key!r} must be an object with {', '.join(FIELDS)}")
            continue
        missing = [f for f in FIELDS if not isinstance(entry.get(f), str) or not entry[f].strip()]
        if missing:
            problems.append(f"{where}: {key!r} lacks {', '.join(missing)} (each a non-empty string)")
        elif not DATE.match(entry["measured"]):
            problems.append(f"{where}: {key!r} measured={entry['measured']!r}: write the day as YYYY-MM-DD")
        unknown = sorted(set(entry) - set(FIELDS))
        if unknown:
            problems.append(f"{where}: {key!r} has unknown field(s) {', '.join(unknown)}; the fields: "
                            f"{', '.join(FIELDS)}")  # fmt: skip
    return problems


def span_problems(span: Span, figures: dict, root: Path = ROOT) -> list[str]:
    """What is wrong with one span: an unknown KEY, or a VALUE that differs from the file."""
    where = _where(span.path, root, span.line)
    if span.key not in figures:
        close = [k for k in figures if k.split(".")[0] == span.key.split(".")[0]][:3]
        hint = f" (keys with its prefix: {', '.join(close)})" if close else ""
        return [f"{where}: fig {span.key!r} is not a key of docs/figures.json{hint}: measure it and add it there"]
    expected = figures[span.key].get("value") if isinstance(figures[span.key], dict) else None
    if span.value != expected:
        return [f"{where}: fig {span.key!r} shows {span.value!r} but docs/figures.json has {expected!r} "
                "(`python docs/figures.py --write` updates the page)"]  # fmt: skip
    return []


def check(root: Path = ROOT, figures: dict | None = None, paths: Iterable[Path] | None = None) -> list[str]:
    """Every problem of the figures of `root`'s pages, one line each (empty: all agree)."""
    figures = load(root / "docs" / "figures.json") if figures is None else figures
    problems = entry_problems(figures)
    quoted: set[str] = set()
    for path in pages(root) if paths is None else paths:
        text = path.read_text(encoding="utf-8")
        for span in spans(path, text):
            quoted.add(span.key)
            problems += span_problems(span, figures, root)
        problems += [f"{_where(path, root, line)}: {number} looks like a measured figure written by hand: quote it "
                     "as <!--fig KEY-->VALUE<!--/fig--> with KEY in docs/figures.json (or put it in `code`)"
                     for line, number in unmarked(path, text)]  # fmt: skip
    problems += [f"docs/figures.json: {key!r} is quoted nowhere (quote it or remove it)"
                 for key in figures if key not in quoted]  # fmt: skip
    return problems


def write(root: Path = ROOT, figures: dict | None = None) -> list[Path]:
    """Set every span's VALUE from the file (unknown keys are left as they are); the pages changed."""
    figures = load(root / "docs" / "figures.json") if figures is None else figures
    changed = []
    for path in pages(root):
        text = path.read_text(encoding="utf-8")
        new = text
        for span in reversed(spans(path, text)):
            entry = figures.get(span.key)
            if isinstance(entry, dict) and isinstance(entry.get("value"), str):
                new = new[: span.start] + entry["value"] + new[span.end :]
        if new != text:
            path.write_text(new, encoding="utf-8")
            changed.append(path)
    return changed


def add_missing(root: Path = ROOT) -> list[str]:
    """Put each quoted KEY the file lacks into it, with the VALUE its first span shows and source, measured and host
    left empty (a person fills them in; --check fails until then). The keys added."""
    path = root / "docs" / "figures.json"
    figures = load(path)
    added = []
    for page in pages(root):
        for span in spans(page):
            if span.key not in figures:
                figures[span.key] = {"value": span.value, "source": "", "measured": "", "host": ""}
                added.append(span.key)
    if added:
        save(figures, path)
    return added


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python docs/figures.py", description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help="list every disagreement; exit 1 if there is one")
    mode.add_argument("--write", action="store_true", help="rewrite every span's VALUE from docs/figures.json")
    mode.add_argument("--add-missing", action="store_true", help="add each quoted KEY the file lacks, to fill in")
    parser.add_argument("--root", type=Path, default=ROOT, help="the repository (default: this file's)")
    args = parser.parse_args(argv)
    if args.write:
        for path in write(args.root):
            print(f"updated {_where(path, args.root)}")
    if args.add_missing:
        for key in add_missing(args.root):
            print(f"added {key!r}: fill in its source, measured and host")
    problems = check(args.root)
    for problem in problems:
        print(problem, file=sys.stderr)
    if not problems and args.check:
        print(f"figures: {len(load(args.root / 'docs' / 'figures.json'))} in docs/figures.json, all quoted as measured")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
