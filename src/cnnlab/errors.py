"""The one exception type users see for bad input, and the small checks every config rule is built from.

A message names the thing, what was expected and the fix.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any


class CnnlabError(ValueError):
    """A problem with the user's configuration, files or data, reported before any work is lost."""


def find_user_error(err: BaseException | None) -> CnnlabError | None:
    """The CnnlabError behind `err`, also when Hydra's instantiate wrapped it."""
    while err is not None:
        if isinstance(err, CnnlabError):
            return err
        err = err.__cause__
    return None


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class Problems:
    """Collects every problem found in one pass, so the user fixes them all at once, not one per run."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def check(self, ok: bool, key: str, value: object, allowed: str) -> None:
        if not ok:
            self.items.append(f"{key}={value!r}: {allowed}")

    def add(self, message: str) -> None:
        self.items.append(message)

    def int_at_least(self, key: str, value: Any, low: int, null_ok: bool = False, note: str = "") -> None:
        ok = (null_ok and value is None) or (is_int(value) and value >= low)
        self.check(ok, key, value, ("null or " if null_ok else "") + f"an integer >= {low}{note}")

    def in_range(self, key: str, value: Any, low: float, high: float, closed: str = "[)") -> None:
        """`closed`: which ends are allowed, as in interval notation."""
        ok = is_number(value) and (value >= low if closed[0] == "[" else value > low)
        ok = ok and (value <= high if closed[1] == "]" else value < high)
        self.check(ok, key, value, f"a number in {closed[0]}{low}, {high}{closed[1]}")

    def one_of(self, key: str, value: Any, allowed: Iterable[Any]) -> None:
        allowed = tuple(allowed)
        self.check(value in allowed, key, value, "one of " + ", ".join(map(str, allowed)))

    def flag(self, key: str, value: Any) -> None:
        self.check(value in (True, False), key, value, "true or false")

    def raise_if_any(self, context: str = "invalid configuration") -> None:
        if self.items:
            lines = "\n".join(f"  - {item}" for item in self.items)
            raise CnnlabError(f"{context}:\n{lines}")
