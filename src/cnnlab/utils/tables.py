"""Small aligned text tables for the console and the run's log: a name column and a value column, no borders, so a
table reads the same in a terminal, in train.log and in a CI log, and `grep name` finds its row."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence


def two_column_table(rows: Iterable[tuple[str, str]], gap: int = 2) -> str:
    """`rows` as lines of name (left-aligned) and value (right-aligned, so that decimal points line up)."""
    rows = list(rows)
    if not rows:
        return ""
    name_width = max(len(name) for name, _ in rows)
    value_width = max(len(value) for _, value in rows)
    return "\n".join(f"{name:<{name_width}}{' ' * gap}{value:>{value_width}}" for name, value in rows)


STAGES = ("train", "val", "test")  # the order a run produces its metrics in


def metrics_table(metrics: Mapping[str, float], stages: Sequence[str] = STAGES, digits: int = 4) -> str:
    """Metrics named `<stage>/<name>` in the order of `stages`, alphabetical within a stage, the
    others last; each value with `digits` decimals, so a column of accuracies and losses lines up."""

    def order(name: str) -> tuple[int, str]:
        stage = name.split("/", 1)[0]
        return (stages.index(stage) if stage in stages else len(stages), name)

    return two_column_table((name, f"{metrics[name]:.{digits}f}") for name in sorted(metrics, key=order))
