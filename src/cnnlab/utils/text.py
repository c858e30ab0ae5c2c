"""Text that came from outside cnnlab (file names, class names, error messages) made safe to show: in a terminal or
a log line, where a control character could forge a line, and in a CSV cell, where a spreadsheet could run it.
Torch-free, so that `cnnlab <verb>` can report a refusal without importing torch."""

from __future__ import annotations

import re
from typing import Any

# Characters that would change how a line reads in a terminal or a log: control characters (newlines forging a log
# line, ANSI escapes) and the bidirectional overrides of Unicode (text shown in another order than it is).
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet runs a cell that starts so as a formula


def printable(text: Any, keep: str = "") -> str:
    """`text` for a log line or a terminal: each control character but those in `keep` shown as its escape (\\n,
    \\x1b), the rest kept as it is (accents, CJK)."""
    return _UNPRINTABLE.sub(lambda m: m.group() if m.group() in keep else repr(m.group())[1:-1], str(text))


def csv_cell(text: Any) -> str:
    """A value cnnlab did not write itself (a file or class name) as a CSV cell a spreadsheet shows, never runs:
    a leading formula character gets OWASP's `'` prefix, control characters their escapes."""
    text = printable(text)
    return f"'{text}" if text.startswith(FORMULA_STARTS) else text
