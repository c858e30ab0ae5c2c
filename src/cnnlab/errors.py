"""The one exception type users see for bad input: its message names the thing, what was expected and the fix."""


class CnnlabError(ValueError):
    """A problem with the user's configuration, files or data, reported before any work is lost."""


class Problems:
    """Collects every problem found in one pass, so the user fixes them all at once, not one per run."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def check(self, ok: bool, key: str, value: object, allowed: str) -> None:
        if not ok:
            self.items.append(f"{key}={value!r}: {allowed}")

    def add(self, message: str) -> None:
        self.items.append(message)

    def raise_if_any(self, context: str = "invalid configuration") -> None:
        if self.items:
            lines = "\n".join(f"  - {item}" for item in self.items)
            raise CnnlabError(f"{context}:\n{lines}")
